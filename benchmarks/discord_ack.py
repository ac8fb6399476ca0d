"""How fast the Discord bot acknowledges a burst of `/sora` interactions (Discord gives up after 3 s).

The real discord.py client, started as `soracast discord` starts it (`prepare_bot`: log in, publish commands,
resume) against the fake Discord API, receives N `/sora` INTERACTION_CREATE payloads at once through the
gateway's parser (`parse_interaction_create`), with the core on the offline renderer. The fake runs in a process
of its own, as Discord is remote, and notes when each interaction's callback (the defer) reaches it. Printed:
percentiles of dispatch → defer received, per burst, and the median p99 over the runs.

Both processes read the same clock (`time.perf_counter` is CLOCK_MONOTONIC on Linux, system-wide).
Run: `.venv/bin/python -m benchmarks.discord_ack [--interactions 200] [--runs 3] [--no-ack-gate]`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).absolute().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from discord.http import Route  # noqa: E402

from adapters.discord.app import build_discord_bot, prepare_bot  # noqa: E402
from benchmarks.table import print_table  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.backends.offline.renderer import OfflineVideosAPI  # noqa: E402
from tests.fakes.discord_api import FakeDiscordAPI, Received  # noqa: E402
from tests.fixtures.discord import APPLICATION_COMMAND, BOT_TOKEN, Payloads, discord_settings  # noqa: E402


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _fake_discord_process(commands: Any, answers: Any) -> None:
    """The fake Discord API in its own process; learns the interactions to expect, reports callback arrivals."""

    async def serve() -> None:
        api = FakeDiscordAPI(token=BOT_TOKEN)
        arrivals: dict[str, float] = {}

        def note(request: Received) -> None:
            if request.method == "POST" and request.path.endswith("/callback"):
                arrivals[request.path.split("/")[-2]] = request.at

        api.on_request = note
        await api.start()
        answers.put(api.url)
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, commands.get)) is not None:
            for interaction_id, token, channel, guild in command:
                api.expect_interaction(interaction_id, token, channel, guild, APPLICATION_COMMAND)
            answers.put("ready")
        answers.put(arrivals)
        await api.stop()

    asyncio.run(serve())


async def _fire(client: Any, batch: list[dict[str, Any]]) -> tuple[dict[str, float], list[asyncio.Task[Any]]]:
    """Hand every payload to the parser back to back, as a gateway burst would; note each dispatch time."""
    dispatched: dict[str, float] = {}
    before = asyncio.all_tasks()
    for payload in batch:
        dispatched[payload["token"]] = time.perf_counter()
        client._connection.parse_interaction_create(payload)
    return dispatched, list(asyncio.all_tasks() - before)


async def run(count: int, warmup: int, ack_gate: bool = True, connections: int | None = None) -> dict[str, float]:
    """One burst of `count` interactions (after `warmup` uncounted ones) against a fresh bot and fake."""
    context = mp.get_context("spawn")
    commands, answers = context.Queue(), context.Queue()
    fake = context.Process(target=_fake_discord_process, args=(commands, answers), daemon=True)
    fake.start()
    url = await asyncio.to_thread(answers.get)
    Route.BASE = f"{url}/api/v10"
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="soracast-discord-bench-") as tmp:
        settings = discord_settings(Path(tmp) / "data", poll_interval=5.0)
        # Slow simulated time: no job finishes (and renders) while the burst is measured.
        videos = OfflineVideosAPI(Path(tmp) / "offline", time_scale=1.0, job_seconds=600.0, render="stub")
        core = await build_app(settings, videos=videos)
        options = {"connector": aiohttp.TCPConnector(limit=connections)} if connections is not None else {}
        client = build_discord_bot(core, settings, **options)
        if not ack_gate:
            client.ack_gate = None  # type: ignore[assignment]  # for comparison: work right after each ack
        try:
            await prepare_bot(client, BOT_TOKEN)
            payloads = Payloads(application_id=str(client.application_id))
            for size in (warmup, count):
                batch = [payloads.slash("sora", {"prompt": f"a red fox number {i} in the snow"}) for i in range(size)]
                commands.put([(p["id"], p["token"], p["channel_id"], p["guild_id"]) for p in batch])
                await asyncio.to_thread(answers.get)  # the fake knows them now
                dispatched, tasks = await _fire(client, batch)
                await asyncio.gather(*tasks)
            commands.put(None)
            arrivals: dict[str, float] = await asyncio.to_thread(answers.get)
            latencies = [arrivals[token] - at for token, at in dispatched.items() if token in arrivals]
        finally:
            await client.close()
            await core.aclose()
            fake.join(timeout=10)
    return {
        "interactions": count,
        "acknowledged": len(latencies),
        "missing": count - len(latencies),
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p90_ms": _percentile(latencies, 0.90) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "min_ms": min(latencies) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def _row(run: int, figures: dict[str, float]) -> tuple[str, str, str]:
    return (
        f"run {run}: dispatch → defer callback",
        f"p50 {figures['p50_ms']:.1f} ms, p90 {figures['p90_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"max {figures['max_ms']:.1f} ms",
        f"min {figures['min_ms']:.1f}, mean {figures['mean_ms']:.1f} ms; {figures['acknowledged']:.0f} "
        f"acknowledged, {figures['missing']:.0f} missing",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5, help="interactions sent (and not counted) first")
    parser.add_argument("--runs", type=int, default=3, help="bursts, each with a fresh bot and fake")
    parser.add_argument("--no-ack-gate", action="store_true", help="let each handler's work start right after its ack")
    parser.add_argument("--connections", type=int, help="cap the client's HTTP connections (0: no cap)")
    args = parser.parse_args()
    p99s = []
    rows = []
    for index in range(args.runs):
        figures = asyncio.run(run(args.interactions, args.warmup, not args.no_ack_gate, args.connections))
        p99s.append(figures["p99_ms"])
        rows.append(_row(index + 1, figures))
    rows.append((f"median p99 over {args.runs} run(s)", f"{statistics.median(p99s):.1f} ms",
                 "Discord gives up after 3 s"))
    print_table(f"discord_ack: /sora x{args.interactions} at once, each run a fresh bot and fake", rows)


if __name__ == "__main__":
    main()

"""A burst: 200 `/sora` commands from 20 people in 4 workspaces, all at once, against a rate-limited API.

The API is `soracast emulate` in a child process, allowing `--rate-limit` requests per second (a token bucket;
beyond it, 429 with `Retry-After`) and running jobs time-scaled. This process sends every command through the
real core (the fair line, the learnt limiter, batched polling, trackers, SQLite) at once, waits until every video
is delivered, and prints one table:

- delivered, refused for being busy (must be 0), failed;
- how long people waited before their video was sent: each person's first video (fairness: nobody's first
  video waits behind someone else's tenth), and the spread of everyone's mean wait;
- how many 429s the app provoked, and API calls by route.

    .venv/bin/python benchmarks/burst_queue.py [--commands 200] [--people 20] [--workspaces 4] [--rate-limit 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.table import print_table  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.errors import SoracastError  # noqa: E402
from bot.models import (  # noqa: E402
    Actor,
    DeliveryReceipt,
    DeliveryTarget,
    Generation,
    GenerationOptions,
    GenerationStatus,
    Platform,
    Scope,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CountingNotifier:
    """Counts deliveries and failures; done once every command has an outcome."""

    def __init__(self, expected: int) -> None:
        self.delivered: dict[str, float] = {}
        self.failed: list[Generation] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def progress(self, generation: Generation) -> None:
        return None

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        self.delivered[generation.id] = time.time()
        self._check()
        return DeliveryReceipt()

    async def failed(self, generation: Generation) -> None:
        self.failed.append(generation)
        self._check()

    def _check(self) -> None:
        if len(self.delivered) + len(self.failed) >= self.expected:
            self.done.set()


async def burst(args: argparse.Namespace, base_url: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="soracast-bench-burst-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        openai_api_key="sk-bench-not-a-real-key",
        api_base_url=base_url + "/v1",
        poll_interval=args.poll_seconds,
        progress_interval=60,
        max_in_flight=args.max_in_flight,
        max_queued_per_user=args.commands,  # the per-person cap is a policy, not "busy": out of the way here
        data_dir=data,
        log_level="WARNING",
    )
    core = await build_app(settings)
    notifier = CountingNotifier(args.commands)
    core.generations.register_notifier(Platform.CONSOLE, notifier)
    await core.generations.resume(Platform.CONSOLE)
    scopes = [Scope(platform=Platform.CONSOLE, id=f"team-{w}") for w in range(args.workspaces)]
    people = [(scopes[p % args.workspaces], Actor(id=f"person-{p:02d}")) for p in range(args.people)]
    refused: list[str] = []
    started = time.time()

    async def command(index: int) -> Generation | None:
        # Person 0 fires first and most: the others' first videos must not wait behind all of theirs.
        scope, actor = people[index % args.people] if index >= args.commands // 4 else people[0]
        try:
            return await core.generations.generate(
                scope, actor, f"burst scene {index}", GenerationOptions(), DeliveryTarget(channel_id="bench")
            )
        except SoracastError as exc:
            refused.append(f"{exc.code}: {exc.message}")
            return None

    asked = [g for g in await asyncio.gather(*(command(i) for i in range(args.commands))) if g is not None]
    accepted_after = time.time() - started
    await asyncio.wait_for(notifier.done.wait(), timeout=args.timeout)
    finished = time.time() - started
    stored = [await core.storage.get_generation(g.id) for g in asked]
    await core.aclose()

    async with httpx.AsyncClient() as client:
        stats = (await client.get(base_url + "/_emulator/stats", timeout=30)).json()

    waits: dict[str, list[float]] = defaultdict(list)
    for generation in stored:
        assert generation is not None
        if generation.submitted_at is not None:
            waits[generation.requester_id].append((generation.submitted_at - generation.created_at).total_seconds())
    firsts = sorted(min(w) for w in waits.values())
    means = sorted(statistics.mean(w) for w in waits.values())
    delivered = sum(1 for g in stored if g is not None and g.status is GenerationStatus.COMPLETED and g.delivered_at)

    busy = sum(1 for r in refused if "rate" in r or "busy" in r)
    rows = [
        ("commands", f"{args.commands}", f"from {args.people} people in {args.workspaces} workspaces (person-00 sent "
         f"{args.commands // 4 + args.commands * 3 // 4 // args.people} of them, first)"),
        ("API limit", f"{args.rate_limit:g} requests/s",
         f"{args.max_in_flight} jobs in flight, time scale {args.time_scale:g}"),
        ("accepted", f"{len(asked)} in {accepted_after:.2f} s",
         f"refused for being busy: {busy} (goal 0); refused otherwise: {len(refused)}"),
        ("delivered", f"{delivered}/{args.commands} after {finished:.1f} s", f"failed: {len(notifier.failed)}"),
        ("first video's wait", _spread(firsts), "per person, before it was sent (nobody's first waits behind "
         "someone's tenth)"),
        ("mean wait per person", _spread(means), "before each video was sent"),
        ("429s provoked", f"{stats['statuses'].get('429', 0)} of {sum(stats['routes'].values())} requests",
         ", ".join(f"{route} {count}" for route, count in sorted(stats["routes"].items()))),
    ]
    rows.extend(("refusal", reason, "") for reason in sorted(set(refused))[:5])
    print_table(f"burst_queue: {args.commands} /sora at once against a rate-limited API", rows)


def _spread(seconds: list[float]) -> str:
    """min, median and max of sorted waits."""
    return f"min {seconds[0]:.1f} s, median {statistics.median(seconds):.1f} s, max {seconds[-1]:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--workspaces", type=int, default=4)
    parser.add_argument("--rate-limit", type=float, default=5.0, help="requests per second the API allows")
    parser.add_argument("--max-in-flight", type=int, default=10)
    parser.add_argument("--time-scale", type=float, default=10.0, help="simulated seconds per real second")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "emulate", "--port", str(port), "--time-scale", str(args.time_scale),
         "--rate-limit", str(args.rate_limit), "--render", "stub"],
        cwd=tempfile.mkdtemp(prefix="soracast-bench-emulator-"),
        env={"PATH": "", "PYTHONPATH": str(ROOT), "SORACAST_LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if "serving" not in child.stdout.readline():
            raise SystemExit("the emulator did not start")
        asyncio.run(burst(args, f"http://127.0.0.1:{port}"))
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()

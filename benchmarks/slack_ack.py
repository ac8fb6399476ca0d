"""How fast the Slack app acks a burst of `/sora` commands over HTTP (Slack gives up after 3 s).

Serves soracast's web app (create_web_app) on 127.0.0.1 with the core on the offline renderer and the fake Slack
Web API, sends N signed `/sora` requests at once, and prints one table: percentiles of the time to each ack response.
Run: `.venv/bin/python -m benchmarks.slack_ack [--requests 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).absolute().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapters.slack.app import build_slack_adapter, create_web_app  # noqa: E402
from benchmarks.table import print_table  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.web.http_door import app_runner  # noqa: E402
from tests.fakes.slack_api import FakeSlackAPI  # noqa: E402
from tests.fixtures.slack import BOT_TOKEN, SIGNING_SECRET, TEAM, signed_headers  # noqa: E402

FORM = "application/x-www-form-urlencoded"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _timed_post(url: str, body: str) -> tuple[float, int]:
    """One signed POST over a fresh connection with hand-written HTTP/1.1, timed from connect to the full answer.

    A bare asyncio stream instead of an HTTP client library: the load generator must cost far less than the
    server it measures, or the figures are its own.
    """
    parts = urlsplit(url)
    data = body.encode()
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close", f"Content-Length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in signed_headers(body, FORM).items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + data
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    await reader.read()  # the server closes after the answer
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed, status


async def burst(url: str, bodies: list[str]) -> tuple[list[float], set[int], float]:
    """Send every body at once; per-request seconds to the ack, the statuses seen, and the whole burst's time."""
    started = time.perf_counter()
    results = await asyncio.gather(*(_timed_post(url, b) for b in bodies))
    return [t for t, _ in results], {s for _, s in results}, time.perf_counter() - started


def _fake_slack_process(commands: mp.Queue, answers: mp.Queue) -> None:
    """The fake Web API in a process of its own, as Slack is remote; answers its call count when told to stop."""

    async def main() -> None:
        api = await FakeSlackAPI(bot_token=BOT_TOKEN, team_id=TEAM).start()
        answers.put(api.url)
        await asyncio.get_running_loop().run_in_executor(None, commands.get)
        answers.put(len(api.calls_to("chat.postMessage")))
        await api.stop()

    asyncio.run(main())


def _burst_process(url: str, bodies: list[str]) -> tuple[list[float], set[int], float]:
    return asyncio.run(burst(url, bodies))


class InProcessSlack:
    """Fake Web API and load generator on soracast's own event loop (the pessimistic case)."""

    async def start(self) -> str:
        self.api = await FakeSlackAPI(bot_token=BOT_TOKEN, team_id=TEAM).start()
        return self.api.url

    async def burst(self, url: str, bodies: list[str]) -> tuple[list[float], set[int], float]:
        return await burst(url, bodies)

    async def stop(self) -> int:
        posted = len(self.api.calls_to("chat.postMessage"))
        await self.api.stop()
        return posted


class SeparateSlack:
    """Fake Web API and load generator each in another process, as Slack really is."""

    async def start(self) -> str:
        ctx = mp.get_context("spawn")
        self.commands: mp.Queue = ctx.Queue()
        self.answers: mp.Queue = ctx.Queue()
        self.process = ctx.Process(target=_fake_slack_process, args=(self.commands, self.answers), daemon=True)
        self.process.start()
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
        # Start the load process now, so its start-up is not part of a burst.
        await asyncio.get_running_loop().run_in_executor(self.pool, time.sleep, 0)
        return await asyncio.to_thread(self.answers.get)

    async def burst(self, url: str, bodies: list[str]) -> tuple[list[float], set[int], float]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, _burst_process, url, bodies)

    async def stop(self) -> int:
        self.pool.shutdown()
        self.commands.put(None)
        posted = await asyncio.to_thread(self.answers.get)
        await asyncio.to_thread(self.process.join, 10)
        return posted


def _command_body(n: int, fake_url: str) -> str:
    return urlencode(
        {
            "team_id": TEAM,
            "channel_id": "C0BENCH",
            "user_id": f"U{n % 20:04d}",  # twenty people, so users.info is looked up and then cached
            "user_name": "bench",
            "command": "/sora",
            "text": f"a paper boat on a pond, take {n} --seconds 4",
            "response_url": f"{fake_url}/response/bench{n}",
            "trigger_id": f"trigger.{n}",
        }
    )


async def run(requests: int, separate: bool) -> None:
    slack = SeparateSlack() if separate else InProcessSlack()
    fake_url = await slack.start()
    with tempfile.TemporaryDirectory(prefix="soracast-bench-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp),
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            offline=True,
        )
        core = await build_app(settings)
        # One HTTP session for every Web API call, as `soracast web` uses, so calls reuse connections.
        http = aiohttp.ClientSession()
        client = AsyncWebClient(token=BOT_TOKEN, base_url=f"{fake_url}/api/", session=http)
        adapter = build_slack_adapter(core, settings, client=client)
        runner = app_runner(create_web_app(core, settings, adapter))
        await runner.setup()
        # A burst opens many connections at once; the default backlog (128) would make some retry a SYN.
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/slack/events"
        try:
            # One request first: bolt calls auth.test once per process, which is not what a burst measures.
            (warm,), _, _ = await slack.burst(url, [_command_body(0, fake_url)])
            await adapter.drain()
            times, statuses, took = await slack.burst(url, [_command_body(n, fake_url) for n in range(1, requests + 1)])
            drain_started = time.perf_counter()
            await adapter.drain()
            drained = time.perf_counter() - drain_started
        finally:
            await runner.cleanup()
            await adapter.aclose()
            await core.aclose()
            await http.close()
            posted = await slack.stop()

    ms = [t * 1000 for t in times]
    where = "in another process" if separate else "on the app's own event loop"
    print_table(
        f"slack_ack: {requests} signed /sora at once over HTTP to 127.0.0.1; Slack side {where}",
        [
            ("statuses", ", ".join(str(status) for status in sorted(statuses)), "goal: 200 only"),
            ("first request", f"{warm * 1000:.1f} ms", "with bolt's one-off auth.test"),
            ("time to ack", f"p50 {statistics.median(ms):.1f} ms, p90 {_percentile(ms, 0.9):.1f} ms, "
             f"p99 {_percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms", "Slack gives up after 3 s"),
            ("burst acked in", f"{took * 1000:.0f} ms", f"the work after the acks took {drained * 1000:.0f} ms more"),
            ("progress messages posted", f"{posted} of {requests + 1}", "one per request"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--in-process", action="store_true", help="run the fake Slack and the load on the app's own event loop"
    )
    args = parser.parse_args()
    asyncio.run(run(args.requests, separate=not args.in_process))


if __name__ == "__main__":
    main()

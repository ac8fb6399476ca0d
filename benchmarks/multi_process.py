"""Three soracast processes on one Postgres, killed and restarted while 200 jobs run.

- The API is `soracast emulate` (OpenAI shape) in a child process, failing 20% of requests with a 5xx — half of
  those after the job was made, so the answer is lost — and running jobs time-scaled.
- Three worker processes (this script with `--worker`) each build the real core on one Postgres database (a
  throwaway one, dropped at the end), serve the console platform through a notifier that posts every finished
  video to a recording "chat" server run by this process, and serve the video webhook route.
- This process puts 200 requests in the line (a core that serves no platform, so it only stores them), sends a
  signed `video.completed` webhook to a random worker for every job it sees finish at the API, and `kill -9`s a
  worker twice while jobs run, restarting it on the same data.

It prints one table: delivered (must be 200/200), duplicates (must be 0), lease takeover time (a killed
process's jobs picked up by another once it is found dead — it stops beating every `--heartbeat-seconds` — or its
leases expire: from the kill to the first post of one of its jobs elsewhere), the webhook → posted delay (from
sending the webhook to the chat receiving the video; the workers poll only every `--poll-seconds`, so the wake-up
between processes, or taking over a dead holder's job, is what makes it short), and the most jobs the API made in
any 10 s against the create rate all processes share (`--submits-per-minute` for the one account).

    .venv/bin/python benchmarks/multi_process.py [--jobs 200] [--workers 3] [--kills 2] [--lease-seconds 10]
        [--heartbeat-seconds 1] [--submits-per-minute 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import build_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.models import (  # noqa: E402
    Actor,
    DeliveryReceipt,
    DeliveryTarget,
    Generation,
    GenerationOptions,
    Platform,
    Scope,
)
from bot.signing import sign  # noqa: E402
from bot.web.webhooks import webhook_route  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

SERVER = os.environ.get("SORACAST_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "whsec_" + "bWFkZSBmb3IgYSBiZW5jaG1hcmsgb25seQ=="


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(data: Path, database: str, api: str, args: argparse.Namespace) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        openai_api_key="sk-bench-not-a-real-key",
        api_base_url=api,
        database_url=database,
        webhook_secret=SECRET,
        poll_interval=args.poll_seconds,
        lease_seconds=args.lease_seconds,
        heartbeat_seconds=args.heartbeat_seconds,
        submits_per_minute=args.submits_per_minute,
        max_in_flight=50,
        max_queued_per_user=10_000,
        progress_interval=60,
        data_dir=data,
        log_level="WARNING",
    )


# --- a worker process --------------------------------------------------------------------------------------------


class ChatPoster:
    """Posts each finished video to the recording chat; a failed post raises, so the core tries again."""

    def __init__(self, chat: str, name: str) -> None:
        self._chat = chat
        self._name = name
        self._http = httpx.AsyncClient(timeout=10)

    async def progress(self, generation: Generation) -> None:
        return None

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        size = generation.video_path.stat().st_size if generation.video_path and generation.video_path.exists() else 0
        reply = await self._http.post(
            self._chat, json={"id": generation.id, "process": self._name, "bytes": size, "status": "completed"}
        )
        reply.raise_for_status()
        return DeliveryReceipt(message_id=f"{self._name}-{generation.id}")

    async def failed(self, generation: Generation) -> None:
        reply = await self._http.post(
            self._chat, json={"id": generation.id, "process": self._name, "status": "failed",
                              "error": generation.error_code},
        )
        reply.raise_for_status()


async def worker(args: argparse.Namespace) -> None:
    settings = _settings(Path(args.data), args.database, args.api, args)
    core = await build_app(settings)
    core.generations.register_notifier(Platform.CONSOLE, ChatPoster(args.chat, args.name))
    app = web.Application()
    app.add_routes([webhook_route(SECRET, core.storage, core.generations)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    await core.generations.resume(Platform.CONSOLE)
    print("ready", flush=True)
    await asyncio.Event().wait()


# --- the driver ---------------------------------------------------------------------------------------------------


class Chat:
    """The recording chat: every post, in order, with when it arrived."""

    def __init__(self) -> None:
        self.posts: list[dict] = []

    async def post(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["at"] = time.monotonic()
        self.posts.append(body)
        return web.json_response({"ok": True})


class Worker:
    def __init__(self, name: str, args: argparse.Namespace, database: str, api: str, chat: str, root: Path) -> None:
        self.name, self.args, self.database, self.api, self.chat = name, args, database, api, chat
        self.data = root / name
        self.port = _free_port()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--name", self.name, "--data", str(self.data), "--database",
             self.database, "--api", self.api, "--chat", self.chat, "--port", str(self.port), "--poll-seconds",
             str(self.args.poll_seconds), "--lease-seconds", str(self.args.lease_seconds), "--heartbeat-seconds",
             str(self.args.heartbeat_seconds), "--submits-per-minute", str(self.args.submits_per_minute)],
            stdout=subprocess.PIPE,
            stderr=open(self.data.parent / f"{self.name}.log", "a"),
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit(f"worker {self.name} did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


async def drive(args: argparse.Namespace, database: str, api: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="soracast-bench-multi-"))
    chat = Chat()
    chat_app = web.Application()
    chat_app.router.add_post("/post", chat.post)
    chat_runner = web.AppRunner(chat_app, access_log=None)
    await chat_runner.setup()
    chat_port = _free_port()
    await web.TCPSite(chat_runner, "127.0.0.1", chat_port).start()
    chat_url = f"http://127.0.0.1:{chat_port}/post"

    workers = [Worker(f"w{i}", args, database, api, chat_url, root) for i in range(args.workers)]
    for w in workers:
        await asyncio.to_thread(w.start)

    # The requester: a core that serves no platform only stores requests in the line.
    front = await build_app(_settings(root / "front", database, api, args))
    scope = Scope(platform=Platform.CONSOLE, id="bench")
    started = time.monotonic()
    asked = [
        await front.generations.generate(
            scope, Actor(id=f"p{i % 20}"), f"multi {i}", GenerationOptions(), DeliveryTarget(channel_id="c")
        )
        for i in range(args.jobs)
    ]
    wanted = {g.id for g in asked}

    webhooks_sent: dict[str, float] = {}
    kills: list[tuple[str, float, set[str]]] = []
    http = httpx.AsyncClient(timeout=10)

    async def send_webhooks() -> None:
        """For every job finished at the API and not yet posted, a signed webhook to a random live worker."""
        while True:
            await asyncio.sleep(0.5)
            posted = {p["id"] for p in chat.posts}
            for generation_id in wanted - posted - set(webhooks_sent):
                stored = await front.storage.get_generation(generation_id)
                if stored is None or stored.api_video_id is None:
                    continue
                try:
                    video = (await http.get(f"{api}/videos/{stored.api_video_id}",
                                            headers={"Authorization": "Bearer bench"})).json()
                except (httpx.HTTPError, ValueError):
                    continue
                if video.get("status") != "completed":
                    continue
                live = [w for w in workers if w.process is not None and w.process.poll() is None]
                target = random.choice(live)
                body = json.dumps({"id": f"evt_{secrets.token_hex(8)}", "type": "video.completed",
                                   "created_at": int(time.time()), "data": {"id": stored.api_video_id}}).encode()
                webhook_id, stamp = f"msg_{secrets.token_hex(8)}", int(time.time())
                headers = {"webhook-id": webhook_id, "webhook-timestamp": str(stamp),
                           "webhook-signature": sign(SECRET, webhook_id, stamp, body),
                           "content-type": "application/json"}
                with_time = time.monotonic()
                try:
                    await http.post(f"http://127.0.0.1:{target.port}/webhooks/openai", content=body, headers=headers)
                    webhooks_sent[generation_id] = with_time
                except httpx.HTTPError:
                    pass

    async def killer() -> None:
        for index in range(args.kills):
            await asyncio.sleep(args.kill_every)
            victim = workers[index % len(workers)]
            held = {r["id"] for r in await front.storage.pool.fetch(  # type: ignore[attr-defined]
                "SELECT id FROM generations WHERE lease_owner LIKE $1 AND delivered_at IS NULL",
                f"%:{victim.process.pid}:%" if victim.process else "-")}
            await asyncio.to_thread(victim.kill)
            kills.append((victim.name, time.monotonic(), held))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(victim.start)

    helpers = [asyncio.create_task(send_webhooks()), asyncio.create_task(killer())]
    try:
        async with asyncio.timeout(args.timeout):
            while len({p["id"] for p in chat.posts} & wanted) < len(wanted):  # noqa: ASYNC110
                await asyncio.sleep(0.5)
    except TimeoutError:
        print("timed out waiting for every video")
    finished = time.monotonic() - started
    for task in helpers:
        task.cancel()
    made = await _jobs_made(http, api)
    await asyncio.sleep(args.poll_seconds + 1)  # a late duplicate would arrive now
    await http.aclose()
    await front.aclose()
    for w in workers:
        await asyncio.to_thread(w.stop)
    await chat_runner.cleanup()

    counts = Counter(p["id"] for p in chat.posts if p["id"] in wanted)
    delivered = len(counts)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    failures = Counter(str(p.get("error")) for p in chat.posts if p.get("status") == "failed")
    first_post = {}
    for post in chat.posts:
        first_post.setdefault(post["id"], post)
    takeovers = []
    for name, at, held in kills:
        later = [first_post[g]["at"] - at for g in held if g in first_post and first_post[g]["process"] != name]
        if later:
            takeovers.append(min(later))
    delays = [first_post[g]["at"] - sent for g, sent in webhooks_sent.items() if g in first_post
              and first_post[g]["at"] >= sent]
    busiest = max((sum(1 for t in made if start <= t < start + 10) for start in set(made)), default=0)
    allowed = args.submits_per_minute / 6
    rows = [
        ("jobs", f"{args.jobs} through {args.workers} processes on one Postgres",
         f"API failing {args.fail_rate:.0%}, half of those after making the job"),
        ("delivered", f"{delivered}/{args.jobs} in {finished:.1f} s", _failed_note(failures)),
        ("duplicates", str(duplicates), "must be 0"),
        ("kills", f"{len(kills)} × kill -9",
         f"leases of {args.lease_seconds:g} s, a beat every {args.heartbeat_seconds:g} s"),
        ("lease takeover", ", ".join(f"{t:.1f} s" for t in takeovers) or "-",
         "from kill -9 to the first post of a held job by another process"),
        ("webhook → posted, median", f"{statistics.median(delays):.2f} s" if delays else "-",
         f"over {len(delays)} webhooks (poll interval {args.poll_seconds:g} s)"),
        ("webhook → posted, p95", f"{_p95(delays):.2f} s" if delays else "-", "goal < 1 s"),
        ("webhook → posted, max", f"{max(delays):.2f} s" if delays else "-", ""),
        ("creates in the busiest 10 s", f"{busiest} jobs made",
         f"allowed {args.submits_per_minute:g}/min for the account = {allowed:g} per 10 s, all processes together"),
        ("jobs made at the API", str(len(made)), "creates whose answer was lost are found, not sent again"),
    ]
    print_table(f"multi_process: {args.jobs} jobs, {args.workers} processes, {args.kills} kills", rows)


def _failed_note(failures: Counter[str]) -> str:
    """How many were posted as failed, and why (the error codes), so a failure in a run is explained."""
    why = ", ".join(f"{code} ×{n}" for code, n in failures.items())
    return f"{sum(failures.values())} posted as failed" + (f" ({why})" if why else "")


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


async def _jobs_made(http: httpx.AsyncClient, api: str) -> list[int]:
    """When the API made each job (whole seconds), from its own list of jobs."""
    made: list[int] = []
    after: str | None = None
    while True:
        params = {"limit": "100", "order": "asc", **({"after": after} if after else {})}
        try:
            page = (await http.get(f"{api}/videos", params=params, headers={"Authorization": "Bearer bench"})).json()
        except (httpx.HTTPError, ValueError):
            continue  # the emulator fails a share of requests on purpose: ask again
        if "data" not in page:
            continue
        made += [int(video["created_at"]) for video in page["data"]]
        if not page.get("has_more") or not page["data"]:
            return made
        after = page["data"][-1]["id"]


async def make_database() -> tuple[str, str]:
    name = f"soracast_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = SERVER.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=8.0, help="seconds between kills")
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--time-scale", type=float, default=5.0)
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    parser.add_argument("--lease-seconds", type=float, default=10.0)
    parser.add_argument("--heartbeat-seconds", type=float, default=1.0, help="how often each process beats")
    parser.add_argument("--submits-per-minute", type=float, default=120.0,
                        help="creates per minute allowed for the one API account, shared by every process")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--name", "--data", "--database", "--api", "--chat"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return
    name, database = asyncio.run(make_database())
    port = _free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "emulate", "--port", str(port), "--time-scale", str(args.time_scale),
         "--fail-rate", str(args.fail_rate), "--lost-answer-rate", "0.5", "--render", "stub"],
        cwd=tempfile.mkdtemp(prefix="soracast-bench-emulator-"),
        env={**os.environ, "PYTHONPATH": str(ROOT), "SORACAST_LOG_LEVEL": "WARNING"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        if "serving" not in emulator.stdout.readline():
            raise SystemExit("the emulator did not start")
        asyncio.run(drive(args, database, f"http://127.0.0.1:{port}/v1"))
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        asyncio.run(drop_database(name))


if __name__ == "__main__":
    main()

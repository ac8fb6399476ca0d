"""Soak: kill `soracast web` with SIGKILL while videos are being made and posted, and count what reached Slack.

Everything runs as a host would run it, on 127.0.0.1:

- `soracast emulate --api openai --fail-rate 0.2 --lost-answer-rate 0.5` in a child process: one request in five
  fails with a 5xx, and half of those are sent after the work was done (a job made, its answer lost);
- a fake Slack Web API in this process (`tests/fakes/slack_api.py`) answering in ~100 ms like the real one and
  sharing uploaded files asynchronously;
- `soracast web` in a child process (the console script), pointed at both by environment variables only
  (`OPENAI_BASE_URL`, `SORACAST_BACKEND=openai`, `SORACAST_SLACK_API_URL`, `SLACK_BOT_TOKEN`,
  `SLACK_SIGNING_SECRET`).

The soak sends `--jobs` signed `/sora` commands (timing each ack), then kills the web process with SIGKILL
`--kills` times while the jobs run — each kill at a chosen moment: `complete` (Slack has just posted a video, its
answer not yet back: the window of issue 10), `upload`, `ticket` (files.getUploadURLExternal), `info` (files.info,
i.e. during a recovery), `update` (chat.update) or `timer` (a random moment) — restarting it on the same data
each time. It then prints one table with, per run: delivered (videos in the channel), duplicates (a video posted
more than once), lost (asked for, never posted), failed (ended with a failure message), ack p99, and what the
kills hit.

    .venv/bin/python -m benchmarks.soak [--runs 5] [--jobs 20] [--kills complete,timer,complete]

`tests/test_kill_and_restart.py` runs a small version of it (`run_soak`) in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).absolute().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.table import print_table  # noqa: E402
from bot.models import GenerationStatus, Platform, Scope  # noqa: E402
from storage.sqlite import SQLiteStorage  # noqa: E402
from tests.fakes.slack_api import Call, FakeSlackAPI  # noqa: E402
from tests.fixtures.slack import BOT_TOKEN, SIGNING_SECRET, TEAM, signed_headers  # noqa: E402

FORM = "application/x-www-form-urlencoded"
CHANNEL = "C0SOAK"
#: What `--kills` may name → the fake Slack call the kill waits for (done by Slack, its answer not yet sent).
KILL_POINTS = {
    "complete": "files.completeUploadExternal",
    "upload": "upload",
    "ticket": "files.getUploadURLExternal",
    "info": "files.info",
    "update": "chat.update",
    "timer": "",
}


@dataclass
class SoakOptions:
    """One run's shape; the defaults are the issue's scenario."""

    jobs: int = 20
    kills: tuple[str, ...] = ("complete", "timer", "complete")
    fail_rate: float = 0.2
    lost_answer_rate: float = 0.5
    #: Seconds each fake Slack answer takes, and before an upload shows as shared.
    latency: float = 0.1
    share_delay: float = 0.3
    #: The emulator's simulated seconds per real second (its jobs last 3–6 simulated seconds).
    time_scale: float = 1.0
    lease_seconds: float = 5.0
    poll_interval: float = 0.5
    #: A kill waiting for its moment gives up waiting after this many seconds and kills at once.
    kill_wait: float = 40.0
    #: How long after a restart before a `timer` kill, at most.
    timer_max: float = 4.0
    #: How long after a restart a kill waiting for its moment is armed, at most (spreads kills over the run).
    arm_after_max: float = 6.0
    deadline: float = 300.0
    #: How long to keep watching once every video is posted (late duplicates would come from a restarted
    #: process taking over a lease); None: two leases and a bit.
    settle: float | None = None
    seed: int | None = None
    #: Where the processes' logs are kept (a temporary folder, removed after the run, when None).
    keep_logs: Path | None = None


@dataclass
class SoakFigures:
    """What one run measured."""

    jobs: int
    acked: int
    delivered: int
    duplicates: int
    lost: int
    failed: int
    ack_ms: list[float]
    kills: list[str]
    seconds: float
    tickets: int
    completions: int
    info_checks: int
    found_posted: int
    extra_messages: int
    statuses: dict[str, int] = field(default_factory=dict)
    #: What soracast stored about each generation whose video never reached the channel.
    missing: list[str] = field(default_factory=list)

    @property
    def ack_p99(self) -> float:
        return _percentile(self.ack_ms, 0.99) if self.ack_ms else float("nan")

    def summary(self) -> str:
        """One line for the progress of a long soak."""
        return f"delivered {self.delivered}/{self.jobs}, duplicates {self.duplicates}, lost {self.lost}"

    def rows(self, run: int) -> list[tuple[str, str, str]]:
        """This run's figures as rows of the soak's table."""
        acks = (
            f"ack p50 {statistics.median(self.ack_ms):.0f} ms, p99 {self.ack_p99:.0f} ms" if self.ack_ms else "no acks"
        )
        return [
            (
                f"run {run}: posted",
                f"delivered {self.delivered}/{self.jobs}, duplicates {self.duplicates}, lost {self.lost}, "
                f"failed {self.failed}",
                f"{acks}; {self.seconds:.0f} s; kills: {', '.join(self.kills) or 'none'}",
            ),
            (
                f"run {run}: Slack calls",
                f"uploads started {self.tickets}, completed {self.completions}; files.info {self.info_checks}",
                f"found already posted: {self.found_posted}; messages beyond one per video: {self.extra_messages}",
            ),
            *((f"run {run}: not posted", missing, "") for missing in self.missing),
        ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _soracast() -> list[str]:
    """The `soracast` console script next to this Python, as a host starts it (or the module, without one)."""
    script = Path(sys.executable).with_name("soracast")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def _base_env(data_dir: Path) -> dict[str, str]:
    """The parent's environment minus anything soracast would read, plus a data directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SORACAST_", "OPENAI_", "SLACK_", "DISCORD_", "GEMINI_", "GOOGLE_", "FAL_"))
        and k != "PORT"
    }
    env["SORACAST_DATA_DIR"] = str(data_dir)
    return env


class Emulator:
    """`soracast emulate --api openai` with random faults, in a child process."""

    def __init__(self, options: SoakOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        o = self.options
        port = _free_port()
        args = [
            "emulate", "--api", "openai", "--port", str(port), "--time-scale", str(o.time_scale),
            "--fail-rate", str(o.fail_rate), "--lost-answer-rate", str(o.lost_answer_rate),
        ]  # fmt: skip
        log = (self.workdir / "emulator.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *_soracast(), *args,
            env=_base_env(self.workdir / "emulator-data"), cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
        log.close()
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if b"serving" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


class WebProcess:
    """`soracast web`, started as a host would, killed with SIGKILL and started again on the same data."""

    def __init__(self, env: dict[str, str], workdir: Path, port: int) -> None:
        self.env = env
        self.workdir = workdir
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.starts += 1
        log = (self.workdir / "web.log").open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.process = await asyncio.create_subprocess_exec(
            *_soracast(), "web", env=self.env, cwd=self.workdir, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"soracast web exited with {self.process.returncode}; see {self.workdir}/web.log")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.url}/healthz") as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError("soracast web did not come up within 60 s")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or released."""
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)

    async def wait(self) -> None:
        if self.process is not None:
            await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, as a platform's shutdown: stored jobs stay for the next start."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 20)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


class Killer:
    """Arms one kill at a time on a fake Slack call; the call's work is done at Slack, its answer not yet sent."""

    def __init__(self, web: WebProcess) -> None:
        self.web = web
        self.method: str | None = None
        self.killed = asyncio.Event()
        self.hit = ""

    def arm(self, method: str) -> None:
        self.killed.clear()
        self.method = method

    def on_handled(self, call: Call) -> None:
        if self.method and call.method == self.method:
            self.method = None
            self.hit = call.method
            self.web.kill()
            self.killed.set()

    def now(self, why: str) -> None:
        self.method = None
        self.hit = why
        self.web.kill()
        self.killed.set()


def _video_posts(api: FakeSlackAPI) -> Counter[str]:
    """Generation id → how many times its video was posted in a channel."""
    posts: Counter[str] = Counter()
    for share in api.shares:
        if share.filename.startswith("soracast-") and share.filename.endswith(".mp4"):
            posts[share.filename.removeprefix("soracast-").removesuffix(".mp4")] += 1
    return posts


def _command(n: int, api: FakeSlackAPI) -> str:
    return urlencode(
        {
            "team_id": TEAM,
            "channel_id": CHANNEL,
            "channel_name": "soak",
            "user_id": f"U{n:04d}",  # one person per video: the line allows a few waiting per person
            "user_name": f"soak{n}",
            "command": "/sora",
            "text": f"a paper boat on a pond, take {n}",
            "response_url": api.response_url(f"soak{n}"),
            "trigger_id": f"trigger.soak.{n}",
        }
    )


async def _send(session: aiohttp.ClientSession, url: str, body: str) -> tuple[int, float]:
    started = time.perf_counter()
    async with session.post(f"{url}/slack/events", data=body.encode(), headers=signed_headers(body, FORM)) as reply:
        await reply.read()
        return reply.status, (time.perf_counter() - started) * 1000


async def run_soak(options: SoakOptions, workdir: Path | None = None) -> SoakFigures:
    """One run: start everything, send the commands, kill and restart as planned, count what reached Slack."""
    for kill in options.kills:
        if kill not in KILL_POINTS:
            raise ValueError(f"unknown kill point {kill!r}: use one of {', '.join(KILL_POINTS)}")
    rng = random.Random(options.seed)
    owned = workdir is None
    work = Path(tempfile.mkdtemp(prefix="soracast-soak-")) if workdir is None else workdir
    started = time.monotonic()
    api = FakeSlackAPI(bot_token=BOT_TOKEN, team_id=TEAM, latency=options.latency, share_delay=options.share_delay)
    emulator = Emulator(options, work)
    web: WebProcess | None = None
    kills: list[str] = []
    try:
        await api.start()
        videos_url = await emulator.start()
        env = _base_env(work / "web-data") | {
            "OPENAI_API_KEY": "sk-soak-not-a-real-key",
            "OPENAI_BASE_URL": videos_url,
            "SORACAST_BACKEND": "openai",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SORACAST_SLACK_API_URL": api.base_url.rstrip("/"),
            "SORACAST_HOST": "127.0.0.1",
            "PORT": str(_free_port()),
            "SORACAST_LEASE_SECONDS": str(options.lease_seconds),
            "SORACAST_POLL_INTERVAL": str(options.poll_interval),
            "SORACAST_PROGRESS_INTERVAL": "2",
            "SORACAST_LOG_LEVEL": "INFO",
        }
        web = WebProcess(env, work, int(env["PORT"]))
        killer = Killer(web)
        api.on_handled = killer.on_handled
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await web.start(session)
            answers = []
            for n in range(1, options.jobs + 1):
                answers.append(asyncio.create_task(_send(session, web.url, _command(n, api))))
                await asyncio.sleep(rng.uniform(0.05, 0.15))  # a busy channel, not one burst
            replies = await asyncio.gather(*answers)
            ack_ms = [ms for status, ms in replies if status == 200]
            acked = len(ack_ms)
            # The jobs are running once each has its message (the command was stored and announced).
            await _until(lambda: len(api.calls_to("chat.postMessage")) >= acked, 60)
            deadline = started + options.deadline

            def all_posted() -> bool:
                return len(_video_posts(api)) >= acked

            for plan in options.kills:
                if all_posted():
                    kills.append(f"{plan}: not done, every video was already posted")
                    continue
                method = KILL_POINTS[plan]
                if method:
                    await asyncio.sleep(rng.uniform(0.0, options.arm_after_max))
                    killer.arm(method)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(killer.killed.wait(), options.kill_wait)
                    if not killer.killed.is_set():
                        killer.now(f"timer (no {method} within {options.kill_wait:.0f} s)")
                else:
                    await asyncio.sleep(rng.uniform(0.5, options.timer_max))
                    killer.now("timer")
                posted = len(_video_posts(api))
                kills.append(f"{killer.hit} ({posted}/{acked} posted, {time.monotonic() - started:.1f} s)")
                await web.wait()
                await asyncio.sleep(0.3)  # a supervisor notices and starts it again
                await web.start(session)
            await _until(all_posted, max(1.0, deadline - time.monotonic()), quiet=True)
            await asyncio.sleep(2 * options.lease_seconds + 2 if options.settle is None else options.settle)
            await web.stop()
    finally:
        if web is not None:
            await web.stop()
        await emulator.stop()
        await api.stop()
    figures = await _count(options, work, api, acked, ack_ms, kills, time.monotonic() - started)
    if options.keep_logs is not None:
        options.keep_logs.mkdir(parents=True, exist_ok=True)
        for name in ("web.log", "emulator.log", "web-data/soracast.db", "web-data/soracast.db-wal"):
            if (work / name).exists():
                shutil.copy(work / name, options.keep_logs / Path(name).name)
    if owned:
        shutil.rmtree(work, ignore_errors=True)
    return figures


async def _until(predicate: object, within: float, *, quiet: bool = False) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            if quiet:
                return
            raise TimeoutError("the soak waited too long")
        await asyncio.sleep(0.1)


async def _count(
    options: SoakOptions,
    work: Path,
    api: FakeSlackAPI,
    acked: int,
    ack_ms: list[float],
    kills: list[str],
    seconds: float,
) -> SoakFigures:
    posts = _video_posts(api)
    storage = SQLiteStorage(work / "web-data" / "soracast.db")
    await storage.open()
    try:
        generations = await storage.recent_generations(Scope(platform=Platform.SLACK, id=TEAM), limit=10_000)
        missing = []
        for g in generations:
            if posts[g.id] == 0:
                async with storage.db.execute(
                    "SELECT lease_owner, lease_until, delivering_at FROM generations WHERE id = ?", (g.id,)
                ) as cursor:
                    row = await cursor.fetchone()
                missing.append(
                    f"{g.id} {g.status.value} job={g.api_video_id} attempts={g.submit_attempts} "
                    f"delivered_at={g.delivered_at} lease={tuple(row) if row else None} extra={g.target.extra}"
                )
    finally:
        await storage.close()
    statuses = Counter(g.status.value for g in generations)
    failed = sum(1 for g in generations if g.status is GenerationStatus.FAILED and posts[g.id] == 0)
    delivered = sum(1 for count in posts.values() if count > 0)
    log = (work / "web.log").read_text(errors="replace") if (work / "web.log").exists() else ""
    # One message per video (its progress card, edited); any other post is a leftover of a crash.
    extra_messages = max(0, len(api.calls_to("chat.postMessage")) - max(acked, len(generations)))
    return SoakFigures(
        jobs=options.jobs,
        acked=acked,
        delivered=delivered,
        duplicates=sum(count - 1 for count in posts.values() if count > 1),
        lost=max(0, acked - delivered - failed) + (options.jobs - acked),
        failed=failed,
        ack_ms=ack_ms,
        kills=kills,
        seconds=seconds,
        tickets=len(api.calls_to("files.getUploadURLExternal")),
        completions=len(api.calls_to("files.completeUploadExternal")),
        info_checks=len(api.calls_to("files.info")),
        found_posted=log.count("not uploaded again"),
        extra_messages=extra_messages,
        statuses=dict(statuses),
        missing=missing,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--kills", default="complete,timer,complete", help=f"any of {', '.join(KILL_POINTS)}")
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--lost-answer-rate", type=float, default=0.5)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--share-delay-ms", type=float, default=300.0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy each run's logs under this folder")
    args = parser.parse_args()
    kills = tuple(k.strip() for k in args.kills.split(",") if k.strip())
    title = (
        f"soak: {args.jobs} signed /sora × {args.runs} runs; emulator fail rate {args.fail_rate:g} "
        f"(lost answers {args.lost_answer_rate:g}); Slack latency {args.latency_ms:g} ms; "
        f"SIGKILL at {', '.join(kills)}"
    )
    results = []
    rows: list[tuple[str, str, str]] = []
    for run in range(1, args.runs + 1):
        options = SoakOptions(
            jobs=args.jobs,
            kills=kills,
            fail_rate=args.fail_rate,
            lost_answer_rate=args.lost_answer_rate,
            latency=args.latency_ms / 1000,
            share_delay=args.share_delay_ms / 1000,
            time_scale=args.time_scale,
            seed=None if args.seed is None else args.seed + run,
            keep_logs=None if args.keep_logs is None else args.keep_logs / f"run{run}",
        )
        figures = asyncio.run(run_soak(options))
        results.append(figures)
        rows.extend(figures.rows(run))
        # Runs take a while: progress goes to stderr, the figures in one table at the end.
        print(f"run {run}/{args.runs}: {figures.summary()}", file=sys.stderr, flush=True)
    clean = sum(1 for f in results if f.delivered == f.jobs and f.duplicates == 0 and f.lost == 0)
    all_acks = list(itertools.chain.from_iterable(f.ack_ms for f in results))
    rows.append(("runs with every video posted exactly once", f"{clean}/{len(results)}", "goal: all"))
    rows.append(("ack p99 over all runs", f"{_percentile(all_acks, 0.99):.0f} ms" if all_acks else "-",
                 "Slack gives up after 3 s"))
    print_table(title, rows)

if __name__ == "__main__":
    main()

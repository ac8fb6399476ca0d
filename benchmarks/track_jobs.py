"""Track many concurrent generations in one soracast process against the emulated Videos API.

The emulator runs in a child process (so its memory and CPU are not counted), finishes each job after a
random 5–60 s of simulated time, and asks clients to poll every `--poll-ms` of real time. This process
submits `--jobs` generations through the real core (HTTP client, SQLite, the line, trackers) and prints one
table (also when it times out, with what it saw by then):

- wall time, peak RSS and CPU seconds of this process,
- API calls per generation, and status calls per poll interval: for all jobs together (one `GET /videos` sweep
  of list pages answers every tracker that asked) and per job,
- the delay between the API's job reaching `completed` and the core posting it (the notifier's `completed`):
  mean, p95 and max, in ms and in poll intervals.

    .venv/bin/python benchmarks/track_jobs.py [--jobs 1000] [--time-scale 1] [--poll-ms 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.table import print_table  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.models import Actor, DeliveryReceipt, DeliveryTarget, Generation, GenerationOptions, Platform, Scope  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the emulator side (child process) ---------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from bot.backends.offline.faults import FaultPlan
    from bot.backends.offline.openai_api import create_emulator_app
    from bot.backends.offline.renderer import OfflineVideosAPI

    root = Path(tempfile.mkdtemp(prefix="soracast-bench-emulator-"))
    offline = OfflineVideosAPI(
        root,
        time_scale=args.time_scale,
        job_seconds=(args.min_seconds, args.max_seconds),
        poll_after_ms=args.poll_ms,
        render="stub",
        persist=False,
        seed=7,
    )
    faults = FaultPlan()
    app = create_emulator_app(offline, faults=faults)

    async def stats(_: web.Request) -> web.Response:
        retrieves: Counter[str] = Counter()
        routes: Counter[str] = Counter()
        for record in faults.requests:
            routes[record.route or "?"] += 1
            if record.route == "retrieve_video":
                retrieves[record.path.rsplit("/", 1)[-1]] += 1
        jobs = {
            job.id: {
                "created": job.created_at,
                "completed": job.created_at + job.duration / offline.time_scale,
                "retrieves": retrieves[job.id],
            }
            for job in offline._jobs.values()  # the benchmark reads the emulator's own job table
        }
        return web.json_response({"jobs": jobs, "routes": routes})

    app.router.add_get("/_bench/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# --- the soracast side (this process) ----------------------------------------------------------------------


class TimingNotifier:
    """Records when the core emitted `completed` for each generation."""

    def __init__(self, expected: int) -> None:
        self.completed_at: dict[str, float] = {}
        self.failed: list[str] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def progress(self, generation: Generation) -> None:
        return None

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        self.completed_at[generation.id] = time.time()
        self._check()
        return DeliveryReceipt()

    async def failed(self, generation: Generation) -> None:
        self.failed.append(generation.id)
        self._check()

    def _check(self) -> None:
        if len(self.completed_at) + len(self.failed) >= self.expected:
            self.done.set()


async def track(args: argparse.Namespace, base_url: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="soracast-bench-core-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        openai_api_key="sk-bench-not-a-real-key",
        api_base_url=base_url + "/v1",
        poll_interval=args.poll_ms / 1000,
        progress_interval=60,
        # Every job in flight at once: this measures tracking, not the line.
        max_in_flight=args.jobs,
        submits_per_minute=1_000_000,
        # One person asks for every job: the per-person cap is a policy, not what is measured here.
        max_queued_per_user=args.jobs,
        data_dir=data,
        log_level="WARNING",
    )
    core = await build_app(settings)
    notifier = TimingNotifier(args.jobs)
    core.generations.register_notifier(Platform.CONSOLE, notifier)
    scope = Scope(platform=Platform.CONSOLE, id="bench")
    actor = Actor(id="bench")
    cpu_start = time.process_time()
    started = time.time()

    async def submit(index: int) -> Generation:
        return await core.generations.generate(
            scope, actor, f"benchmark scene {index}", GenerationOptions(), DeliveryTarget(channel_id="bench")
        )

    asked = await asyncio.gather(*(submit(i) for i in range(args.jobs)))
    submitted = time.time()
    timeout = args.max_seconds / args.time_scale + 120
    timed_out = False
    try:
        await asyncio.wait_for(notifier.done.wait(), timeout=timeout)
    except TimeoutError:
        timed_out = True
    finished = time.time()
    cpu = time.process_time() - cpu_start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Read back from storage: a job that waited in line got its API id after `generate` returned.
    stored = [await core.storage.get_generation(g.id) for g in asked]
    await core.aclose()

    async with httpx.AsyncClient() as client:
        reply = await client.get(base_url + "/_bench/stats", headers={"Authorization": "Bearer bench"}, timeout=60)
        stats = reply.json()
    jobs = stats["jobs"]
    poll = args.poll_ms / 1000
    per_interval = []
    delays = []
    for generation in stored:
        job = jobs.get(generation.api_video_id or "") if generation is not None else None
        if generation is None or job is None:
            continue
        lifetime = job["completed"] - job["created"]
        per_interval.append(job["retrieves"] / max(1.0, lifetime / poll))
        if generation.id in notifier.completed_at:
            delays.append(notifier.completed_at[generation.id] - job["completed"])
    # Every API route the emulator served ("?" is this benchmark's own request for the figures).
    routes = {route: count for route, count in stats["routes"].items() if route != "?"}
    total_calls = sum(routes.values())
    lists, singles = routes.get("list_videos", 0), routes.get("retrieve_video", 0)
    # While jobs are in flight: from the first submit to the last job finishing at the emulator.
    in_flight_seconds = (
        max(j["completed"] for j in jobs.values()) - min(j["created"] for j in jobs.values()) if jobs else 0.0
    )
    intervals = max(1.0, in_flight_seconds / poll)
    posted = len(notifier.completed_at)

    rows = [
        ("jobs tracked", f"{len(per_interval)} sent, {posted} posted, {len(notifier.failed)} failed",
         f"{args.jobs} asked" + (f"; TIMED OUT after {timeout:.0f} s" if timed_out else "")),
        ("wall time", f"{finished - started:.1f} s", f"submitting took {submitted - started:.1f} s; goal < 300 s"),
        ("peak RSS", f"{peak_rss_mb:.1f} MB", "this process (the emulator runs apart); goal < 150 MB"),
        ("CPU", f"{cpu:.1f} s", f"{cpu / max(0.001, finished - started) * 100:.0f} % of one core over the run"),
        ("API calls per generation", f"{total_calls / args.jobs:.2f}",
         ", ".join(f"{route} {count}" for route, count in sorted(routes.items()))),
        ("status calls per poll interval", f"{(lists + singles) / intervals:.1f}",
         f"all jobs together: {lists} list pages + {singles} single retrieves over {intervals:.0f} intervals"),
        ("single retrieves per job per interval",
         f"mean {statistics.mean(per_interval):.3f}, max {max(per_interval):.2f}" if per_interval else "-",
         "where the list did not show a job"),
    ]
    if delays:
        ordered = sorted(delays)
        p95 = ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.95) - 1)]
        figures = {"mean": statistics.mean(delays), "p95": p95, "max": ordered[-1]}
        rows.extend(
            (f"completed → posted, {name}", f"{value * 1000:.0f} ms = {value / poll:.2f} poll intervals",
             f"poll interval {poll * 1000:.0f} ms; goal < 1 interval")
            for name, value in figures.items()
        )
    else:
        rows.append(("completed → posted", "-", "nothing was posted"))
    print_table(
        f"track_jobs: {args.jobs} generations, jobs {args.min_seconds:g}–{args.max_seconds:g} s simulated "
        f"(time scale {args.time_scale:g}), poll every {poll * 1000:.0f} ms",
        rows,
    )
    if timed_out:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--poll-ms", type=int, default=5000, help="real ms between status polls")
    parser.add_argument("--min-seconds", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args))
        return
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--port", str(port), "--time-scale", str(args.time_scale),
         "--poll-ms", str(args.poll_ms), "--min-seconds", str(args.min_seconds),
         "--max-seconds", str(args.max_seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("the emulator did not start")
        asyncio.run(track(args, f"http://127.0.0.1:{port}"))
    finally:
        child.terminate()
        child.wait(timeout=10)


if __name__ == "__main__":
    main()

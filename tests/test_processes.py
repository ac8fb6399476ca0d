"""Several processes on one Postgres: each generation is worked on by one live process, a webhook received by
any process reaches the one holding the job, a dead process's jobs are taken over (when it is found dead or its
leases expire), and creates share one rate per backend account."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.app import Soracast, build_app
from bot.backends.openai.backend import OpenAIBackend
from bot.models import GenerationOptions, GenerationStatus, Platform, utcnow
from bot.videos.jobs import JobRunner
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, fast_settings
from tests.fixtures.videos import VideosEmulator, fast_offline_api

WITHIN = 60


async def _process(
    tmp_path: Path, name: str, postgres_url: str, *, serves: bool, **settings: object
) -> tuple[Soracast, RecordingNotifier]:
    """One soracast process: its own data directory and renderer client, the shared database and API state."""
    values: dict[str, object] = {"database_url": postgres_url, "poll_interval": 0.05}
    values.update(settings)
    config = fast_settings(tmp_path / name, **values)
    # One API for all: an endpoint each process reaches with its own client (random ids, as a real API's).
    api = fast_offline_api(tmp_path / "api", time_scale=1.0, job_seconds=1.0, seed=None)
    core = await build_app(config, backends={"openai": OpenAIBackend(api, config, account_key="shared")})
    recorder = RecordingNotifier()
    if serves:
        core.generations.register_notifier(Platform.CONSOLE, recorder)
        await core.generations.resume(Platform.CONSOLE)
    return core, recorder


async def test_a_webhook_received_by_another_process_wakes_the_one_holding_the_job(
    tmp_path: Path, postgres_url: str
) -> None:
    # The worker polls only every 60 s: only the wake-up can get the video posted within the test.
    worker, posted = await _process(tmp_path, "worker", postgres_url, serves=True, poll_interval=60.0)
    web, _ = await _process(tmp_path, "web", postgres_url, serves=False)
    try:
        generation = await worker.generations.generate(CONSOLE_SCOPE, TESTER, "a fox", GenerationOptions(), TARGET)
        await asyncio.sleep(1.2)  # the job is done at the API now; nobody has polled it
        assert posted.deliveries == []
        sent = time.monotonic()
        assert await web.generations.on_video_event(generation.api_video_id or "")
        final = await worker.generations.wait_finished(generation.id, within=10)
        assert final.status is GenerationStatus.COMPLETED and [g.id for g in posted.deliveries] == [generation.id]
        assert time.monotonic() - sent < 10
    finally:
        await web.aclose()
        await worker.aclose()


async def test_a_dead_processs_jobs_are_taken_over_when_its_leases_expire_and_posted_once(
    tmp_path: Path, postgres_url: str
) -> None:
    first, first_posted = await _process(tmp_path, "first", postgres_url, serves=True, lease_seconds=5)
    generations = [
        await first.generations.generate(CONSOLE_SCOPE, TESTER, f"video {i}", GenerationOptions(), TARGET)
        for i in range(3)
    ]
    # The process dies: its tasks stop where they are and nothing is released (as after kill -9).
    runner = first.generations.runner
    runner._closing = True
    for task in [*runner._trackers.values(), *runner._dispatchers.values()]:
        task.cancel()
    if runner._lease_task is not None:
        runner._lease_task.cancel()

    second, second_posted = await _process(tmp_path, "second", postgres_url, serves=True, lease_seconds=5)
    try:
        assert second_posted.deliveries == [] or len(second_posted.deliveries) < 3
        finals = [await second.generations.wait_finished(g.id, within=WITHIN) for g in generations]
        assert all(f.status is GenerationStatus.COMPLETED for f in finals)
        everyone = [g.id for g in first_posted.deliveries + second_posted.deliveries]
        assert sorted(everyone) == sorted(g.id for g in generations), "each video posted exactly once"
    finally:
        await second.aclose()
        await first.storage.close()


async def test_two_processes_share_one_line_and_send_each_video_once(tmp_path: Path, postgres_url: str) -> None:
    one, one_posted = await _process(tmp_path, "one", postgres_url, serves=True, max_in_flight=2)
    two, two_posted = await _process(tmp_path, "two", postgres_url, serves=True, max_in_flight=2)
    try:
        asked = [
            await (one if i % 2 else two).generations.generate(
                CONSOLE_SCOPE, TESTER.model_copy(update={"id": f"p{i % 3}"}), f"shared {i}", GenerationOptions(),
                TARGET,
            )
            for i in range(8)
        ]
        for generation in asked:
            await asyncio.wait_for(_delivered(one, generation.id), WITHIN)
        everyone = [g.id for g in one_posted.deliveries + two_posted.deliveries]
        assert sorted(everyone) == sorted(g.id for g in asked)
        assert one.storage is not two.storage
    finally:
        await one.aclose()
        await two.aclose()


async def _delivered(core: Soracast, generation_id: str) -> None:
    while True:
        stored = await core.storage.get_generation(generation_id)
        if stored is not None and stored.delivered_at is not None:
            return
        await asyncio.sleep(0.05)


def _kill(runner: JobRunner) -> None:
    """As after kill -9: every task stops where it is; nothing is released or ended."""
    runner._closing = True
    for task in [*runner._trackers.values(), *runner._dispatchers.values(), runner._lease_task, runner._beat_task]:
        if task is not None:
            task.cancel()


async def test_a_webhook_for_a_dead_processs_job_is_taken_over_by_its_receiver_before_the_lease_runs_out(
    tmp_path: Path, postgres_url: str
) -> None:
    # Leases of a minute and no polls within the test: only taking the job over for its webhook can post it.
    slow = {"poll_interval": 60.0, "lease_seconds": 60}
    first, first_posted = await _process(tmp_path, "first", postgres_url, serves=True, heartbeat_seconds=0.2, **slow)
    generation = await first.generations.generate(CONSOLE_SCOPE, TESTER, "a fox", GenerationOptions(), TARGET)
    assert generation.api_video_id is not None
    _kill(first.generations.runner)
    await first.storage.close()  # its connections go, and with them its lock
    second, second_posted = await _process(
        tmp_path, "second", postgres_url, serves=True, heartbeat_seconds=30.0, **slow
    )
    try:
        held = await second.storage.lease_holder(generation.id)
        assert held is not None and held.owner == first.generations.runner.owner and held.until > utcnow()
        await asyncio.sleep(1.2)  # the job is done at the API; the first process missed its beats
        assert await second.generations.on_video_event(generation.api_video_id)
        final = await second.generations.wait_finished(generation.id, within=20)
        assert final.status is GenerationStatus.COMPLETED
        assert [g.id for g in second_posted.deliveries] == [generation.id] and first_posted.deliveries == []
        assert utcnow() < held.until, "taken over for the webhook, not because the lease ran out"
    finally:
        await second.aclose()


async def test_a_clean_stop_ends_the_process_and_a_429_holds_every_processs_creates(
    tmp_path: Path, postgres_url: str, start_videos_emulator: object
) -> None:
    emulator: VideosEmulator = await start_videos_emulator()  # type: ignore[operator]
    emulator.faults.push("create_video", status=429, code="rate_limit_exceeded", retry_after=30)
    cores = []
    for name in ("one", "two"):
        config = fast_settings(
            tmp_path / name, offline=False, openai_api_key="sk-test-turns", api_base_url=emulator.base_url,
            database_url=postgres_url,
        )
        core = await build_app(config)
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        await core.generations.resume(Platform.CONSOLE)
        cores.append(core)
    one, two = cores
    try:
        refused = await one.generations.generate(CONSOLE_SCOPE, TESTER, "a fox", GenerationOptions(), TARGET)
        assert refused.status is GenerationStatus.WAITING, "the 429 put it back in line"
        # The other process may not send either: the account's one limiter holds every create for what was asked.
        account = one.catalog.backend("openai").account_key  # type: ignore[union-attr]
        assert await two.storage.take_submit_turn(account, utcnow(), 0.5) > 20
        waits = await two.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
        assert waits.status is GenerationStatus.WAITING
        assert len(emulator.faults.requests.for_route("create_video")) == 1

        owner = one.generations.runner.owner
        assert owner not in await two.storage.dead_processes(utcnow())
        await one.aclose()
        assert owner in await two.storage.dead_processes(utcnow()), "a clean stop counts as dead at once"
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_webhook_reaches_a_tracker_waiting_for_the_next_batched_status_sweep(tmp_path: Path) -> None:
    # Sweeps at most every 30 s (half the poll interval): only the wake-up can answer within the test.
    config = fast_settings(tmp_path / "data", poll_interval=60.0)
    api = fast_offline_api(tmp_path / "api", time_scale=1.0, job_seconds=1.0)
    core = await build_app(config, backends={"openai": OpenAIBackend(api, config, account_key="one")})
    core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    await core.generations.resume(Platform.CONSOLE)
    try:
        first, second = [
            await core.generations.generate(CONSOLE_SCOPE, TESTER, f"video {i}", GenerationOptions(), TARGET)
            for i in range(2)
        ]
        runner, backend = core.generations.runner, core.catalog.backend("openai")
        assert backend is not None and backend.can_list_jobs
        await runner._status(backend, first.api_video_id or "")  # a sweep now: the next one is 30 s away
        waiting = asyncio.create_task(runner._status(backend, second.api_video_id or "", generation_id=second.id))
        await asyncio.sleep(0.2)
        assert not waiting.done(), "it waits for the next sweep"
        assert runner.wake(second.id)
        state, _seen = await asyncio.wait_for(waiting, 10)
        assert state.id == second.api_video_id
    finally:
        await core.aclose()

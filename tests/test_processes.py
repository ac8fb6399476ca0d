"""Several processes on one Postgres: each generation is worked on by one live process, a webhook received by
any process reaches the one holding the job, and a dead process's jobs are taken over when its leases expire."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.app import Soracast, build_app
from bot.backends.openai.backend import OpenAIBackend
from bot.models import GenerationOptions, GenerationStatus, Platform
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, fast_settings
from tests.fixtures.videos import fast_offline_api

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

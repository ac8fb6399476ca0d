"""Workspaces that removed soracast (core side): their jobs end without being posted, their data is kept for the
retention period and then deleted by the sweep — one workspace only, never its neighbour."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app import Soracast, build_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.chat.notify import DestinationGone
from bot.models import (
    Actor,
    DeliveryReceipt,
    DeliveryTarget,
    Generation,
    GenerationOptions,
    GenerationStatus,
    Platform,
    Scope,
    utcnow,
)
from tests.fixtures.core import fast_settings
from tests.fixtures.line import WITHIN, finish, sent, slow_offline_api

GONE = Scope(platform=Platform.CONSOLE, id="left")
STAYING = Scope(platform=Platform.CONSOLE, id="stays")
ALICE = Actor(id="alice")
BOB = Actor(id="bob")
TARGET = DeliveryTarget(channel_id="general")


class GoneNotifier:
    """Posts for every workspace except those in `gone`, for which it says the destination is gone."""

    def __init__(self) -> None:
        self.gone: set[Scope] = set()
        #: Progress notes refused as gone: after the first, the core stops asking.
        self.progress_calls: list[str] = []
        self.posted: list[str] = []
        self.refused: list[str] = []

    def _check(self, generation: Generation, calls: list[str]) -> None:
        if generation.scope in self.gone:
            calls.append(generation.id)
            raise DestinationGone(f"{generation.scope.key} removed the app")

    async def progress(self, generation: Generation) -> None:
        self._check(generation, self.progress_calls)

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        self._check(generation, self.refused)
        self.posted.append(generation.id)
        return DeliveryReceipt(message_id=f"m-{generation.id}")

    async def failed(self, generation: Generation) -> None:
        self._check(generation, self.refused)
        self.posted.append(generation.id)


@pytest.fixture
async def slow_api(tmp_path: Path) -> AsyncIterator[OfflineVideosAPI]:
    api = slow_offline_api(tmp_path / "api")
    yield api
    await api.aclose()


@pytest.fixture
async def line_core(tmp_path: Path, slow_api: OfflineVideosAPI) -> AsyncIterator[Soracast]:
    """A core whose one slot is held until a test finishes the job in it."""
    app = await build_app(fast_settings(tmp_path / "data", max_in_flight=1), videos=slow_api)
    try:
        yield app
    finally:
        await app.aclose()


async def _ask(core: Soracast, scope: Scope, who: Actor, prompt: str) -> Generation:
    return await core.generations.generate(scope, who, prompt, GenerationOptions(), TARGET)


async def test_a_removed_workspace_has_its_line_emptied_and_its_jobs_end_unposted_once(
    line_core: Soracast, slow_api: OfflineVideosAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.videos.jobs")
    notifier = GoneNotifier()
    line_core.generations.register_notifier(Platform.CONSOLE, notifier)
    rendering = await _ask(line_core, GONE, ALICE, "a kite at dawn")
    waiting = await _ask(line_core, GONE, ALICE, "a kite at dusk")
    neighbours = await _ask(line_core, STAYING, BOB, "a boat at noon")
    await sent(line_core, rendering.id)
    assert (await line_core.storage.get_generation(waiting.id)).status is GenerationStatus.WAITING  # type: ignore[union-attr]

    notifier.gone.add(GONE)
    await line_core.departures.retire(GONE, "app_uninstalled")

    # Its waiting video leaves the line (its cost given back) and ends without a word to anyone.
    ended = await line_core.generations.wait_finished(waiting.id, WITHIN)
    assert ended.status is GenerationStatus.CANCELLED and ended.delivered_at is not None
    # The one being made finishes at the backend, then ends unposted instead of being retried.
    done = await finish(line_core, slow_api, rendering.id)
    assert done.status is GenerationStatus.COMPLETED and done.delivered_at is not None
    assert notifier.posted == [] and sorted(notifier.refused) == sorted([waiting.id, rendering.id])
    assert notifier.progress_calls.count(rendering.id) <= 1
    assert f"generation {rendering.id} of {GONE.key} ends without being posted" in caplog.text
    # The neighbour's video takes the freed slot and is posted as usual.
    await finish(line_core, slow_api, neighbours.id)
    assert notifier.posted == [neighbours.id]


async def test_retired_data_is_kept_for_the_retention_then_swept_and_a_return_keeps_it(
    line_core: Soracast, slow_api: OfflineVideosAPI, clip_maker
) -> None:
    notifier = GoneNotifier()
    line_core.generations.register_notifier(Platform.CONSOLE, notifier)
    for scope, who in ((GONE, ALICE), (STAYING, BOB)):
        await line_core.registry.register(scope, who, "mascot", clip_maker(seconds=3.0), rights_confirmed=True)
        generation = await _ask(line_core, scope, who, "@mascot on a swing")
        done = await finish(line_core, slow_api, generation.id)
        assert done.video_path is not None and done.video_path.exists()
    [gone_video] = await line_core.generations.recent(GONE)
    [staying_video] = await line_core.generations.recent(STAYING)

    retired = await line_core.departures.retire(GONE, "app_uninstalled")
    assert retired.purge_after - retired.retired_at == timedelta(days=30)  # the default retention
    assert await line_core.departures.sweep(now=retired.purge_after - timedelta(minutes=1)) == []
    assert len(await line_core.registry.list(GONE)) == 1

    [purged] = await line_core.departures.sweep(now=retired.purge_after)
    assert purged.scope == GONE and purged.characters == 1 and [g.id for g in purged.generations] == [gone_video.id]
    assert await line_core.registry.list(GONE) == [] and await line_core.generations.recent(GONE) == []
    assert gone_video.video_path is not None and not gone_video.video_path.exists()
    assert await line_core.storage.get_retired_scope(GONE) is None
    # Nothing of the workspace that stayed was touched, its video file included.
    assert [c.handle for c in await line_core.registry.list(STAYING)] == ["mascot"]
    assert [g.id for g in await line_core.generations.recent(STAYING)] == [staying_video.id]
    assert staying_video.video_path is not None and staying_video.video_path.exists()

    # A workspace that comes back before the sweep keeps everything.
    again = await line_core.departures.retire(STAYING, "tokens_revoked")
    assert await line_core.departures.reinstate(STAYING)
    assert await line_core.departures.sweep(now=again.purge_after + timedelta(days=1)) == []
    assert [c.handle for c in await line_core.registry.list(STAYING)] == ["mascot"]


async def test_the_retention_is_a_setting_and_the_operator_can_forget_a_workspace_at_once(
    tmp_path: Path, clip_maker
) -> None:
    api = slow_offline_api(tmp_path / "api")
    core = await build_app(fast_settings(tmp_path / "data", uninstalled_retention_days=2), videos=api)
    try:
        for scope, who in ((GONE, ALICE), (STAYING, BOB)):
            await core.registry.register(scope, who, "mascot", clip_maker(seconds=3.0), rights_confirmed=True)
        retired = await core.departures.retire(GONE, "app_uninstalled", now=utcnow())
        assert retired.purge_after - retired.retired_at == timedelta(days=2)

        purged = await core.departures.forget_now(STAYING)
        assert purged.characters == 1 and await core.registry.list(STAYING) == []
        assert await core.storage.get_retired_scope(STAYING) is None  # nothing left, so no mark either
        assert len(await core.registry.list(GONE)) == 1  # still within its retention
    finally:
        await core.aclose()
        await api.aclose()

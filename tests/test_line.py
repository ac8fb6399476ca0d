"""The fair line: a burst is never refused for being busy, people take turns, everyone sees their place, a
waiting video survives a restart and can be cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from bot.actions import FINISHED_ACTIONS, VideoAction
from bot.app import Soracast, build_app
from bot.backends.base import JobState
from bot.chat import present
from bot.errors import LineFull, PermissionDenied
from bot.models import (
    Actor,
    DeliveryTarget,
    Generation,
    GenerationOptions,
    GenerationStatus,
    PlaceInLine,
    Platform,
    Scope,
    SpendState,
    utcnow,
)
from bot.videos.line import fair_order, places
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, RecordingNotifier, fast_settings
from tests.fixtures.line import eventually, finish, sent, slow_offline_api
from tests.fixtures.videos import fast_offline_api

WITHIN = 60
WAITING = GenerationStatus.WAITING
ALICE, BOB, CAROL = Actor(id="alice"), Actor(id="bob"), Actor(id="carol")
OTHER = Scope(platform=Platform.CONSOLE, id="other-team")


def _generation(scope: Scope, person: str, minute: int) -> Generation:
    return Generation(
        scope=scope, requester_id=person, prompt=f"{person} {minute}", api_prompt="x", model="sora-2", seconds="4",
        size="1280x720", target=DeliveryTarget(channel_id="c"), created_at=utcnow() + timedelta(minutes=minute),
    )


def test_people_and_workspaces_take_turns() -> None:
    alice = [_generation(CONSOLE_SCOPE, "alice", m) for m in range(5)]
    bob = _generation(CONSOLE_SCOPE, "bob", 6)
    carol = _generation(OTHER, "carol", 7)

    order = fair_order([*alice, bob, carol])

    # Alice asked first, but Bob's and Carol's first videos do not wait behind her other four.
    assert [g.prompt for g in order[:4]] == ["alice 0", "carol 7", "bob 6", "alice 1"]
    assert [g.prompt for g in order[4:]] == ["alice 2", "alice 3", "alice 4"]
    # Someone with videos already rendering waits for their turn behind those with none.
    busy_order = fair_order([*alice, bob, carol], {(CONSOLE_SCOPE.key, "alice"): 2})
    assert [g.prompt for g in busy_order[:3]] == ["carol 7", "bob 6", "alice 0"]
    found = places(order, slots=2, job_seconds=60)
    assert [found[g.id].position for g in order] == list(range(1, 8))
    assert [found[g.id].eta_seconds for g in order[:4]] == [60, 60, 120, 120]


@pytest.fixture
async def slow_core(tmp_path: Path) -> Soracast:
    """Two jobs in flight at most, each taking a little while (so the line really forms)."""
    api = fast_offline_api(tmp_path / "offline", time_scale=20.0, job_seconds=2.0)
    core = await build_app(fast_settings(tmp_path / "data", max_in_flight=2, progress_interval=0), videos=api)
    yield core
    await core.aclose()


async def test_a_burst_is_stored_and_sent_as_room_frees_up(slow_core: Soracast) -> None:
    core = slow_core
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    await core.generations.resume(Platform.CONSOLE)
    people = [ALICE, BOB, CAROL]
    asked = [
        await core.generations.generate(CONSOLE_SCOPE, people[i % 3], f"burst {i}", GenerationOptions(), TARGET)
        for i in range(6)
    ]

    # Nothing was refused; two went straight out and the rest wait with their places.
    statuses = [g.status for g in asked]
    assert all(s is GenerationStatus.QUEUED for s in statuses[:2])
    waiting = [g for g in asked if g.status is GenerationStatus.WAITING]
    assert len(waiting) == 4
    in_flight_seen = []
    for generation in asked:
        in_flight_seen.append(await core.storage.count_in_flight(core.backend.name))
        final = await core.generations.wait_finished(generation.id, within=WITHIN)
        assert final.status is GenerationStatus.COMPLETED
    assert max(in_flight_seen) <= 2
    assert sorted(g.id for g in recorder.deliveries) == sorted(g.id for g in asked)
    # The waiting ones were told where they stood, as the line moved.
    lines = [present.status_line(g) for g in recorder.progress_generations if g.status is GenerationStatus.WAITING]
    assert any(line.startswith("Waiting — 1st in line") for line in lines)
    assert any(line.startswith("Waiting — 2nd in line") for line in lines)


async def test_one_person_may_have_three_waiting_and_is_told_so(slow_core: Soracast) -> None:
    core = slow_core
    core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    for i in range(5):  # two go out at once, three wait
        await core.generations.generate(CONSOLE_SCOPE, ALICE, f"mine {i}", GenerationOptions(), TARGET)
    with pytest.raises(LineFull) as caught:
        await core.generations.generate(CONSOLE_SCOPE, ALICE, "one more", GenerationOptions(), TARGET)
    assert "3 videos waiting" in caught.value.message and "/sora queue" in (caught.value.hint or "")
    # Someone else is not held back by Alice's cap.
    bob = await core.generations.generate(CONSOLE_SCOPE, BOB, "mine", GenerationOptions(), TARGET)
    assert bob.status is GenerationStatus.WAITING
    [entry_bob] = [e for e in await core.generations.line(CONSOLE_SCOPE) if e.generation.id == bob.id]
    assert entry_bob.place.position == 1  # Alice already has two rendering: Bob's first goes before her third


async def test_a_waiting_video_survives_a_restart_and_keeps_its_place(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "data", max_in_flight=1)
    api_root = tmp_path / "offline"
    first = await build_app(settings, videos=fast_offline_api(api_root, time_scale=5.0, job_seconds=2.0))
    asked = [
        await first.generations.generate(CONSOLE_SCOPE, person, f"{person.id}'s", GenerationOptions(), TARGET)
        for person in (ALICE, BOB, CAROL)
    ]
    before = [(e.generation.id, e.place.position) for e in await first.generations.line(CONSOLE_SCOPE)]
    await first.aclose()  # no adapter was serving: nothing was sent but the first

    second = await build_app(settings, videos=fast_offline_api(api_root, time_scale=1000.0))
    try:
        assert [(e.generation.id, e.place.position) for e in await second.generations.line(CONSOLE_SCOPE)] == before
        recorder = RecordingNotifier()
        second.generations.register_notifier(Platform.CONSOLE, recorder)
        await second.generations.resume(Platform.CONSOLE)
        for generation in asked:
            final = await second.generations.wait_finished(generation.id, within=WITHIN)
            assert final.status is GenerationStatus.COMPLETED
    finally:
        await second.aclose()
    assert [g.id for g in recorder.deliveries] == [g.id for g in asked]


async def test_the_requester_or_an_admin_can_cancel_a_waiting_video(slow_core: Soracast) -> None:
    core = slow_core
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    await core.generations.resume(Platform.CONSOLE)
    for i in range(2):
        await core.generations.generate(CONSOLE_SCOPE, BOB, f"first {i}", GenerationOptions(), TARGET)
    waiting = await core.generations.generate(CONSOLE_SCOPE, ALICE, "changed my mind", GenerationOptions(), TARGET)
    assert waiting.status is GenerationStatus.WAITING

    with pytest.raises(PermissionDenied):
        await core.generations.cancel(CONSOLE_SCOPE, BOB, waiting.id)
    cancelled = await core.generations.cancel(CONSOLE_SCOPE, ALICE, waiting.id)

    assert cancelled.status is GenerationStatus.CANCELLED
    final = await core.generations.wait_finished(waiting.id, within=WITHIN)
    assert final.api_video_id is None, "a cancelled video is never sent"
    assert [g.id for g in recorder.failures] == [waiting.id]
    assert present.status_line(recorder.failures[0]) == "Cancelled"
    assert await core.generations.line(CONSOLE_SCOPE) == []
    async with core.storage.db.execute(  # type: ignore[attr-defined]
        "SELECT state FROM spend WHERE generation_id = ?", (waiting.id,)
    ) as cursor:
        assert (await cursor.fetchone())[0] == SpendState.RELEASED.value
    await asyncio.sleep(0)


async def test_a_video_that_leaves_the_line_is_reported_even_when_its_backend_says_nothing_new(
    tmp_path: Path,
) -> None:
    # Jobs stay "queued, 0 %" at the backend for a long time: only leaving the line changes anything to show.
    api = slow_offline_api(tmp_path / "slow")
    core = await build_app(fast_settings(tmp_path / "data", max_in_flight=1), videos=api)
    try:
        recorder = RecordingNotifier()
        core.generations.register_notifier(Platform.CONSOLE, recorder)
        first = await core.generations.generate(CONSOLE_SCOPE, BOB, "first", GenerationOptions(), TARGET)
        second = await core.generations.generate(CONSOLE_SCOPE, ALICE, "second", GenerationOptions(), TARGET)
        assert core.generations.offered_actions(second) == [VideoAction.CANCEL]
        await eventually(lambda: [g for g in recorder.progress_generations if g.id == second.id])

        await finish(core, api, first.id)
        await sent(core, second.id)

        notes = await eventually(
            lambda: [g for g in recorder.progress_generations if g.id == second.id and g.status is not WAITING]
        )
        assert notes[0].status is GenerationStatus.QUEUED and notes[0].progress == 0
        assert present.status_line(notes[0]).startswith("Queued")
        assert core.generations.offered_actions(notes[0]) == [], "no Cancel once it has left the line"
        done = await finish(core, api, second.id)
        assert core.generations.offered_actions(done) == list(FINISHED_ACTIONS)
    finally:
        await core.aclose()


class _HeldNotifier(RecordingNotifier):
    """Holds every progress note while `hold` is clear (a slow chat platform)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = asyncio.Event()
        self.hold.set()
        self.held = asyncio.Event()

    async def progress(self, generation: Generation) -> None:
        if not self.hold.is_set():
            self.held.set()
            await self.hold.wait()
        await super().progress(generation)


async def test_a_video_cancelled_while_the_line_is_being_shown_stays_cancelled(tmp_path: Path) -> None:
    api = slow_offline_api(tmp_path / "slow")
    core = await build_app(fast_settings(tmp_path / "data", max_in_flight=1), videos=api)
    try:
        notifier = _HeldNotifier()
        core.generations.register_notifier(Platform.CONSOLE, notifier)
        first = await core.generations.generate(CONSOLE_SCOPE, BOB, "in flight", GenerationOptions(), TARGET)
        dave = Actor(id="dave")
        b, c, d = [
            await core.generations.generate(CONSOLE_SCOPE, who, f"{who.id}'s", GenerationOptions(), TARGET)
            for who in (ALICE, CAROL, dave)
        ]

        async def third_in_line() -> bool:
            stored = await core.storage.get_generation(d.id)
            return stored is not None and stored.line_position == 3

        await eventually(third_in_line)
        # The line moves (b leaves it) while the chat is slow to take the new places: d is cancelled meanwhile.
        notifier.hold.clear()
        await core.generations.cancel(CONSOLE_SCOPE, ALICE, b.id)
        await asyncio.wait_for(notifier.held.wait(), WITHIN)
        await core.generations.cancel(CONSOLE_SCOPE, dave, d.id)
        notifier.hold.set()

        await finish(core, api, first.id)
        await finish(core, api, c.id)
        final = await core.generations.wait_finished(d.id, within=WITHIN)
        assert final.status is GenerationStatus.CANCELLED and final.api_video_id is None
        assert [e.generation.id for e in await core.generations.line(CONSOLE_SCOPE)] == []
    finally:
        await core.aclose()


async def test_when_the_line_moves_every_changed_place_is_written_in_one_go(tmp_path: Path) -> None:
    api = slow_offline_api(tmp_path / "slow")
    core = await build_app(fast_settings(tmp_path / "data", max_in_flight=1), videos=api)
    try:
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        first = await core.generations.generate(CONSOLE_SCOPE, BOB, "in flight", GenerationOptions(), TARGET)
        waiting = [
            await core.generations.generate(CONSOLE_SCOPE, who, f"{who.id}'s", GenerationOptions(), TARGET)
            for who in (ALICE, CAROL, Actor(id="dave"), Actor(id="erin"))
        ]

        async def placed(positions: list[int | None]) -> bool:
            stored = [await core.storage.get_generation(g.id) for g in waiting]
            return [g.line_position if g is not None else None for g in stored] == positions

        await eventually(lambda: placed([1, 2, 3, 4]))
        batches: list[list[str]] = []
        singles: list[str] = []
        store = core.storage
        places_in_line, place_in_line = store.places_in_line, store.place_in_line

        async def spy_places(places: list[PlaceInLine]) -> set[str]:
            batches.append([p.generation_id for p in places])
            return await places_in_line(places)

        async def spy_place(generation_id: str, position: int, eta_seconds: float) -> bool:
            singles.append(generation_id)
            return await place_in_line(generation_id, position, eta_seconds)

        store.places_in_line, store.place_in_line = spy_places, spy_place  # type: ignore[method-assign]

        await finish(core, api, first.id)
        await sent(core, waiting[0].id)
        await eventually(lambda: placed([None, 1, 2, 3]))

        # The first in line was sent and the three behind it moved up: one write for the three, none one by one.
        assert batches == [[g.id for g in waiting[1:]]]
        assert singles == []
    finally:
        await core.aclose()


async def test_a_note_held_back_by_the_progress_interval_does_not_hold_back_the_polls(tmp_path: Path) -> None:
    # An hour between two notes of one message: the note that a video left the line is owed, not waited for.
    api = slow_offline_api(tmp_path / "slow")
    core = await build_app(
        fast_settings(tmp_path / "data", max_in_flight=1, progress_interval=3600), videos=api
    )
    try:
        recorder = RecordingNotifier()
        core.generations.register_notifier(Platform.CONSOLE, recorder)
        polls = _count_polls(core)
        first = await core.generations.generate(CONSOLE_SCOPE, BOB, "first", GenerationOptions(), TARGET)
        second = await core.generations.generate(CONSOLE_SCOPE, ALICE, "second", GenerationOptions(), TARGET)
        # Its place was told: the next note of its message is an hour away.
        await eventually(lambda: [g for g in recorder.progress_generations if g.id == second.id])
        await finish(core, api, first.id)
        job = (await sent(core, second.id)).api_video_id

        # It left the line, which its message does not show yet; its tracker goes on polling all the same.
        await eventually(lambda: polls.count(job) >= 3)
        done = await finish(core, api, second.id)

        assert done.status is GenerationStatus.COMPLETED
        assert [g.id for g in recorder.deliveries] == [first.id, second.id]
        notes = [g for g in recorder.progress_generations if g.id == second.id]
        assert [g.status for g in notes] == [WAITING], "the owed note was not sent within the interval"
    finally:
        await core.aclose()


async def test_a_poll_that_says_nothing_new_is_not_saved(tmp_path: Path) -> None:
    api = slow_offline_api(tmp_path / "slow")  # queued, 0 %, for an hour
    core = await build_app(fast_settings(tmp_path / "data"), videos=api)
    try:
        core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
        polls = _count_polls(core)
        saves: list[Generation] = []
        save_generation = core.storage.save_generation

        async def counting_save(generation: Generation) -> None:
            saves.append(generation.model_copy())
            await save_generation(generation)

        core.storage.save_generation = counting_save  # type: ignore[method-assign]
        generation = await core.generations.generate(CONSOLE_SCOPE, ALICE, "slow", GenerationOptions(), TARGET)
        assert generation.api_video_id is not None
        await eventually(lambda: polls.count(generation.api_video_id) >= 2)
        saved_so_far = sum(1 for g in saves if g.id == generation.id)

        await eventually(lambda: polls.count(generation.api_video_id) >= 12)

        assert sum(1 for g in saves if g.id == generation.id) == saved_so_far
        await finish(core, api, generation.id)
    finally:
        await core.aclose()


def _count_polls(core: Soracast) -> list[str]:
    """The job ids of every status check the core makes from now on (batched or single), in order."""
    polls: list[str] = []
    backend = core.backend
    poll_many, poll = backend.poll_many, backend.poll

    async def counting_poll_many(job_ids: Sequence[str]) -> dict[str, JobState]:
        polls.extend(job_ids)
        return await poll_many(job_ids)

    async def counting_poll(job_id: str) -> JobState:
        polls.append(job_id)
        return await poll(job_id)

    backend.poll_many, backend.poll = counting_poll_many, counting_poll  # type: ignore[method-assign]
    return polls

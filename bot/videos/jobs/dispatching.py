"""The line of each backend: one dispatcher per backend sends its waiting generations in rounds, in fair order,
while the backend's limiter (and the account's shared create turns) allow; the places left are written in one
go and told to their requesters by a task of their own."""

from __future__ import annotations

import asyncio
import logging

from bot.models import Generation, GenerationStatus, PlaceInLine, WaitingSpot
from bot.videos.jobs.state import DEFAULT_JOB_SECONDS, LINE_MESSAGE, RunnerState
from bot.videos.line import fair_order, places

log = logging.getLogger(__name__)


class LineDispatcher(RunnerState):
    """Runs each backend's line. From the other parts: the submitter sends (`_send`) on a shared create turn
    (`_submit_turn`); a place is told as a progress note (the deliverer's `_note_due`, `_note_progress`); other
    processes hear of a change through the leases part (`_tell_others`)."""

    def wake_line(self, backend: str) -> None:
        """The line of a backend changed (a video joined or left, a slot freed): every process looks again."""
        self._wake_line_here(backend)
        self._tell_others(f"{LINE_MESSAGE}{backend}")

    def _wake_line_here(self, backend: str) -> None:
        self._ensure_dispatcher(backend)
        self._line_wake.setdefault(backend, asyncio.Event()).set()

    def _ensure_dispatcher(self, backend: str) -> None:
        if self._closing or (backend in self._dispatchers and not self._dispatchers[backend].done()):
            return
        self._dispatchers[backend] = asyncio.create_task(self._dispatch(backend), name=f"soracast-line-{backend}")

    async def send_now_if_free(self, generation: Generation) -> str | None:
        """Send a just-stored request at once when nobody is ahead of it and the backend has room.

        Returns the outcome, or None when it stays in line. A refusal is raised (the caller tells the user and
        removes the request), as if the line were not there.
        """
        if generation.platform not in self._notifiers:
            return None  # a process that cannot post it leaves it to the line of one that can
        lock = self._direct.setdefault(generation.backend, asyncio.Lock())
        if lock.locked():
            return None  # another request is being sent directly right now: this one takes its turn in line
        async with lock:
            waiting = fair_order(
                await self._storage.waiting_line(generation.backend),
                await self._storage.in_flight_by_person(generation.backend),
            )
            if not waiting or waiting[0].id != generation.id:
                return None
            limiter = self.limiter(generation.backend)
            in_flight = await self._storage.count_in_flight(generation.backend)
            if limiter.submit_wait(in_flight) != 0.0 or limiter.pause_left() > 0:
                return None
            if await self._submit_turn(generation.backend) > 0:
                return None
            return await self._send(generation.id, raise_refusal=True)

    async def _dispatch(self, backend_name: str) -> None:
        """Run one backend's line in rounds until closing: a round, then a wait until something wakes the line
        (a video joined or left it, a slot freed) or the limiter allows the next create."""
        wake = self._line_wake.setdefault(backend_name, asyncio.Event())
        while not self._closing:
            wake.clear()
            try:
                wait = await self._line_round(backend_name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s line stumbled; it goes on", backend_name)
                wait = 1.0
            await self._wait(wake, wait)

    async def _line_round(self, backend_name: str) -> float:
        """Read the line once, send in fair order every waiting generation the limiter allows now, and record
        the places of those left; returns how long the line may rest unless woken."""
        limiter = self.limiter(backend_name)
        order = fair_order(
            await self._storage.waiting_line(backend_name), await self._storage.in_flight_by_person(backend_name)
        )
        in_flight = await self._storage.count_in_flight(backend_name)
        rest = self._settings.poll_interval * 4
        taken: set[str] = set()
        for spot in order:
            if spot.platform not in self._notifiers:
                continue  # a process that serves its platform sends it
            # Every create of this round counts as in flight, whatever came of it (the next round counts afresh).
            delay = limiter.submit_wait(in_flight + len(taken))
            if delay is None or delay > 0:
                # No slot (a finishing job wakes the line) or the rate says later.
                rest = delay if delay is not None else rest
                break
            turn = await self._submit_turn(backend_name)
            if turn > 0:
                rest = turn  # the account's turns are shared: another process sent one
                break
            taken.add(spot.id)
            await self._send(spot.id, raise_refusal=False)
        await self._show_places(backend_name, [spot for spot in order if spot.id not in taken])
        return rest

    async def _show_places(self, backend_name: str, order: list[WaitingSpot]) -> None:
        """Record the places that changed, all in one write, and tell their requesters (without holding the line
        up while the chat platforms answer)."""
        job_seconds = self._job_seconds.get(backend_name, DEFAULT_JOB_SECONDS)
        found = places(order, slots=self.limiter(backend_name).max_in_flight, job_seconds=job_seconds)
        moved = [
            PlaceInLine(generation_id=spot.id, position=found[spot.id].position, eta_seconds=found[spot.id].eta_seconds)
            for spot in order
            if spot.line_position != found[spot.id].position
        ]
        if not moved:
            return
        # Only where it still waits: a cancel (or a send by another process) made meanwhile is never undone.
        written = await self._storage.places_in_line(moved)
        self._tell_places(backend_name, [s.id for s in order if s.id in written and s.platform in self._notifiers])

    def _tell_places(self, backend_name: str, generation_ids: list[str]) -> None:
        """Queue place notes for one backend's teller task (started when there is none)."""
        if not generation_ids or self._closing:
            return
        queued = self._places_to_tell.setdefault(backend_name, {})
        queued.update(dict.fromkeys(generation_ids))
        teller = self._place_tellers.get(backend_name)
        if teller is None or teller.done():
            task = asyncio.create_task(self._tell_queued_places(queued), name=f"soracast-places-{backend_name}")
            self._place_tellers[backend_name] = task
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _tell_queued_places(self, queued: dict[str, None]) -> None:
        """Tell each queued requester their place, read afresh (the line may have moved on); a note within the
        progress interval of the last one is dropped, as any place note."""
        while queued and not self._closing:
            generation_id = next(iter(queued))
            del queued[generation_id]
            if not self._note_due(generation_id):
                continue
            try:
                generation = await self._storage.get_generation(generation_id)
                if generation is not None and generation.status is GenerationStatus.WAITING:
                    await self._note_progress(generation)
            except Exception as exc:  # a place note is cosmetic; the next one will do
                log.warning("place note for %s failed: %s", generation_id, type(exc).__name__)

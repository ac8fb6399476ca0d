"""The run-time side of generations: the line, leases, tracking and delivery, in each process.

- **The line.** Requests wait in soracast's line (`waiting`) and one dispatcher per backend sends them in fair
  order (`bot.line`) while that backend has capacity (`bot.limiter`), in rounds: one light read of the line,
  every create allowed now, then the places that changed in one write. A 429 on a create puts the job back in
  line and pauses the backend; it never fails the job.
- **Sending exactly once.** A job is claimed (`waiting` → `submitting`, atomically, with a lease) and the claim
  is stored with the time before its create goes out. A create that gets no answer (a 5xx, a timeout, a
  dropped connection) is not repeated blindly: the tracker first asks the backend whether the job exists
  (`find_job`, where the backend can list jobs) and adopts it. A backend that cannot list jobs but announces
  them by a webhook naming the generation (`announces_jobs`: Gemini, fal with `SORACAST_PUBLIC_URL`) is not sent
  again while that webhook can still come (`SORACAST_WEBHOOK_WAIT` after the create, read from what is stored,
  so a restart keeps waiting): the webhook gives the generation its job (`Storage.adopt_job`). Only where
  nothing was made, or nobody can tell, is it sent again.
- **Leases.** Every unfinished or undelivered generation is worked on by the one live process that holds its
  lease; leases are renewed while the process lives and taken over when they expire, or at once when their
  holder is dead: every process beats (`SORACAST_HEARTBEAT_SECONDS`) and one that stopped beating, or ended, is
  dead. A webhook for a dead holder's job is taken over by the process that received it. A process only leases
  generations of the platforms it serves.
- **One create rate per account.** Where processes on several machines share the database, create turns are
  taken from one limiter per backend account kept there (and a 429 holds them for every process), so three
  processes do not send three times what a provider allows.
- **Tracking.** One tracker per leased generation polls (in batches where the backend can list jobs), downloads
  the result and delivers it. It never stops on a retryable error (429, 5xx, timeout): it waits and goes on.
- **Delivery** happens under the lease, and `delivered_at` is set only once the adapter confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from bot import media
from bot.access import characters_in
from bot.backends.base import JobState, JobStatus, VideoBackend, VideoRequest
from bot.budgets import Budgets
from bot.catalog import ModelCatalog
from bot.config import Settings
from bot.errors import (
    APINotFound,
    GenerationNotReady,
    RateLimited,
    SoracastError,
    VideosAPIError,
)
from bot.handles import mentions_of
from bot.likeness import explain_failure
from bot.limiter import BackendLimiter, Priority
from bot.line import fair_order, places
from bot.models import Generation, GenerationKind, GenerationStatus, PlaceInLine, Platform, WaitingSpot, utcnow
from bot.notify import DestinationGone, Messenger, Notifier
from bot.registry import CharacterRegistry
from bot.statusboard import StatusBoard
from storage.base import Storage

log = logging.getLogger(__name__)

T = TypeVar("T")

_STATUS_MAP = {
    JobStatus.QUEUED: GenerationStatus.QUEUED,
    JobStatus.IN_PROGRESS: GenerationStatus.IN_PROGRESS,
    JobStatus.COMPLETED: GenerationStatus.COMPLETED,
    JobStatus.FAILED: GenerationStatus.FAILED,
}

#: How long the tracker waits for an adapter to post a generation's first message before reporting on it.
ANNOUNCE_WAIT = 10.0
#: How long a create's outcome may take to show in the backend's job list before it counts as not made.
FIND_JOB_GRACE = 5.0
#: Before this many seconds of a job's life have passed, a tracker does not wait longer than this between polls
#: of the offline renderer (its jobs take seconds).
OFFLINE_FIRST_WAIT = 1.0
#: Rough job length used for "about N min" until jobs have been timed.
DEFAULT_JOB_SECONDS = 60.0
MAX_BACKOFF = 300.0
#: Wake-ups between processes: "track:<generation id>" for its lease holder, "line:<backend>" for every dispatcher.
TRACK_MESSAGE = "track:"
LINE_MESSAGE = "line:"
#: Creates sent for one generation at most, when a backend keeps failing to answer them.
MAX_SUBMIT_ATTEMPTS = 4
#: Sources read up a chain of remixes and extensions at most (each extension adds seconds, so chains are short).
MAX_SOURCE_CHAIN = 64
#: Beats a webhook received for a job held elsewhere is remembered: by then its holder is known dead, if it is.
TOLD_BEATS = 4


def process_id() -> str:
    """This process's name in leases: host, pid and a random part (a restarted process is a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Outcome:
    """What happened to a create: sent, back in line, unknown, or refused (the error)."""

    SENT = "sent"
    REQUEUED = "requeued"
    UNKNOWN = "unknown"


class JobRunner:
    """Sends, tracks and delivers the generations this process holds."""

    def __init__(
        self,
        storage: Storage,
        catalog: ModelCatalog,
        registry: CharacterRegistry,
        budgets: Budgets,
        settings: Settings,
        *,
        owner: str | None = None,
    ) -> None:
        self._storage = storage
        self._catalog = catalog
        self._registry = registry
        self._budgets = budgets
        self._settings = settings
        self._media_dir = settings.resolved_media_dir
        self.owner = owner or process_id()
        self._notifiers: dict[Platform, Notifier] = {}
        #: Called after a generation was delivered (the owners' notes wake up).
        self.on_delivered: Callable[[], None] = lambda: None
        self._trackers: dict[str, asyncio.Task[None]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._announcing: dict[str, asyncio.Event] = {}
        self._last_progress_note: dict[str, float] = {}
        #: Notes held back by the progress interval that no later poll would repeat; their trackers send them.
        self._owed_notes: set[str] = set()
        #: Sent from the line: their messages still show a place in line until the tracker reports them.
        self._left_line: set[str] = set()
        self._limiters: dict[str, BackendLimiter] = {}
        self._line_wake: dict[str, asyncio.Event] = {}
        #: Place notes waiting for each backend's teller task (in order; a dict as an ordered set).
        self._places_to_tell: dict[str, dict[str, None]] = {}
        self._place_tellers: dict[str, asyncio.Task[None]] = {}
        self._dispatchers: dict[str, asyncio.Task[None]] = {}
        self._lease_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        #: Processes sharing the storage found dead at the last beat: their leases are taken over.
        self._dead: set[str] = set()
        #: Webhooks received here for jobs another process held: (holder then, monotonic time received).
        self._told: dict[str, tuple[str | None, float]] = {}
        self._job_seconds: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._boards: dict[str, StatusBoard] = {}
        #: Generations whose destination is gone: no more progress notes are attempted for them.
        self._gone: set[str] = set()
        self._direct: dict[str, asyncio.Lock] = {}
        #: Lost create answers whose webhook this process waits for (logged once each).
        self._awaiting: set[str] = set()
        #: Generations whose create this process is sending right now, and those a webhook woke meanwhile.
        self._sending: set[str] = set()
        self._woken_while_sending: set[str] = set()
        self._listening = False
        self._closing = False

    # --- wiring -------------------------------------------------------------------------------------------

    def register_notifier(self, platform: Platform, notifier: Notifier) -> None:
        self._notifiers[platform] = notifier

    @property
    def platforms(self) -> list[Platform]:
        return list(self._notifiers)

    def notifier(self, platform: Platform) -> Notifier | None:
        """The notifier this process reports a platform's generations through (None: it does not serve it)."""
        return self._notifiers.get(platform)

    def messenger(self, platform: Platform) -> Messenger | None:
        """The platform's private messages, where this process serves it and its notifier sends them."""
        notifier = self._notifiers.get(platform)
        return notifier if isinstance(notifier, Messenger) else None

    async def start(self, platform: Platform | None = None) -> int:
        """Serve the registered platforms: take over their unfinished generations and run the line.

        Returns how many unfinished generations of those platforms it picked up: taken over, or waiting in line.
        """
        if not self._listening:
            self._listening = True
            try:
                await self._storage.listen(self._on_message)
            except Exception as exc:  # without wake-ups, processes still meet at their next poll
                log.warning("cannot listen for other processes' wake-ups: %s", type(exc).__name__)
        if self._beat_task is None:
            await self._beat()
            self._beat_task = asyncio.create_task(self._keep_beating(), name="soracast-heartbeat")
        taken = await self._lease_more()
        if self._lease_task is None:
            self._lease_task = asyncio.create_task(self._keep_leases(), name="soracast-leases")
        waiting = 0
        for backend in self._catalog.backends():
            self._ensure_dispatcher(backend.name)
            waiting += sum(
                1 for spot in await self._storage.waiting_line(backend.name) if spot.platform in self._notifiers
            )
        if taken or waiting:
            log.info(
                "took over %d generation(s) and %d waiting in line%s",
                taken,
                waiting,
                f" for {platform}" if platform else "",
            )
        return taken + waiting

    async def aclose(self) -> None:
        """Stop every task; stored generations are taken over on the next start (or by another process)."""
        self._closing = True
        held = list(self._trackers)
        tasks = [*self._trackers.values(), *self._dispatchers.values(), *self._background]
        tasks += [t for t in (self._lease_task, self._beat_task) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for board in self._boards.values():
            await board.aclose()
        # A clean stop hands its generations over at once instead of after their leases expire.
        for generation_id in held:
            with contextlib.suppress(Exception):
                await self._storage.release_lease(self.owner, generation_id)
        if self._beat_task is not None:
            with contextlib.suppress(Exception):
                await self._storage.end_process(self.owner, utcnow())
        self._trackers.clear()

    def limiter(self, backend: str) -> BackendLimiter:
        limiter = self._limiters.get(backend)
        if limiter is None:
            s = self._settings
            limiter = BackendLimiter(
                max_in_flight=s.max_in_flight,
                submits_per_minute=s.submits_per_minute,
                requests_per_second=s.requests_per_second,
            )
            self._limiters[backend] = limiter
        return limiter

    # --- the line -----------------------------------------------------------------------------------------

    def announce(self, generation_id: str) -> None:
        """The adapter will post a first message for this generation: hold reports until it is recorded."""
        self._announcing[generation_id] = asyncio.Event()

    def announced(self, generation_id: str) -> None:
        event = self._announcing.pop(generation_id, None)
        if event is not None:
            event.set()

    def wake_line(self, backend: str) -> None:
        """The line of a backend changed (a video joined or left, a slot freed): every process looks again."""
        self._wake_line_here(backend)
        self._tell_others(f"{LINE_MESSAGE}{backend}")

    def _wake_line_here(self, backend: str) -> None:
        self._ensure_dispatcher(backend)
        self._line_wake.setdefault(backend, asyncio.Event()).set()

    def tell_holder(self, generation_id: str) -> None:
        """Ask whichever process holds this generation to look at it now (a webhook said it changed)."""
        self._tell_others(f"{TRACK_MESSAGE}{generation_id}")

    def _tell_others(self, message: str) -> None:
        if self._closing:
            return
        task = asyncio.create_task(self._notify(message), name="soracast-notify")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self, message: str) -> None:
        try:
            await self._storage.notify(message)
        except Exception as exc:  # a lost wake-up only costs a poll interval
            log.warning("could not tell other processes (%s): %s", message[:40], type(exc).__name__)

    def _on_message(self, message: str) -> None:
        """A wake-up from any process sharing the storage."""
        if message.startswith(TRACK_MESSAGE):
            self.wake(message.removeprefix(TRACK_MESSAGE))
        elif message.startswith(LINE_MESSAGE):
            backend = message.removeprefix(LINE_MESSAGE)
            if self._catalog.backend(backend) is not None and not self._closing:
                self._wake_line_here(backend)

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

    async def _send(self, generation_id: str, *, raise_refusal: bool) -> str | None:
        """Claim a waiting generation and send its create; see the module docstring for what each outcome means."""
        until = utcnow() + timedelta(seconds=self._settings.lease_seconds)
        generation = await self._storage.claim_for_submit(generation_id, self.owner, until)
        if generation is None:
            return None  # cancelled, or another process took it
        if not raise_refusal:
            self._left_line.add(generation.id)  # from the line, where its message shows a place
        self._sending.add(generation.id)
        try:
            return await self._send_claimed(generation, raise_refusal)
        finally:
            self._sending.discard(generation.id)
            self._woken_while_sending.discard(generation.id)

    async def _send_claimed(self, generation: Generation, raise_refusal: bool) -> str | None:
        backend = self._catalog.backend(generation.backend)
        limiter = self.limiter(generation.backend)
        limiter.take_submit()
        generation.submitted_at = utcnow()
        generation.submit_attempts += 1
        await self._storage.save_generation(generation)  # from here a crash means "outcome unknown"
        try:
            if backend is None:
                raise GenerationNotReady(
                    f"This video was meant for {generation.backend}, which this bot no longer uses.",
                    hint="Make it again with /sora.",
                )
            request = await self.build_request(generation, backend)
            await self._registry.host_references(request, backend)
            await limiter.gate(Priority.SUBMIT)
            job = await backend.submit(request, generation.api_prompt)
        except RateLimited as exc:
            pause = limiter.rate_limited(exc.retry_after, create=True)
            log.info("%s rate limited %s's create: back in line, %.1fs pause", generation.backend, generation.id, pause)
            if backend is not None:
                await self._hold_submits(backend, pause)
            await self._requeue(generation)
            return Outcome.REQUEUED
        except VideosAPIError as exc:
            if exc.retryable and not exc.maybe_sent:
                pause = limiter.unreachable()
                log.info("%s could not be reached for %s's create: back in line, %.1fs pause", generation.backend,
                         generation.id, pause)
                await self._requeue(generation)
                return Outcome.REQUEUED
            if exc.retryable:
                # The create may have made a job: the tracker finds out before anything is sent again.
                log.warning("create of %s got no answer (%s); checking whether it was made", generation.id, exc.code)
                woken = generation.id in self._woken_while_sending
                self._sending.discard(generation.id)
                self.track(generation.id, first_wait=0.0 if woken else self._find_job_grace)
                return Outcome.UNKNOWN
            await self._refused(generation, exc, raise_refusal)
            return None
        except SoracastError as exc:
            await self._refused(generation, exc, raise_refusal)
            return None
        limiter.succeeded()
        limiter.request_succeeded()
        self.apply(generation, job)
        await self._storage.save_generation(generation)
        await self._budgets.spent(generation.id)
        log.info("generation %s sent as %s", generation.id, generation.api_video_id)
        first_wait = self._settings.poll_interval
        if generation.backend == "offline":
            first_wait = min(first_wait, OFFLINE_FIRST_WAIT)
        if generation.id in self._woken_while_sending:
            first_wait = 0.0  # its webhook came before the create's answer was in
        self._sending.discard(generation.id)
        self.track(generation.id, first_wait=first_wait)
        return Outcome.SENT

    async def _requeue(self, generation: Generation) -> None:
        generation.status = GenerationStatus.WAITING
        generation.submitted_at = None
        await self._storage.save_generation(generation)
        await self._storage.release_lease(self.owner, generation.id)
        self.wake_line(generation.backend)

    async def _refused(self, generation: Generation, error: SoracastError, raise_refusal: bool) -> None:
        """The backend refused the create: synchronously the user is told and nothing is left behind; from the
        line, the generation fails with the reason (in its message) and its cost is given back."""
        if raise_refusal:
            await self._budgets.release(generation.id)
            await self._storage.delete_generation(generation.id)
            raise error
        self.fail(generation, error.code, error.user_text())
        await self._storage.save_generation(generation)
        await self._budgets.release(generation.id)
        self._sending.discard(generation.id)
        self.track(generation.id)

    async def build_request(self, generation: Generation, backend: VideoBackend) -> VideoRequest:
        """What the backend is sent: characters with their references, the source for remixes and extensions."""
        caps = self._catalog.capabilities_of(generation.backend, generation.model)
        if caps is None:
            raise GenerationNotReady(
                f"{generation.model} is no longer offered on {generation.backend}.", hint="Make it again with /sora."
            )
        characters = await self._registry.inputs_for(generation.characters, backend, caps)
        source_job, source_video, source_seconds = None, None, None
        if generation.kind is not GenerationKind.CREATE:
            parent = await self._storage.get_generation(generation.parent_id or "")
            if parent is None or parent.api_video_id is None:
                raise GenerationNotReady("The video this builds on is gone.", hint="Start from a new /sora video.")
            source_seconds = await self.total_seconds(parent)
            if parent.backend == generation.backend:
                # The backend made it and knows it by its id: the video itself need not travel.
                source_job = parent.api_video_id
                source_video = parent.video_path if await _on_disk(parent.video_path) else None
            else:
                source_video = await self._source_video(parent, backend)
        used = set(generation.handles)
        return VideoRequest(
            kind=generation.kind,
            prompt=generation.prompt,
            mentions=[m for m in mentions_of(generation.prompt) if m.handle in used],
            characters=characters,
            model=generation.model,
            seconds=int(generation.seconds),
            size=generation.size,
            source_job_id=source_job,
            source_video=source_video,
            source_seconds=source_seconds,
            request_key=generation.id,
        )

    async def total_seconds(self, generation: Generation) -> int:
        """How long a finished video is: a new one its own seconds, an edit its source's length, an extension its
        source's length and what it added (read up the chain of sources)."""
        added = 0
        current: Generation | None = generation
        for _ in range(MAX_SOURCE_CHAIN):
            assert current is not None
            if current.kind is GenerationKind.CREATE:
                return added + int(current.seconds)
            if current.kind is GenerationKind.EXTEND:
                added += int(current.seconds)
            parent = await self._storage.get_generation(current.parent_id or "")
            if parent is None:
                # The chain is broken (an old record): an edit recorded its source's length, an extension less.
                return added + (int(current.seconds) if current.kind is GenerationKind.REMIX else 0)
            current = parent
        return added

    async def _source_video(self, parent: Generation, backend: VideoBackend) -> Path | None:
        """The finished video a remix or extension builds on, on this machine (fetched again if it is not)."""
        path = parent.video_path
        if path is not None and await asyncio.to_thread(path.exists):
            return path
        with contextlib.suppress(VideosAPIError):
            assert parent.api_video_id is not None
            return await backend.download(parent.api_video_id, self.media_path(parent, ".mp4"))
        return None

    # --- leases -------------------------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Renew what this process holds and take over what a dead process left, every third of a lease."""
        period = self._settings.lease_seconds / 3
        while not self._closing:
            await asyncio.sleep(period)
            try:
                held = list(self._trackers)
                until = utcnow() + timedelta(seconds=self._settings.lease_seconds)
                kept = await self._storage.renew_leases(self.owner, held, until)
                for generation_id in set(held) - kept:
                    # Another process took it over (this one was too slow to renew): let it go.
                    log.warning("lost the lease of %s; another process carries on", generation_id)
                    task = self._trackers.pop(generation_id, None)
                    if task is not None:
                        task.cancel()
                await self._lease_more()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing leases failed; trying again")

    async def _lease_more(self, *, look_now: bool = False) -> int:
        """Lease what is free (or a dead process's) and track it; `look_now` polls each at once, not in the next
        sweep (a dead holder may have taken a webhook for it with it)."""
        if not self._notifiers or self._closing:
            return 0
        now = utcnow()
        until = now + timedelta(seconds=self._settings.lease_seconds)
        taken = await self._storage.lease_generations(
            self.owner, self.platforms, now, until, dead=sorted(self._dead)
        )
        started = 0
        for generation in taken:
            if generation.id not in self._trackers:
                self.track(generation.id)
                if look_now:
                    self.wake(generation.id)
                started += 1
        return started

    async def _beat(self) -> None:
        await self._storage.beat(self.owner, utcnow(), self._settings.heartbeat_seconds)

    async def _keep_beating(self) -> None:
        """Tell the others this process lives; take over at once what processes found dead held, and pass on
        webhooks that came while their holder's death was not known yet."""
        while not self._closing:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            try:
                await self._beat()
                dead = await self._storage.dead_processes(utcnow())
                newly_dead, self._dead = dead - self._dead, dead
                if newly_dead:
                    if await self._lease_more(look_now=True):
                        log.info("took over the jobs of %d process(es) found dead", len(newly_dead))
                await self._pass_on_told()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the leases still expire; the next beat tries again
                log.warning("heartbeat failed: %s", type(exc).__name__)

    async def take_over_if_dead(self, generation: Generation) -> bool:
        """A webhook came here for a job this process does not track: take it over and look at it now when its
        holder is dead (or nobody holds it), instead of waiting for a lease to run out. False when it stays
        with a live holder (woken through storage) or this process does not serve its platform."""
        if self._closing or generation.platform not in self._notifiers:
            return False
        if generation.status in (GenerationStatus.WAITING, GenerationStatus.DELETED) or generation.delivered_at:
            return False
        holder = await self._storage.lease_holder(generation.id)
        now = utcnow()
        if holder is not None and holder.owner != self.owner and holder.until >= now:
            if holder.owner not in self._dead and holder.owner not in await self._storage.dead_processes(now):
                self._remember_told(generation.id, holder.owner)
                return False
        if holder is None or holder.owner != self.owner:
            until = now + timedelta(seconds=self._settings.lease_seconds)
            taken = await self._storage.take_over(
                generation.id, self.owner, holder.owner if holder else None, now, until
            )
            if taken is None:
                return False
            if holder is not None:
                log.info("took over %s from %s (dead) for its webhook", generation.id, holder.owner)
        self.track(generation.id)
        self.wake(generation.id)
        return True

    def _remember_told(self, generation_id: str, holder: str) -> None:
        self._told[generation_id] = (holder, time.monotonic())

    async def _pass_on_told(self) -> None:
        """Webhooks received for jobs held elsewhere: once the holder is found dead, the job is taken over here;
        if another process took it meanwhile, that one is told again."""
        horizon = time.monotonic() - TOLD_BEATS * self._settings.heartbeat_seconds
        for generation_id, (holder_then, at) in list(self._told.items()):
            holder = await self._storage.lease_holder(generation_id)
            if holder is None or at < horizon:
                del self._told[generation_id]  # delivered (or back in line), or long since handled
            elif holder.owner == self.owner:
                del self._told[generation_id]
                self.track(generation_id)
                self.wake(generation_id)
            elif holder.owner in self._dead:
                stored = await self._storage.get_generation(generation_id)
                if stored is not None and await self.take_over_if_dead(stored):
                    del self._told[generation_id]
            elif holder.owner != holder_then:
                del self._told[generation_id]
                self.tell_holder(generation_id)

    # --- one create rate per account -----------------------------------------------------------------------

    async def _submit_turn(self, backend_name: str) -> float:
        """0 when this process may send a create to the backend now; else seconds to wait. Where the storage is
        shared between machines, turns come from the account's one limiter there, at this process's rate."""
        backend = self._catalog.backend(backend_name)
        if backend is None or not self._storage.shared_between_machines:
            return 0.0
        every = 60.0 / self.limiter(backend_name).submit_rate
        try:
            return await self._storage.take_submit_turn(backend.account_key, utcnow(), every)
        except Exception as exc:  # this process's own limiter still holds it to the rate
            log.warning("no shared create turn for %s: %s", backend_name, type(exc).__name__)
            return 0.0

    async def _hold_submits(self, backend: VideoBackend, pause: float) -> None:
        """A 429: every process holds its creates to this account for as long as the provider asked."""
        if not self._storage.shared_between_machines:
            return
        try:
            await self._storage.hold_submits(backend.account_key, utcnow() + timedelta(seconds=pause))
        except Exception as exc:
            log.warning("could not hold other processes' creates to %s: %s", backend.name, type(exc).__name__)

    # --- tracking -----------------------------------------------------------------------------------------

    def track(self, generation_id: str, first_wait: float = 0.0) -> None:
        if self._closing or generation_id in self._trackers or generation_id in self._sending:
            return
        self._wakeups[generation_id] = asyncio.Event()
        task = asyncio.create_task(self._track(generation_id, first_wait), name=f"track-{generation_id}")
        self._trackers[generation_id] = task
        task.add_done_callback(lambda _t: self._forget(generation_id))

    def stop_tracking(self, generation_id: str) -> None:
        task = self._trackers.pop(generation_id, None)
        if task is not None:
            task.cancel()

    def wake(self, generation_id: str) -> bool:
        """Poll a tracked generation now (a webhook said it changed); False if this process does not track it."""
        if generation_id in self._sending:
            # Its create's answer is on its way: tracking starts once it is in, and polls at once.
            self._woken_while_sending.add(generation_id)
            return True
        event = self._wakeups.get(generation_id)
        if event is None:
            return False
        event.set()
        return True

    def is_tracking(self, generation_id: str) -> bool:
        return generation_id in self._trackers

    def _forget(self, generation_id: str) -> None:
        self._trackers.pop(generation_id, None)
        self._told.pop(generation_id, None)
        self._wakeups.pop(generation_id, None)
        self._last_progress_note.pop(generation_id, None)
        self._owed_notes.discard(generation_id)
        self._left_line.discard(generation_id)
        self._announcing.pop(generation_id, None)
        self._gone.discard(generation_id)
        self._awaiting.discard(generation_id)

    async def _track(self, generation_id: str, first_wait: float) -> None:
        try:
            woken = await self._sleep(generation_id, first_wait) if first_wait else False
            await self._track_until_delivered(generation_id, woken=woken)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("tracking %s stopped on an unexpected error; another pass takes it up", generation_id)
            # Let the lease lapse here so the next lease round (this process or another) starts it afresh.
            with contextlib.suppress(Exception):
                await self._storage.release_lease(self.owner, generation_id)

    async def _track_until_delivered(self, generation_id: str, *, woken: bool = False) -> None:
        failures = 0
        #: When the next status must be seen by (monotonic): one spacing after the last one was seen, however
        #: long its answer took, so waiting for a batched sweep never stretches the spacing of a job's polls.
        due: float | None = None
        # Read once: while it runs, this tracker is the only writer of the generation's status (a delete or a
        # cancel stops it first; the target has its own column, re-read before each notification).
        generation = await self._storage.get_generation(generation_id)
        while True:
            if generation is None or generation.status in (GenerationStatus.DELETED, GenerationStatus.WAITING):
                return
            if generation.delivered_at is not None:
                self._signal_finished(generation_id)
                return
            backend = self._catalog.backend(generation.backend)
            if generation.status is GenerationStatus.COMPLETED and backend is not None and not await _on_disk(
                generation.video_path
            ):
                # Finished by a process on another machine (or before a move): fetch it to this one's disk.
                await self._fetch_result(generation, backend)
                if generation.status is not GenerationStatus.COMPLETED:
                    continue
            if generation.status.finished:
                await self._deliver(generation)
                return
            if backend is None:
                self.fail(generation, "backend_gone", f"This video was sent to {generation.backend}, which this bot "
                          "no longer uses.")
                await self._storage.save_generation(generation)
                continue
            try:
                if generation.api_video_id is None:
                    await self._settle_create(generation, backend)
                    failures = 0
                    continue
                polled, seen = await self._status(
                    backend, generation.api_video_id, urgent=woken, by=due, generation_id=generation_id
                )
            except APINotFound:
                self.fail(generation, "not_found", f"{_capital(backend.service)} no longer knows this video.")
                await self._storage.save_generation(generation)
                await self._budgets.refund(generation.id)
                continue
            except SoracastError as exc:
                if not exc.retryable:
                    self.fail(generation, exc.code, exc.user_text())
                    await self._storage.save_generation(generation)
                    continue
                failures += 1
                await self._sleep(generation_id, exc_wait(exc) or self.backoff(failures))
                continue
            failures = 0
            before = (generation.status, generation.progress, generation.queue_position)
            self.apply(generation, polled)
            if generation.status is GenerationStatus.COMPLETED:
                await self._fetch_result(generation, backend)
                continue
            if generation.status is GenerationStatus.FAILED:
                await self._storage.save_generation(generation)
                await self._budgets.refund(generation.id)
                continue
            changed = (generation.status, generation.progress, generation.queue_position) != before
            if changed:
                await self._storage.save_generation(generation)  # a poll that says nothing new is not written
            # A backend may report nothing new for minutes after a create (Gemini); a video that came from the line
            # is reported once anyway, or its message would keep its place and Cancel button.
            owed = generation_id in self._left_line or generation_id in self._owed_notes
            if changed or owed:
                self._left_line.discard(generation_id)
                await self._note_progress(generation, surely=owed)
            due = seen + (polled.poll_after or self._settings.poll_interval)
            rest = max(0.0, due - self._ask_ahead(backend) - time.monotonic())
            if not backend.can_list_jobs:
                woken = await self._sleep(generation_id, rest)
                continue
            # Resting, it is watched: a sweep made for other jobs that sees it finished wakes it with the news.
            board, job_id = self._board(backend), generation.api_video_id
            board.watch(job_id, lambda: self.wake(generation_id))
            try:
                woken = await self._sleep(generation_id, rest)
            finally:
                board.unwatch(job_id)

    async def _settle_create(self, generation: Generation, backend: VideoBackend) -> None:
        """A generation whose create may or may not have made a job: find it, or send the create (again)."""
        if generation.status is GenerationStatus.ACCEPTED and generation.submitted_at is None:
            generation.submitted_at = generation.created_at  # stored by an older version: assume it went out
        if generation.submitted_at is not None and backend.announces_jobs and not backend.can_list_jobs:
            if await self._await_announcement(generation, backend):
                return
        found: JobState | None = None
        request = await self.build_request(generation, backend)
        if generation.submitted_at is not None and backend.can_list_jobs:
            since = generation.submitted_at - timedelta(seconds=FIND_JOB_GRACE + self._settings.api_timeout)
            found = await self._call(
                backend, Priority.SUBMIT, lambda: backend.find_job(request, generation.api_prompt, since)
            )
            if found is not None and await self._storage.find_generation_by_video(found.id) is not None:
                found = None  # that job belongs to another generation with the same words
        if found is not None:
            log.info("the create of %s had made %s: adopted, not sent again", generation.id, found.id)
        else:
            if generation.submit_attempts >= MAX_SUBMIT_ATTEMPTS:
                self.fail(
                    generation,
                    "not_sent",
                    f"{_capital(backend.service)} did not answer {generation.submit_attempts} requests to make this "
                    "video.",
                )
                await self._storage.save_generation(generation)
                await self._budgets.refund(generation.id)
                return
            if generation.submitted_at is not None and backend.announces_jobs and not backend.can_list_jobs:
                log.warning(
                    "no webhook from %s for the unanswered create of %s within %.0f s; sending it again",
                    backend.service,
                    generation.id,
                    self._settings.webhook_wait,
                )
            elif generation.submitted_at is not None and not backend.can_list_jobs:
                log.warning(
                    "%s cannot say whether the unanswered create of %s made a job; sending it again",
                    backend.service,
                    generation.id,
                )
            while (turn := await self._submit_turn(backend.name)) > 0:
                await self._sleep(generation.id, turn)  # a create sent again takes a turn like any other
            # Conditional: a webhook may have given it its job a moment ago, and that must not be overwritten.
            if not await self._stamp_resend(generation, utcnow()):
                return
            try:
                prompt = generation.api_prompt
                found = await self._call(backend, Priority.SUBMIT, lambda: backend.submit(request, prompt))
            except VideosAPIError as exc:
                if exc.retryable and not exc.maybe_sent:
                    await self._stamp_resend(generation, None)
                raise
        self.apply(generation, found)
        await self._storage.save_generation(generation)
        # Sent (or adopted): it counts as spent, unless the backend has failed it already (not billed).
        if generation.status is GenerationStatus.FAILED:
            await self._budgets.refund(generation.id)
        else:
            await self._budgets.spent(generation.id)

    async def _stamp_resend(self, generation: Generation, at: datetime | None) -> bool:
        """Record that the create goes out again now (or, with None, that it never left); False — after taking
        up what is stored — when the generation has a job by now or left `submitting`."""
        stamped = await self._storage.stamp_resend(generation.id, at)
        if stamped is None:
            await self._refresh(generation)
            return False
        generation.submitted_at, generation.submit_attempts = stamped.submitted_at, stamped.submit_attempts
        return True

    async def _await_announcement(self, generation: Generation, backend: VideoBackend) -> bool:
        """For a backend that announces its jobs by webhook: while that webhook can still come (within
        `SORACAST_WEBHOOK_WAIT` of the create, derived from what is stored, so a restart keeps waiting), wait for
        it instead of sending again. True while waiting (or once adopted); False when the wait is over."""
        assert generation.submitted_at is not None
        deadline = generation.submitted_at + timedelta(seconds=self._settings.webhook_wait)
        remaining = (deadline - utcnow()).total_seconds()
        if remaining <= 0:
            return False
        if generation.id not in self._awaiting:
            self._awaiting.add(generation.id)
            log.info(
                "the create of %s got no answer; waiting up to %.0f s for %s's webhook instead of sending it again",
                generation.id,
                remaining,
                backend.service,
            )
        # A webhook received here (or by another process) wakes this; the stored row is read again anyway, since
        # processes on SQLite cannot wake each other.
        await self._sleep(generation.id, min(remaining, self._settings.poll_interval))
        await self._refresh(generation)
        if generation.api_video_id is not None:
            log.info("the create of %s had made %s (its webhook said so): adopted, not sent again",
                     generation.id, generation.api_video_id)
            await self._budgets.spent(generation.id)
        return True

    async def _refresh(self, generation: Generation) -> None:
        """Take up what is stored for a generation this tracker holds (another writer changed it)."""
        stored = await self._storage.get_generation(generation.id)
        if stored is None:
            generation.status = GenerationStatus.DELETED
            return
        for name in Generation.model_fields:
            setattr(generation, name, getattr(stored, name))

    async def _status(
        self,
        backend: VideoBackend,
        job_id: str,
        *,
        urgent: bool = False,
        by: float | None = None,
        generation_id: str | None = None,
    ) -> tuple[JobState, float]:
        """A job's status and when (`time.monotonic()`) it was seen: from the backend's batched sweep (starting by
        `by`) where it can list jobs, else (or when a webhook just said it changed, before or while waiting for
        the sweep) one poll."""
        if backend.can_list_jobs:
            news = self._board(backend).news(job_id)
            if news is not None:
                return news  # a sweep for other jobs saw it finished while its tracker rested
        event = self._wakeups.get(generation_id) if generation_id is not None else None
        if event is not None and event.is_set():
            event.clear()
            urgent = True
        if urgent or not backend.can_list_jobs:
            return await self._poll_once(backend, job_id)
        board = self._board(backend)
        if event is None:
            return await board.status(job_id, by=by)
        # The next sweep may be seconds away: a webhook meanwhile cuts the wait short with one poll.
        swept = asyncio.ensure_future(board.status(job_id, by=by))
        woken = asyncio.ensure_future(event.wait())
        try:
            done, _ = await asyncio.wait({swept, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not swept.done():
                swept.cancel()
        if swept in done:
            return swept.result()  # a wake that came with it leaves the event set: the next wait is cut short
        event.clear()
        return await self._poll_once(backend, job_id)

    async def _poll_once(self, backend: VideoBackend, job_id: str) -> tuple[JobState, float]:
        seen = time.monotonic()
        return await self._call(backend, Priority.POLL, lambda: backend.poll(job_id)), seen

    def _board(self, backend: VideoBackend) -> StatusBoard:
        board = self._boards.get(backend.name)
        if board is None:
            board = StatusBoard(
                backend,
                lambda call, b=backend: self._call(b, Priority.POLL, call),
                min_interval=self._settings.poll_interval / 2,
            )
            self._boards[backend.name] = board
        return board

    def _ask_ahead(self, backend: VideoBackend) -> float:
        """How long before a poll is due its tracker asks: a batched ask may wait up to the board's spacing for
        its sweep, so it goes out that much early to be seen in time; a single poll goes out when due."""
        return self._board(backend).min_interval if backend.can_list_jobs else 0.0

    async def call(self, backend: VideoBackend, call: Callable[[], Awaitable[T]]) -> T:
        """One request to a backend (a status check) through its limiter, for callers outside a tracker."""
        return await self._call(backend, Priority.POLL, call)

    async def _call(self, backend: VideoBackend, priority: Priority, call: Callable[[], Awaitable[T]]) -> T:
        """One request to a backend through its limiter: a 429 pauses the backend for what it asked."""
        limiter = self.limiter(backend.name)
        await limiter.gate(priority)
        try:
            result = await call()
        except RateLimited as exc:
            limiter.rate_limited(exc.retry_after)
            raise
        limiter.request_succeeded()
        return result

    async def _fetch_result(self, generation: Generation, backend: VideoBackend) -> None:
        """Download the finished video (retrying whatever is retryable), cut a thumbnail, and store both."""
        failures = 0
        assert generation.api_video_id is not None
        job_id, dest = generation.api_video_id, self.media_path(generation, ".mp4")
        while True:
            try:
                generation.video_path = await self._call(backend, Priority.POLL, lambda: backend.download(job_id, dest))
                break
            except APINotFound:
                self.fail(generation, "expired", "The finished video expired before it could be downloaded.")
                await self._storage.save_generation(generation)
                return
            except SoracastError as exc:
                if not exc.retryable:
                    self.fail(generation, exc.code, exc.user_text())
                    await self._storage.save_generation(generation)
                    return
                failures += 1
                log.info("downloading %s failed (%s); trying again", generation.id, exc.code)
                await self._sleep(generation.id, exc_wait(exc) or self.backoff(failures))
        generation.thumbnail_path = await self._thumbnail(generation, backend, generation.video_path)
        generation.progress = 100
        generation.completed_at = generation.completed_at or utcnow()
        generation.updated_at = utcnow()
        if generation.started_at is not None and generation.submitted_at is not None:
            took = (generation.completed_at - generation.submitted_at).total_seconds()
            previous = self._job_seconds.get(generation.backend, took)
            self._job_seconds[generation.backend] = 0.8 * previous + 0.2 * took
        await self._storage.save_generation(generation)
        self.wake_line(generation.backend)

    @property
    def _find_job_grace(self) -> float:
        # A job made by a create that got no answer may take a moment to show in the list: wait a poll interval.
        return min(FIND_JOB_GRACE, self._settings.poll_interval)

    def media_path(self, generation: Generation, suffix: str) -> Path:
        dest = self._media_dir / generation.scope.platform.value / f"{generation.id}{suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    async def _thumbnail(self, generation: Generation, backend: VideoBackend, video: Path) -> Path | None:
        """The backend's thumbnail, or one cut from the video; a missing thumbnail never holds the video back."""
        dest = self.media_path(generation, ".jpg")
        try:
            if generation.api_video_id is not None:
                job_id = generation.api_video_id
                made = await self._call(backend, Priority.POLL, lambda: backend.download_thumbnail(job_id, dest))
                if made is not None:
                    return made
            return await media.thumbnail(video, dest)
        except (SoracastError, OSError) as exc:
            log.warning("no thumbnail for %s: %s", generation.id, getattr(exc, "code", type(exc).__name__))
            return None

    # --- delivery -----------------------------------------------------------------------------------------

    async def fresh_target(self, generation: Generation) -> None:
        """Notify with the latest target: the adapter records its message concurrently with the tracker, and a
        first message still being posted gets a moment to land."""
        announced = self._announcing.get(generation.id)
        if announced is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(announced.wait(), ANNOUNCE_WAIT)
            self._announcing.pop(generation.id, None)
        stored = await self._storage.get_generation(generation.id)
        if stored is not None:
            generation.target = stored.target

    async def _deliver(self, generation: Generation) -> None:
        notifier = self._notifiers.get(generation.platform)
        if notifier is None:
            log.info("no %s notifier here; %s waits for its adapter", generation.platform, generation.id)
            return
        await self.fresh_target(generation)
        attempt = 0
        while not self._closing:
            attempt += 1
            if not await self._storage.claim_delivery(generation.id, utcnow(), self.owner):
                return  # delivered already, or the lease moved to another process
            try:
                if generation.status is GenerationStatus.COMPLETED:
                    receipt = await notifier.completed(generation)
                    message_id = receipt.message_id
                else:
                    await self._explain_likeness(generation)
                    await notifier.failed(generation)
                    message_id = None
            except DestinationGone as gone:
                # Ended, not delivered: marked so no process ever tries it again.
                log.info("generation %s of %s ends without being posted: %s", generation.id, generation.scope.key, gone)
                message_id = None
            except Exception as exc:
                log.warning("delivering %s failed (attempt %d): %s", generation.id, attempt, type(exc).__name__)
                await self._sleep(generation.id, self.backoff(attempt))
                await self.fresh_target(generation)
                continue
            await self._storage.mark_delivered(generation.id, utcnow(), message_id)
            await self._storage.release_lease(self.owner, generation.id)
            self._signal_finished(generation.id)
            self.wake_line(generation.backend)
            self.on_delivered()
            return

    async def _explain_likeness(self, generation: Generation) -> None:
        """A video refused for showing a real person says whose rights confirmation it was made under."""
        if generation.error_code != "human_likeness":
            return
        characters = await characters_in(self._storage, generation.scope, generation.character_ids)
        explained = explain_failure(generation.error_message or "", characters)
        if explained != generation.error_message:
            generation.error_message = explained
            await self._storage.save_generation(generation)

    def _note_due(self, generation_id: str) -> bool:
        """Whether a progress note for this generation may go now (one per progress interval)."""
        last = self._last_progress_note.get(generation_id)
        return last is None or time.monotonic() - last >= self._settings.progress_interval

    async def _note_progress(self, generation: Generation, *, surely: bool = False) -> None:
        """Tell the adapter, at most once per progress interval. Within the interval the note is dropped, or,
        with `surely` (a change no later poll would report again), owed: its tracker sends it once the interval
        is over, without holding back a poll meanwhile."""
        notifier = self._notifiers.get(generation.platform)
        if notifier is None:
            return
        if not self._note_due(generation.id):
            if surely:
                self._owed_notes.add(generation.id)
            return
        self._owed_notes.discard(generation.id)
        self._last_progress_note[generation.id] = time.monotonic()
        if generation.id in self._gone:
            return
        await self.fresh_target(generation)
        try:
            await notifier.progress(generation)
        except DestinationGone:
            self._gone.add(generation.id)  # its delivery ends it, with one log line
        except Exception as exc:
            # Progress is cosmetic; a failed edit must never stop the job.
            log.warning("progress note for %s failed: %s", generation.id, type(exc).__name__)

    async def wait_finished(self, generation_id: str, within: float | None) -> None:
        event = self._finished.setdefault(generation_id, asyncio.Event())
        await asyncio.wait_for(event.wait(), within)

    def _signal_finished(self, generation_id: str) -> None:
        self._finished.setdefault(generation_id, asyncio.Event()).set()

    # --- helpers ------------------------------------------------------------------------------------------

    @staticmethod
    def apply(generation: Generation, job: JobState) -> None:
        """Record what the backend said about a job."""
        generation.api_video_id = job.id
        status = _STATUS_MAP.get(job.status, GenerationStatus.QUEUED)
        if status is GenerationStatus.IN_PROGRESS and generation.started_at is None:
            generation.started_at = utcnow()
        generation.status = status
        if job.progress is not None:
            generation.progress = max(0, min(100, job.progress))
        generation.queue_position = job.queue_position if status is GenerationStatus.QUEUED else None
        generation.updated_at = utcnow()
        if job.status is JobStatus.FAILED:
            generation.error_code = job.error_code or "failed"
            generation.error_message = job.error_message or "The video service could not make this video."
        if job.status is JobStatus.COMPLETED:
            generation.completed_at = utcnow()

    @staticmethod
    def fail(generation: Generation, code: str, message: str) -> None:
        generation.status = GenerationStatus.FAILED
        generation.error_code = code
        generation.error_message = message
        generation.updated_at = utcnow()

    def backoff(self, attempt: int) -> float:
        base = min(self._settings.poll_interval * (2 ** min(attempt - 1, 16)), MAX_BACKOFF)
        return base * (0.5 + random.random() / 2)

    def _ensure_dispatcher(self, backend: str) -> None:
        if self._closing or (backend in self._dispatchers and not self._dispatchers[backend].done()):
            return
        self._dispatchers[backend] = asyncio.create_task(self._dispatch(backend), name=f"soracast-line-{backend}")

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, seconds))

    async def _sleep(self, generation_id: str, seconds: float) -> bool:
        """Wait `seconds`, or less if something wakes this generation's tracker; True when it was woken."""
        event = self._wakeups.get(generation_id)
        if event is None:
            await asyncio.sleep(seconds)
            return False
        woken = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
            woken = True
        event.clear()
        return woken


async def _on_disk(path: Path | None) -> bool:
    return path is not None and await asyncio.to_thread(path.exists)


def exc_wait(error: SoracastError) -> float | None:
    """The wait an error asked for (`Retry-After`), if any."""
    return getattr(error, "retry_after", None)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

"""What every part of the job runner shares: its settings and wiring, the state the parts keep between them,
the limits and intervals they work to, and the few calls they all make (a backend request through its limiter,
recording a job's state, waiting until woken)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from bot.backends.base import JobState, JobStatus, VideoBackend
from bot.backends.catalog import ModelCatalog
from bot.characters.registry import CharacterRegistry
from bot.chat.notify import Notifier
from bot.config import Settings
from bot.errors import RateLimited, SoracastError
from bot.models import Generation, GenerationStatus, Platform, utcnow
from bot.videos.budgets import Budgets
from bot.videos.limiter import BackendLimiter, Priority
from bot.videos.statusboard import StatusBoard
from storage.base import Storage

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


async def on_disk(path: Path | None) -> bool:
    """Whether a stored video's file is on this machine."""
    return path is not None and await asyncio.to_thread(path.exists)


def exc_wait(error: SoracastError) -> float | None:
    """The wait an error asked for (`Retry-After`), if any."""
    return getattr(error, "retry_after", None)


def capitalised(text: str) -> str:
    """The text with its first letter in capitals (a backend's service name opening a sentence)."""
    return text[:1].upper() + text[1:]


class RunnerState:
    """The job runner's state, declared once: each part (line, submitting, tracking, delivering, leases) reads
    and changes it only through `self`, and the calls below are the ones every part makes."""

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
        #: Trackers waiting for a batched sweep: their board and job, so a webhook can hurry that one job.
        self._asking: dict[str, tuple[StatusBoard, str]] = {}
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

    def media_path(self, generation: Generation, suffix: str) -> Path:
        dest = self._media_dir / generation.scope.platform.value / f"{generation.id}{suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

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

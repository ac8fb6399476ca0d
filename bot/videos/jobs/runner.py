"""JobRunner: the parts of the run-time side put together, with the notifiers of the platforms this process
serves, and its start (take over, run the line) and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.chat.notify import Messenger, Notifier
from bot.models import Platform, utcnow
from bot.videos.jobs.delivering import Deliverer
from bot.videos.jobs.dispatching import LineDispatcher
from bot.videos.jobs.leasing import LeaseKeeper
from bot.videos.jobs.submitting import Submitter
from bot.videos.jobs.tracking import JobTracker

log = logging.getLogger(__name__)


class JobRunner(LineDispatcher, Submitter, JobTracker, Deliverer, LeaseKeeper):
    """Sends, tracks and delivers the generations this process holds."""

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

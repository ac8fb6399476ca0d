"""Leases and heartbeats: which process works on which generation. Leases are renewed while the process lives
and taken over when they expire, or at once when their holder is found dead (it stopped beating); webhooks for
a job held elsewhere wake its holder, or take the job over when that holder is dead. Also the wake-ups
processes send each other through the storage."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from bot.models import Generation, GenerationStatus, utcnow
from bot.videos.jobs.state import LINE_MESSAGE, TOLD_BEATS, TRACK_MESSAGE, RunnerState

log = logging.getLogger(__name__)


class LeaseKeeper(RunnerState):
    """Holds this process's leases (for the runner's `platforms`), beats, and passes wake-ups between
    processes. What it leases is tracked (the tracker's `track`, `wake`); a line wake-up from another process
    runs this one's line (the dispatcher's `_wake_line_here`)."""

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

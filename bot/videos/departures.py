"""Workspaces that removed soracast: kept for a while, then deleted.

When a platform says soracast was removed from a workspace (Slack's `app_uninstalled`, `tokens_revoked`), the
adapter deletes its tokens and calls `retire`: nothing is sent for it any more and its characters and videos
are kept for `SORACAST_UNINSTALLED_RETENTION_DAYS`, so adding soracast back (`reinstate`) finds everything as
it was. After that the sweep, run by every process that serves the platform, deletes them (`purge`); the
operator can do it at once with `soracast forget-workspace`. Every step acts on exactly one workspace's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from bot.config import Settings
from bot.models import PurgedScope, RetiredScope, Scope, utcnow
from bot.videos.generations import GenerationService
from storage.base import Storage

log = logging.getLogger(__name__)

#: How often each process looks for retired workspaces whose time is up.
SWEEP_EVERY = 3600.0
#: The first sweep after start-up (not at once: start-up has enough to do).
FIRST_SWEEP_AFTER = 60.0


class Departures:
    """Retires, reinstates and purges workspaces; runs the periodic sweep."""

    def __init__(self, storage: Storage, settings: Settings, generations: GenerationService | None = None) -> None:
        self._storage = storage
        self._settings = settings
        #: None where no line runs (the operator's CLI): waiting videos are then left to the sweep.
        self._generations = generations
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self._settings.uninstalled_retention_days)

    async def retire(self, scope: Scope, reason: str, now: datetime | None = None) -> RetiredScope:
        """The workspace removed soracast: stop its waiting videos and keep its data until the retention ends.

        Retiring a workspace retired already changes nothing (its first date stands)."""
        now = now or utcnow()
        retired = await self._storage.retire_scope(
            RetiredScope(scope=scope, reason=reason, retired_at=now, purge_after=now + self.retention)
        )
        log.info(
            "%s removed soracast (%s): its characters and videos are kept until %s",
            scope.key,
            reason,
            retired.purge_after.strftime("%Y-%m-%d %H:%M UTC"),
        )
        if self._generations is not None:
            await self._generations.stop_waiting(scope)
        return retired

    async def reinstate(self, scope: Scope) -> bool:
        """The workspace added soracast again: its data stays. False if it had not been retired."""
        back = await self._storage.reinstate_scope(scope)
        if back:
            log.info("%s added soracast again: its characters and videos are kept", scope.key)
        return back

    async def is_retired(self, scope: Scope) -> bool:
        return await self._storage.get_retired_scope(scope) is not None

    async def purge(self, scope: Scope) -> PurgedScope:
        """Delete the workspace's characters, videos (files included), spending and settings now."""
        purged = await self._storage.purge_scope(scope)
        for generation in purged.generations:
            for path in (generation.video_path, generation.thumbnail_path):
                if path is not None:
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(path.unlink, True)
        log.info(
            "deleted the data of %s: %d character(s), %d video(s)%s",
            scope.key,
            purged.characters,
            len(purged.generations),
            f"; {purged.still_running} still being made are deleted by a later sweep" if purged.still_running else "",
        )
        return purged

    async def forget_now(self, scope: Scope, now: datetime | None = None) -> PurgedScope:
        """The operator's `forget-workspace`: retire the workspace as due at once, then purge it (videos still
        being made stay marked, so the sweep deletes them once they end)."""
        now = now or utcnow()
        retired = RetiredScope(scope=scope, reason="operator", retired_at=now, purge_after=now)
        await self._storage.reinstate_scope(scope)  # an earlier, later-due mark gives way to this one
        await self._storage.retire_scope(retired)
        if self._generations is not None:
            await self._generations.stop_waiting(scope)
        return await self.purge(scope)

    async def sweep(self, now: datetime | None = None) -> list[PurgedScope]:
        """Purge every retired workspace whose retention has ended."""
        purged = []
        for retired in await self._storage.retired_scopes(due_by=now or utcnow()):
            try:
                purged.append(await self.purge(retired.scope))
            except Exception:
                log.exception("purging %s failed; the next sweep tries again", retired.scope.key)
        return purged

    def start_sweeping(self) -> None:
        """Sweep now and then for as long as the process runs (every process may: purging twice is harmless)."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="soracast-departures")

    async def _sweep_forever(self) -> None:
        await asyncio.sleep(FIRST_SWEEP_AFTER)
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the sweep of retired workspaces stumbled; it runs again later")
            await asyncio.sleep(SWEEP_EVERY)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

"""The owner knows: when someone else's video uses a character, its owner gets one private note per video, with
a link to the post — gathered into a digest when many come at once.

The rule (`SORACAST_OWNER_DIGEST_MINUTES`, 10 by default): an owner gets at most one note per window. The first
video after a quiet window is sent as soon as it is posted; videos posted while a window is open wait and go
together, as one digest, when it closes. Notes are stored with the video's request (so none is lost to a
restart) and taken by one sender (so none is sent twice); a video that fails, is cancelled or deleted before it
is posted is never announced, and an owner who turned notes off for a character (`/character notify @h off`) is
not told about it. Nobody but the owner is told anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bot.characters.access import characters_in
from bot.chat.notify import Messenger, VideoNotice
from bot.models import (
    Character,
    Generation,
    GenerationStatus,
    NoticeState,
    OwnerNotice,
    Platform,
    Scope,
    utcnow,
)
from storage.base import Storage

log = logging.getLogger(__name__)

#: How often waiting notes are looked at even when nothing woke the sender (another process posted a video).
SWEEP_SECONDS = 30.0
#: A note whose video was never stored (refused before it was saved) is dropped after this long.
ORPHAN_AFTER = timedelta(hours=1)
_GONE = (GenerationStatus.FAILED, GenerationStatus.CANCELLED, GenerationStatus.DELETED)


class OwnerNotices:
    """Keeps and sends the owners' notes for the platforms this process serves."""

    def __init__(
        self,
        storage: Storage,
        messenger: Callable[[Platform], Messenger | None],
        platforms: Callable[[], Sequence[Platform]],
        window: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._storage = storage
        self._messenger = messenger
        self._platforms = platforms
        self._window = window
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()

    # --- when a video is asked for -------------------------------------------------------------------------

    @staticmethod
    def notices_for(generation: Generation, characters: Sequence[Character]) -> list[OwnerNotice]:
        """One note per owner of the video's characters who is not its requester and wants notes."""
        owners = {c.owner_id for c in characters if c.owner_id != generation.requester_id and c.notify_owner}
        return [
            OwnerNotice(generation_id=generation.id, owner_id=owner, scope=generation.scope, created_at=utcnow())
            for owner in sorted(owners)
        ]

    async def expect(self, generation: Generation, characters: Sequence[Character]) -> None:
        """Keep the notes a new request will need once its video is posted (stored with the request)."""
        notices = self.notices_for(generation, characters)
        await self._storage.add_owner_notices(notices, generation.platform)

    # --- the sender ------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """A video was posted: look at the waiting notes now."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="owner-notices")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                wait = await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("owner notes stumbled; trying again shortly")
                wait = SWEEP_SECONDS
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(wait, SWEEP_SECONDS) if wait else SWEEP_SECONDS)

    async def flush(self, now: datetime | None = None) -> float | None:
        """Send every note that is due (as of `now`); returns the seconds until the next digest window closes
        (None: no note waits for one)."""
        async with self._flushing:
            platforms = [p for p in self._platforms() if self._messenger(p) is not None]
            ready: dict[tuple[Scope, str], list[VideoNotice]] = defaultdict(list)
            now = now or self._clock()
            for notice in await self._storage.waiting_owner_notices(platforms):
                video = await self._ready(notice, now)
                if video is not None:
                    ready[(notice.scope, notice.owner_id)].append(video)
            next_due: float | None = None
            for (scope, owner), videos in ready.items():
                due = await self._send(scope, owner, videos, now)
                if due is not None:
                    next_due = due if next_due is None else min(next_due, due)
            return next_due

    async def missed(self, scope: Scope, owner_id: str) -> list[VideoNotice]:
        """Notes that could not reach `owner_id` privately, for a platform that shows them another way (Discord:
        privately after their next command); each is handed out once."""
        found = []
        for generation_id in await self._storage.take_undelivered_notices(scope, owner_id, self._clock()):
            generation = await self._storage.get_generation(generation_id)
            if generation is None or generation.status is not GenerationStatus.COMPLETED:
                continue
            handles = [
                c.handle
                for c in await characters_in(self._storage, scope, generation.character_ids)
                if c.owner_id == owner_id
            ]
            if handles:
                found.append(VideoNotice(generation=generation, handles=tuple(handles)))
        return found

    async def _ready(self, notice: OwnerNotice, now: datetime) -> VideoNotice | None:
        """The note's video once it is posted; notes that will never be sent are dropped here."""
        generation = await self._storage.get_generation(notice.generation_id)
        if generation is None:
            if now - notice.created_at > ORPHAN_AFTER:
                await self._drop(notice)
            return None
        if generation.status in _GONE:
            await self._drop(notice)
            return None
        if generation.status is not GenerationStatus.COMPLETED or generation.delivered_at is None:
            return None  # not posted yet
        handles = []
        for ref in generation.characters:
            character = await self._storage.get_character_by_id(ref.character_id) if ref.character_id else None
            if character is not None and character.owner_id == notice.owner_id and character.notify_owner:
                handles.append(character.handle)
        if not handles:
            await self._drop(notice)  # turned off meanwhile, or the characters were removed
            return None
        return VideoNotice(generation=generation, handles=tuple(dict.fromkeys(handles)))

    async def _send(self, scope: Scope, owner: str, videos: list[VideoNotice], now: datetime) -> float | None:
        last = await self._storage.last_owner_message(scope, owner)
        if last is not None and now - last < self._window:
            return (last + self._window - now).total_seconds()
        ids = [v.generation.id for v in videos]
        # Taken before sending: another process flushing at the same moment gets none of these.
        taken = set(await self._storage.settle_owner_notices(scope, owner, ids, NoticeState.SENT, now))
        videos = [v for v in videos if v.generation.id in taken]
        if not videos:
            return None
        messenger = self._messenger(scope.platform)
        assert messenger is not None
        try:
            reached = await messenger.tell_owner(scope, owner, videos)
        except Exception as exc:
            log.warning("a note to %s about %d video(s) failed (%s); tried again later", owner, len(videos),
                        type(exc).__name__)
            await self._storage.reopen_owner_notices(scope, owner, [v.generation.id for v in videos])
            return SWEEP_SECONDS
        if not reached:
            log.info("%s cannot be sent private messages; %d note(s) not delivered", owner, len(videos))
            await self._storage.reopen_owner_notices(scope, owner, [v.generation.id for v in videos])
            await self._storage.settle_owner_notices(
                scope, owner, [v.generation.id for v in videos], NoticeState.UNDELIVERED, now
            )
        return None

    async def _drop(self, notice: OwnerNotice) -> None:
        await self._storage.settle_owner_notices(
            notice.scope, notice.owner_id, [notice.generation_id], NoticeState.DROPPED, notice.created_at
        )

"""Every video a character appears in, for its owner (or an admin) to see and take down."""

from __future__ import annotations

from dataclasses import dataclass

from bot.characters.access import check_manager
from bot.characters.registry import CharacterRegistry
from bot.models import Actor, Character, Generation, GenerationStatus, Scope
from storage.base import Storage

#: Videos that never reached the chat (or were deleted) are not listed: there is nothing to take down.
_UNLISTED = (GenerationStatus.FAILED, GenerationStatus.CANCELLED, GenerationStatus.DELETED)
_LISTED = frozenset(s for s in GenerationStatus if s not in _UNLISTED)


@dataclass(frozen=True)
class CharacterVideoList:
    """A character and the videos featuring it, newest first (posted ones and those still being made)."""

    character: Character
    videos: list[Generation]


class CharacterVideos:
    """`/character videos @h`: its owner or an admin only (the list says where each video was posted, which
    may be a channel the person asking cannot see)."""

    def __init__(self, storage: Storage, registry: CharacterRegistry) -> None:
        self._storage = storage
        self._registry = registry

    async def list(self, scope: Scope, actor: Actor, handle: str) -> CharacterVideoList:
        character = await self._registry.get(scope, handle)
        check_manager(character, actor, "list its videos")
        videos = [g for g in await self._storage.videos_with(character.id) if g.status in _LISTED and g.scope == scope]
        return CharacterVideoList(character, videos)

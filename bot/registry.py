"""CharacterRegistry: a workspace's @handles and the API characters behind them."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import defaultdict
from pathlib import Path

from bot import media
from bot.errors import HandleTaken, InvalidInput, PermissionDenied, UnknownHandle
from bot.handles import suggest_handles, validate_handle
from bot.models import Actor, Character, CharacterSource, Scope, ScopeSettings
from bot.videos.api import VideosAPI
from storage.base import Storage

log = logging.getLogger(__name__)

NAME_MAX = 80


def default_name(handle: str) -> str:
    """A display name from a handle: `team_cat` → `Team Cat` (the API wants a name; users may override)."""
    words = handle.replace("_", " ").replace(".", " ").split()
    return " ".join(w.capitalize() for w in words) or handle


def validate_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInput("The display name is empty.", hint="Give a name of 1–80 characters, or leave it out.")
    if len(cleaned) > NAME_MAX:
        raise InvalidInput(
            f"The display name is {len(cleaned)} characters long; the limit is {NAME_MAX}.",
            hint="Choose a shorter name.",
        )
    return cleaned


class CharacterRegistry:
    """Register, list, show, rename and remove the characters of a scope."""

    def __init__(self, storage: Storage, videos: VideosAPI, limits: media.ClipLimits, work_dir: Path) -> None:
        self._storage = storage
        self._videos = videos
        self._limits = limits
        self._work_dir = work_dir
        # Two people registering the same handle at once must not both upload a clip.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def limits(self) -> media.ClipLimits:
        return self._limits

    async def register(
        self,
        scope: Scope,
        actor: Actor,
        handle: str,
        clip: Path,
        *,
        name: str | None = None,
        start: float = 0.0,
        source: CharacterSource = CharacterSource.UPLOAD,
        source_ref: str | None = None,
    ) -> Character:
        """Prepare `clip`, upload it as an API character and store it under `@handle` in `scope`.

        Every check that can fail without the API runs first, so a refused request changes nothing.
        """
        handle = validate_handle(handle)
        display_name = validate_name(name) if name is not None else default_name(handle)
        await self.check_can_register(scope, actor)
        async with self._locks[f"{scope.key}/{handle}"]:
            await self._ensure_free(scope, handle)
            self._work_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self._work_dir, prefix="clip-") as tmp:
                prepared = Path(tmp) / "character.mp4"
                await media.prepare_character_clip(clip, prepared, self._limits, start=start)
                created = await self._videos.create_character(display_name, prepared)
            if not created.id:
                raise InvalidInput("The Videos API did not return a character id.", hint="Try again later.")
            character = Character(
                scope=scope,
                handle=handle,
                name=created.name or display_name,
                api_character_id=created.id,
                owner_id=actor.id,
                source=source,
                source_ref=source_ref if source_ref is not None else clip.name,
            )
            await self._storage.add_character(character)
        log.info("registered @%s in %s as %s", handle, scope.key, created.id)
        return character

    async def precheck(self, scope: Scope, actor: Actor, handle: str, name: str | None = None) -> str:
        """Every refusal `register` can give without the clip; adapters call it before downloading one.

        Returns the canonical handle.
        """
        canonical = validate_handle(handle)
        if name is not None:
            validate_name(name)
        await self.check_can_register(scope, actor)
        await self._ensure_free(scope, canonical)
        return canonical

    async def check_can_register(self, scope: Scope, actor: Actor) -> None:
        """Raise PermissionDenied when the scope restricts registering to a role the actor lacks."""
        settings = await self._storage.get_scope_settings(scope)
        role = settings.register_role_id
        if role and not actor.is_admin and role not in actor.role_ids:
            raise PermissionDenied(
                "Registering characters is limited to a role in this workspace.",
                hint="Ask an admin to give you that role, or to change it with `/soracast config`.",
            )

    async def _ensure_free(self, scope: Scope, handle: str) -> None:
        existing = await self._storage.get_character(scope, handle)
        if existing is not None:
            raise HandleTaken(
                f"@{handle} is already registered in this workspace.",
                hint="Pick another handle, or remove the existing one first with `/character remove`.",
            )

    async def list(self, scope: Scope) -> list[Character]:
        """This scope's characters, sorted by handle."""
        return sorted(await self._storage.list_characters(scope), key=lambda c: c.handle)

    async def get(self, scope: Scope, handle: str) -> Character:
        """One character, or UnknownHandle with the closest handles of this scope suggested."""
        canonical = validate_handle(handle)
        character = await self._storage.get_character(scope, canonical)
        if character is None:
            known = [c.handle for c in await self._storage.list_characters(scope)]
            raise UnknownHandle(canonical, suggest_handles(canonical, known))
        return character

    async def by_handle(self, scope: Scope) -> dict[str, Character]:
        """All characters of a scope keyed by handle, for prompt resolution."""
        return {c.handle: c for c in await self._storage.list_characters(scope)}

    async def complete(self, scope: Scope, prefix: str, limit: int = 25) -> list[Character]:
        """Characters whose handle or name starts with (or contains) `prefix`, for autocomplete."""
        needle = prefix.strip().lstrip("@").lower()
        characters = await self.list(scope)
        starts = [c for c in characters if c.handle.startswith(needle) or c.name.lower().startswith(needle)]
        contains = [c for c in characters if c not in starts and needle in c.handle]
        return (starts + contains)[:limit]

    async def rename(self, scope: Scope, actor: Actor, handle: str, new_handle: str) -> Character:
        """Give a character a new handle; its owner or an admin only."""
        character = await self.get(scope, handle)
        self._check_owner(character, actor, "rename")
        new = validate_handle(new_handle)
        if new == character.handle:
            return character
        async with self._locks[f"{scope.key}/{new}"]:
            await self._ensure_free(scope, new)
            return await self._storage.rename_character(scope, character.handle, new)

    async def remove(self, scope: Scope, actor: Actor, handle: str) -> Character:
        """Forget a character in this scope; its owner or an admin only.

        The Videos API has no route to delete a character, so nothing is deleted there.
        """
        character = await self.get(scope, handle)
        self._check_owner(character, actor, "remove")
        await self._storage.remove_character(scope, character.handle)
        log.info("removed @%s from %s", character.handle, scope.key)
        return character

    async def configure(self, scope: Scope, actor: Actor, *, register_role_id: str | None) -> ScopeSettings:
        """Restrict registering to a role (None opens it to everyone); admins only."""
        if not actor.is_admin:
            raise PermissionDenied(
                "Only workspace admins can change soracast's settings.",
                hint="Ask someone with Manage Server (Discord) or an admin (Slack).",
            )
        settings = ScopeSettings(scope=scope, register_role_id=register_role_id)
        await self._storage.save_scope_settings(settings)
        return settings

    async def scope_settings(self, scope: Scope) -> ScopeSettings:
        return await self._storage.get_scope_settings(scope)

    @staticmethod
    def _check_owner(character: Character, actor: Actor, verb: str) -> None:
        if actor.id != character.owner_id and not actor.is_admin:
            raise PermissionDenied(
                f"Only the owner of @{character.handle} or an admin can {verb} it.",
                hint="Ask them, or an admin, to do it.",
            )

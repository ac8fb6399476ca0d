"""CharacterRegistry: a workspace's @handles, the references each one keeps, and what backends need of them."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from bot.backends.base import (
    CharacterInput,
    CharacterMode,
    HostsReferences,
    ModelCapabilities,
    VideoBackend,
    VideoRequest,
)
from bot.backends.catalog import ModelCatalog
from bot.characters import media
from bot.characters.access import check_manager
from bot.characters.handles import suggest_handles, validate_handle
from bot.characters.instructions import for_prompt, validate_instructions
from bot.characters.likeness import explain_refusal, require_rights
from bot.characters.references import ReferenceCache, ReferenceFiles, make_references
from bot.chat.free_text import checked_text
from bot.errors import (
    CharacterNeedsClip,
    HandleTaken,
    HumanLikenessRefused,
    InvalidInput,
    PermissionDenied,
    UnknownHandle,
    WorkspaceFull,
)
from bot.models import (
    Actor,
    Character,
    CharacterRef,
    CharacterSource,
    ReferenceKind,
    Scope,
    ScopeSettings,
    utcnow,
)
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
    return checked_text(
        cleaned,
        "The display name",
        NAME_MAX,
        control_hint="Use letters, digits and spaces.",
        length_hint="Choose a shorter name.",
    )


#: The account key under which ids made before soracast kept per-account ids are stored (migration 002).
LEGACY_ACCOUNT = "legacy"


def needs_clip(character: Character) -> CharacterNeedsClip:
    """The refusal for a character with no stored clip, saying how to mend it."""
    return CharacterNeedsClip(
        f"@{character.handle} was registered before soracast kept each character's clip, and its clip is gone, "
        "so it only works on the Videos API endpoint it was made on.",
        hint=f"Register it again with a clip: `/character remove @{character.handle}`, then "
        f"`/character add @{character.handle}` with the MP4.",
    )


class CharacterRegistry:
    """Register, list, show, rename and remove the characters of a scope; give backends their references."""

    def __init__(
        self,
        storage: Storage,
        catalog: ModelCatalog,
        limits: media.ClipLimits,
        media_dir: Path,
        *,
        max_characters: int | None = None,
    ) -> None:
        self._storage = storage
        self._catalog = catalog
        self._limits = limits
        self._max_characters = max_characters
        self._work_dir = media_dir / "work"
        self._cache = ReferenceCache(storage, media_dir / "references")
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
        rights_confirmed: bool,
    ) -> Character:
        """Make `clip`'s references (a short clip and three stills) and store them under `@handle` in `scope`.

        `rights_confirmed`: the registrant confirmed having the right to use the subject (stored with who and
        when; refused without it). Every check that can fail without a backend runs first, so a refused request
        changes nothing. Where the backend new videos go to keeps characters by id (OpenAI shape), the character
        is created there now, so a refusal (a clip of a real person) is told at once rather than at the first video.
        """
        handle = validate_handle(handle)
        display_name = validate_name(name) if name is not None else default_name(handle)
        require_rights(rights_confirmed)
        await self.check_can_register(scope, actor)
        async with self._locks[f"{scope.key}/{handle}"]:
            await self._ensure_free(scope, handle)
            references = await make_references(clip, self._limits, self._work_dir, start=start)
            character = Character(
                scope=scope,
                handle=handle,
                name=display_name,
                owner_id=actor.id,
                source=source,
                source_ref=source_ref if source_ref is not None else clip.name,
                references=[blob.reference for blob in references],
                rights_confirmed_by=actor.id,
                rights_confirmed_at=utcnow(),
            )
            backend = self._catalog.default_backend
            if self._catalog.default_model().character_mode is CharacterMode.NATIVE_ID:
                clip_blob = next(b for b in references if b.reference.kind is ReferenceKind.CLIP)
                made = CharacterInput(
                    handle=handle,
                    name=display_name,
                    character_id=character.id,
                    clip=await self._cache.put(clip_blob),
                )
                try:
                    character.native_ids[backend.account_key] = await backend.create_character(made)
                except HumanLikenessRefused as exc:
                    raise explain_refusal(exc, [character]) from None
            await self._storage.add_character(character, references)
        log.info("registered @%s in %s as %s", handle, scope.key, character.id)
        return character

    async def files(self, character: Character) -> ReferenceFiles:
        """A character's clip and stills as files on this machine (for `/character info` and backends)."""
        return await self._cache.files(character)

    def check_usable(self, characters: Sequence[Character], caps: ModelCapabilities) -> None:
        """Refuse, before anything is stored, characters this model cannot take."""
        for character in characters:
            if character.has_references:
                continue
            legacy = character.native_ids.get(LEGACY_ACCOUNT)
            if caps.character_mode is CharacterMode.NATIVE_ID and legacy:
                continue
            raise needs_clip(character)

    async def inputs_for(
        self, refs: Sequence[CharacterRef], backend: VideoBackend, caps: ModelCapabilities
    ) -> list[CharacterInput]:
        """The characters of a request as `backend` takes them: reference files on disk, and for NATIVE_ID
        models the account's character id (created now, and remembered, if this account has none yet)."""
        inputs: list[CharacterInput] = []
        for ref in refs:
            character = await self._storage.get_character_by_id(ref.character_id)
            if character is None:
                raise UnknownHandle(ref.handle, [])
            self.check_usable([character], caps)
            files = await self._cache.files(character) if character.has_references else ReferenceFiles(None, [])
            native = None
            if caps.character_mode is CharacterMode.NATIVE_ID:
                native = character.native_ids.get(backend.account_key) or character.native_ids.get(LEGACY_ACCOUNT)
            given = CharacterInput(
                handle=ref.handle,
                name=ref.name,
                character_id=character.id,
                clip=files.clip,
                stills=files.stills,
                native_id=native,
                instructions=for_prompt(character.instructions, ref.name, (ref.handle, character.handle)),
            )
            if isinstance(backend, HostsReferences):
                given.hosted = await self._storage.hosted_references(
                    backend.hosting_account, [still.sha256 for still in character.stills]
                )
            if caps.character_mode is CharacterMode.NATIVE_ID and native is None:
                given.native_id = await backend.create_character(given)
                await self._storage.save_native_id(character.id, backend.account_key, given.native_id)
                log.info("created @%s at %s as %s", ref.handle, backend.account_key, given.native_id)
            inputs.append(given)
        return inputs

    async def host_references(self, request: VideoRequest, backend: VideoBackend) -> None:
        """Where the backend reads references from URLs it hosts, upload what `request` sends and is not hosted
        yet (right before its submit, once every check has passed), and remember it for the next video."""
        if not isinstance(backend, HostsReferences):
            return
        for hosted in await backend.host_references(request):
            await self._storage.save_hosted_reference(hosted)
            log.info("hosted a reference of %s at %s", request.request_key, hosted.account)

    async def precheck(
        self, scope: Scope, actor: Actor, handle: str, name: str | None = None, *, rights_confirmed: bool | None = None
    ) -> str:
        """Every refusal `register` can give without the clip; adapters call it before opening a form for the
        clip or downloading one (`rights_confirmed` None: the form still asks). Returns the canonical handle.
        """
        canonical = validate_handle(handle)
        if name is not None:
            validate_name(name)
        if rights_confirmed is not None:
            require_rights(rights_confirmed)
        await self.check_can_register(scope, actor)
        await self._ensure_free(scope, canonical)
        return canonical

    async def check_can_register(self, scope: Scope, actor: Actor) -> None:
        """Every refusal `register` can give before a handle is known: the register role the actor lacks, a
        workspace already full. Adapters call it before opening a form that asks for the handle."""
        settings = await self._storage.get_scope_settings(scope)
        role = settings.register_role_id
        if role and not actor.is_admin and role not in actor.role_ids:
            raise PermissionDenied(
                "Registering characters is limited to a role in this workspace.",
                hint="Ask an admin to give you that role, or to change it with `/soracast config`.",
            )
        await self._ensure_room(scope)

    async def _ensure_room(self, scope: Scope) -> None:
        if self._max_characters is None:
            return
        count = len(await self._storage.list_characters(scope))
        if count >= self._max_characters:
            raise WorkspaceFull(
                f"This workspace already has {count} characters, the most this soracast keeps.",
                hint="Remove one you no longer use with `/character remove`, or ask the operator to raise "
                "SORACAST_MAX_CHARACTERS_PER_WORKSPACE.",
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
        """Forget a character (and its references) in this scope; its owner or an admin only.

        The OpenAI-shape Videos API has no route to delete a character, so nothing is deleted there.
        """
        character = await self.get(scope, handle)
        self._check_owner(character, actor, "remove")
        await self._storage.remove_character(scope, character.handle)
        log.info("removed @%s from %s", character.handle, scope.key)
        return character

    async def set_instructions(self, scope: Scope, actor: Actor, handle: str, text: str) -> Character:
        """Standing instructions for every video with the character ("" or `clear` removes them); its owner or an
        admin only."""
        character = await self.get(scope, handle)
        check_manager(character, actor, "change its instructions")
        character.instructions = validate_instructions(text)
        await self._storage.save_character_options(character)
        log.info("instructions of @%s in %s set by %s", character.handle, scope.key, actor.id)
        return character

    async def set_notify(self, scope: Scope, actor: Actor, handle: str, on: bool) -> Character:
        """Whether the owner is told privately about other people's videos with the character; its owner or an
        admin only."""
        character = await self.get(scope, handle)
        check_manager(character, actor, "change who is told about its videos")
        character.notify_owner = on
        await self._storage.save_character_options(character)
        return character

    async def configure(self, scope: Scope, actor: Actor, *, register_role_id: str | None) -> ScopeSettings:
        """Restrict registering to a role (None opens it to everyone); admins only."""
        if not actor.is_admin:
            raise PermissionDenied(
                "Only workspace admins can change soracast's settings.",
                hint="Ask someone with Manage Server (Discord) or an admin (Slack).",
            )
        current = await self._storage.get_scope_settings(scope)
        # The same record holds the workspace's budget limits: they stay as they are.
        settings = ScopeSettings(scope=scope, register_role_id=register_role_id, budget=current.budget)
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

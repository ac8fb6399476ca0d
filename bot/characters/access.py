"""Who may use a character: everyone, the people its owner approved, or only its owner — admins always may.

Every path that puts a character into a video (`/sora`, remix, extend, a character cut from a video) checks
here before anything is stored, sent or reserved, and a refusal names the owner to ask.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.actions import VideoAction
from bot.chat import present
from bot.errors import CharacterNotShared, InvalidInput, PermissionDenied
from bot.models import Actor, Character, Scope, Sharing, utcnow
from storage.base import Storage

if TYPE_CHECKING:  # the registry checks managers with this module
    from bot.characters.registry import CharacterRegistry

log = logging.getLogger(__name__)

#: The most people one owner may approve for one character (more is a workspace-wide share: `everyone`).
MAX_APPROVED = 100


def may_use(character: Character, actor: Actor) -> bool:
    """Whether `actor` may put `character` into a video."""
    if actor.is_admin or actor.id == character.owner_id or character.sharing is Sharing.EVERYONE:
        return True
    return character.sharing is Sharing.APPROVED and actor.id in character.approved


def check_use(characters: Sequence[Character], actor: Actor) -> None:
    """Refuse, naming each owner to ask and offering an Ask button, characters `actor` may not use."""
    unique = {c.id: c for c in characters}.values()
    refused = [c for c in unique if not may_use(c, actor)]
    if not refused:
        return
    owners = [present.mention(c.owner_id) for c in refused]
    if len(refused) == 1:
        character = refused[0]
        message = f"@{character.handle} belongs to {owners[0]}, who has not shared it with you."
        hint = f"Ask them to let you use it (the Ask button, or `/character ask @{character.handle}`)."
    else:
        named = ", ".join(f"@{c.handle} ({o})" for c, o in zip(refused, owners, strict=True))
        message = f"These characters have not been shared with you: {named}."
        hint = "Ask their owners to let you use them (the Ask buttons, or `/character ask @handle`)."
    error = CharacterNotShared(message, hint=hint)
    error.people = tuple(dict.fromkeys(c.owner_id for c in refused))
    error.offers = tuple((VideoAction.ASK, c.id, f"Ask to use @{c.handle}") for c in refused)
    raise error


def check_manager(character: Character, actor: Actor, what: str) -> None:
    """Only a character's owner or an admin may manage it (`what`: "share it", "change its instructions")."""
    if actor.id != character.owner_id and not actor.is_admin:
        error = PermissionDenied(
            f"Only the owner of @{character.handle} ({present.mention(character.owner_id)}) or an admin can {what}.",
            hint="Ask them, or an admin, to do it.",
        )
        error.people = (character.owner_id,)
        raise error


class CharacterAccess:
    """Changes who may use a character; its owner or an admin only."""

    def __init__(self, storage: Storage, registry: CharacterRegistry) -> None:
        self._storage = storage
        self._registry = registry

    async def set_sharing(
        self, scope: Scope, actor: Actor, handle: str, sharing: Sharing, people: Sequence[str] | None = None
    ) -> Character:
        """Everyone, only its owner, or the approved people: `people` (when given) becomes the whole list (the
        `/character share` word `everyone` or `only-me`, or Slack's form)."""
        character = await self._registry.get(scope, handle)
        check_manager(character, actor, "change who may use it")
        chosen = self._others(character, people or ())
        if sharing is not Sharing.APPROVED and chosen:
            raise InvalidInput(
                f"People are only listed when @{character.handle} is shared with approved people.",
                hint=f"Share it with them: `/character share @{character.handle} @person`.",
            )
        character.sharing = sharing
        await self._storage.save_character_options(character)
        if sharing is not Sharing.APPROVED:
            await self._storage.clear_access(character.id)
        elif people is not None:
            await self._replace(character, actor, chosen)
        log.info("@%s in %s shared with %s by %s", character.handle, character.scope.key, sharing.value, actor.id)
        return await self._reload(character)

    async def share(self, scope: Scope, actor: Actor, handle: str, people: Sequence[str]) -> Character:
        """Let these people use it too: it becomes shared with approved people (those already approved stay)."""
        character = await self._registry.get(scope, handle)
        check_manager(character, actor, "change who may use it")
        chosen = self._others(character, people)
        if not chosen:
            raise InvalidInput(
                f"You own @{character.handle} already; name someone else to share it with.",
                hint=f"`/character share @{character.handle} everyone`, `only-me`, or the people to let use it.",
            )
        now = utcnow()
        for person in chosen:
            await self._storage.grant_access(character.id, person, actor.id, now)
        if character.sharing is not Sharing.APPROVED:
            character.sharing = Sharing.APPROVED
            await self._storage.save_character_options(character)
        return await self._reload(character)

    async def unshare(self, scope: Scope, actor: Actor, handle: str, people: Sequence[str]) -> Character:
        """Take these people off the approved list (they may no longer use it unless it is shared with everyone)."""
        character = await self._registry.get(scope, handle)
        check_manager(character, actor, "change who may use it")
        if not people:
            raise InvalidInput(
                "Name the people who should no longer use it.",
                hint=f"`/character unshare @{character.handle} @person`, or `/character share @{character.handle} "
                "only-me` to keep it to yourself.",
            )
        if character.sharing is Sharing.EVERYONE:
            raise InvalidInput(
                f"Everyone in this workspace may use @{character.handle}, so nobody can be taken off a list.",
                hint=f"Share it with only some people instead: `/character share @{character.handle} @person`, or "
                f"keep it to yourself with `/character share @{character.handle} only-me`.",
            )
        missing = [p for p in people if p not in character.approved]
        if missing:
            error = InvalidInput(
                f"{present.people_list(missing)} {'is' if len(missing) == 1 else 'are'} not among the people "
                f"approved for @{character.handle}.",
                hint="`/character info` shows who may use it.",
            )
            error.people = tuple(missing)
            raise error
        for person in people:
            await self._storage.revoke_access(character.id, person)
        return await self._reload(character)

    def _others(self, character: Character, people: Sequence[str]) -> list[str]:
        chosen = [p for p in dict.fromkeys(people) if p and p != character.owner_id]
        if len(set(chosen) | set(character.approved)) > MAX_APPROVED:
            raise InvalidInput(
                f"A character can be shared with at most {MAX_APPROVED} people by name.",
                hint=f"Share it with everyone instead: `/character share @{character.handle} everyone`.",
            )
        return chosen

    async def _replace(self, character: Character, actor: Actor, people: Sequence[str]) -> None:
        for person in set(character.approved) - set(people):
            await self._storage.revoke_access(character.id, person)
        now = utcnow()
        for person in people:
            await self._storage.grant_access(character.id, person, actor.id, now)

    async def _reload(self, character: Character) -> Character:
        fresh = await self._storage.get_character_by_id(character.id)
        return fresh if fresh is not None else character


async def characters_in(storage: Storage, scope: Scope, character_ids: Sequence[str]) -> list[Character]:
    """The stored characters of a scope with these ids (those removed since are left out)."""
    found = []
    for character_id in dict.fromkeys(character_ids):
        character = await storage.get_character_by_id(character_id) if character_id else None
        if character is not None and character.scope == scope:
            found.append(character)
    return found

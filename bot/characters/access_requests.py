"""Asking to use someone's character: the owner is asked privately (Approve / Decline), decides once, and the
person who asked is told. Everything is in storage, so buttons clicked after a restart (or in another process)
still work, and a request decided in one place cannot be decided again in another."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.characters.access import may_use
from bot.characters.registry import CharacterRegistry
from bot.chat import present
from bot.chat.notify import Messenger
from bot.errors import AlreadyDecided, InvalidInput, PermissionDenied, UnknownRequest
from bot.models import (
    AccessRequest,
    AccessRequestStatus,
    Actor,
    Character,
    Platform,
    Scope,
    Sharing,
    utcnow,
)
from storage.base import Storage

log = logging.getLogger(__name__)

#: After a decline, how long before the same person may ask about the same character again (nobody is pestered).
ASK_AGAIN_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class AskOutcome:
    """What asking did: a new request (and whether its owner was told privately), or the one already waiting."""

    request: AccessRequest
    character: Character
    new: bool


@dataclass(frozen=True)
class Decision:
    """A request decided now, and whether the person who asked could be told privately."""

    request: AccessRequest
    character: Character
    requester_told: bool


class AccessRequests:
    """Ask, decide and list requests to use characters."""

    def __init__(
        self,
        storage: Storage,
        registry: CharacterRegistry,
        messenger: Callable[[Platform], Messenger | None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._messenger = messenger
        self._clock = clock

    async def ask(self, scope: Scope, actor: Actor, handle: str) -> AskOutcome:
        """`/character ask @handle`."""
        return await self._ask(scope, actor, await self._registry.get(scope, handle))

    async def ask_for(self, scope: Scope, actor: Actor, character_id: str) -> AskOutcome:
        """The Ask button under a refusal, which carries the character's id (it survives renames)."""
        character = await self._storage.get_character_by_id(character_id)
        if character is None or character.scope != scope:
            raise InvalidInput("That character has been removed.", hint="See `/character list`.")
        return await self._ask(scope, actor, character)

    async def _ask(self, scope: Scope, actor: Actor, character: Character) -> AskOutcome:
        if may_use(character, actor):
            raise InvalidInput(
                f"You may already use @{character.handle}.", hint=f"Try `/sora @{character.handle} …`."
            )
        now = self._clock()
        latest = await self._storage.latest_access_request(character.id, actor.id)
        if (
            latest is not None
            and latest.status is AccessRequestStatus.DECLINED
            and latest.decided_at is not None
            and now - latest.decided_at < ASK_AGAIN_AFTER
        ):
            error = InvalidInput(
                f"{present.mention(character.owner_id)} declined your request to use @{character.handle} on "
                f"{present.day(latest.decided_at)}.",
                hint=f"You may ask again from {present.day(latest.decided_at + ASK_AGAIN_AFTER)}.",
            )
            error.people = (character.owner_id,)
            raise error
        wanted = AccessRequest(scope=scope, character_id=character.id, requester_id=actor.id, created_at=now)
        request = await self._storage.add_access_request(wanted)
        if request.id != wanted.id:
            return AskOutcome(request, character, new=False)  # already waiting: the owner is not asked twice
        told = await self._send(scope, "asking its owner", request, lambda m: m.ask_owner(scope, request, character))
        await self._storage.mark_owner_told(request.id, told)
        request = request.model_copy(update={"owner_told": told})
        log.info("%s asked to use @%s in %s (owner told: %s)", actor.id, character.handle, scope.key, told)
        return AskOutcome(request, character, new=True)

    async def decide(self, actor: Actor, request_id: str, approve: bool, *, scope: Scope | None) -> Decision:
        """Approve or decline, once: the character's owner, or an admin of its workspace (`scope` is where the
        button or command was used; None in a direct message, where nobody is an admin)."""
        request = await self._storage.get_access_request(request_id.strip().strip("`").lower())
        if request is None or (scope is not None and request.scope != scope):
            raise UnknownRequest(
                f"There is no request {request_id!r} here.", hint="`/character requests` lists those waiting for you."
            )
        character = await self._storage.get_character_by_id(request.character_id)
        if character is None:
            raise UnknownRequest("The character this request was about has been removed.")
        admin = actor.is_admin and scope == request.scope
        if actor.id != character.owner_id and not admin:
            error = PermissionDenied(
                f"Only {present.mention(character.owner_id)}, who owns @{character.handle}, or an admin can decide "
                "this request.",
                hint=None,
            )
            error.people = (character.owner_id,)
            raise error
        status = AccessRequestStatus.APPROVED if approve else AccessRequestStatus.DECLINED
        decided = await self._storage.decide_access_request(request.id, status, actor.id, self._clock())
        if decided is None:
            current = await self._storage.get_access_request(request.id) or request
            when = f" on {present.day(current.decided_at)}" if current.decided_at else ""
            error = AlreadyDecided(
                f"This request was already {current.status.value} by {present.mention(current.decided_by or '?')}"
                f"{when}.",
                hint=f"`/character info @{character.handle}` shows who may use it now.",
            )
            error.people = tuple(p for p in (current.decided_by,) if p)
            raise error
        if approve and character.sharing is Sharing.ONLY_ME:
            # The owner let someone in: the character is now shared with its approved people.
            character.sharing = Sharing.APPROVED
            await self._storage.save_character_options(character)
        character = await self._storage.get_character_by_id(character.id) or character
        scope = decided.scope
        told = await self._send(
            scope, "telling whoever asked", decided, lambda m: m.tell_requester(scope, decided, character)
        )
        log.info("request %s %s by %s", decided.id, decided.status.value, actor.id)
        return Decision(decided, character, requester_told=told)

    async def waiting(self, scope: Scope, actor: Actor) -> list[tuple[AccessRequest, Character]]:
        """The requests `actor` may decide: those about their characters, or every one for an admin."""
        found = []
        for request in await self._storage.pending_access_requests(scope):
            character = await self._storage.get_character_by_id(request.character_id)
            if character is not None and (actor.is_admin or character.owner_id == actor.id):
                found.append((request, character))
        return found

    async def unseen(self, scope: Scope, owner_id: str) -> list[tuple[AccessRequest, Character]]:
        """Waiting requests about `owner_id`'s characters that could not be sent to them privately."""
        owner = Actor(id=owner_id)
        return [(r, c) for r, c in await self.waiting(scope, owner) if not r.owner_told]

    async def seen(self, request_id: str) -> None:
        """The owner was shown a request another way (Discord's private answer to their next command)."""
        await self._storage.mark_owner_told(request_id, True)

    async def _send(
        self, scope: Scope, what: str, request: AccessRequest, send: Callable[[Messenger], Awaitable[bool]]
    ) -> bool:
        """A private message through the platform's messenger; False where it could not go (nothing retries it:
        `/character requests` shows every waiting request)."""
        messenger = self._messenger(scope.platform)
        if messenger is None:
            log.info("no %s messenger in this process: %s about %s skipped", scope.platform.value, what, request.id)
            return False
        try:
            return await send(messenger)
        except Exception as exc:
            log.warning("%s about request %s failed: %s", what, request.id, type(exc).__name__)
            return False

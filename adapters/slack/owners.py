"""`/character share | unshare | ask | requests | approve | decline | videos | takedown | instructions | notify` on
Slack → core calls. Every answer is private; the share form picks people by their Slack ids."""

from __future__ import annotations

import re

from adapters.slack import render
from adapters.slack.origin import ModalState, Origin
from adapters.slack.services import Services
from bot.characters.access import check_manager
from bot.chat.commands import parse_share, parse_switch, video_id_arg
from bot.errors import InvalidInput

#: The `/character` words this module answers.
OWNER_WORDS = frozenset(
    {"share", "unshare", "ask", "requests", "approve", "decline", "videos", "takedown", "instructions", "notify"}
)

#: A person as Slack writes them in text it escaped: `<@U123>` or `<@U123|name>`.
_PERSON = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
#: The handle a share form is about, kept in its `private_metadata`.
SHARE_HANDLE = "handle"


def people_ids(tokens: list[str]) -> list[str] | None:
    """Slack user ids of `<@U…>` tokens; None if any token is a plain `@name`, which Slack sends as text here
    (slash commands keep @words as typed), so that the form with a people picker is used instead."""
    ids = []
    for token in tokens:
        found = _PERSON.match(token)
        if found is None:
            return None
        ids.append(found.group(1))
    return ids


class OwnerCommands:
    """What a character's owner (and the people asking to use it) type on Slack."""

    def __init__(self, services: Services) -> None:
        self.s = services

    async def run(self, word: str, origin: Origin, rest: str, *, trigger_id: str | None) -> None:
        words = rest.split()
        handle = words[0] if words else ""
        core, scope = self.s.core, origin.scope
        actor = await self.s.actors.get(origin)
        reply = self.s.replier
        if word == "share":
            sharing, people = parse_share(words[1:]) if len(words) > 1 else (None, [])
            ids = people_ids(people)
            if sharing is not None:
                character = await core.access.set_sharing(scope, actor, handle, sharing)
            elif people and ids is not None:
                character = await core.access.share(scope, actor, handle, ids)
            else:
                await self._share_form(origin, handle, trigger_id)
                return
            await reply.ephemeral(origin, render.sharing_message(character))
        elif word == "unshare":
            ids = people_ids(words[1:])
            if ids is None or not ids:
                await self._share_form(origin, handle, trigger_id)
                return
            character = await core.access.unshare(scope, actor, handle, ids)
            await reply.ephemeral(origin, render.sharing_message(character))
        elif word == "ask":
            outcome = await core.requests.ask(scope, actor, handle)
            await reply.ephemeral(origin, render.asked_message(outcome))
        elif word == "requests":
            waiting = await core.requests.waiting(scope, actor)
            await reply.ephemeral(origin, render.requests_message(waiting))
            for request, _ in waiting[: render.REQUESTS_SHOWN]:
                await core.requests.seen(request.id)
        elif word in ("approve", "decline"):
            request_id = _one_id(rest, f"/character {word} <request id>")
            decision = await core.requests.decide(actor, request_id, word == "approve", scope=scope)
            await reply.ephemeral(origin, render.request_message(decision.request, decision.character))
        elif word == "videos":
            found = await core.character_videos.list(scope, actor, handle)
            shown = found.videos[: render.VIDEOS_SHOWN]
            links = {g.id: await self.s.notifier.permalink(g) for g in shown}
            await reply.ephemeral(origin, render.character_videos_message(found, links))
        elif word == "takedown":
            generation = await core.generations.delete(scope, actor, video_id_arg(rest, "/character takedown <id>"))
            await reply.ephemeral(origin, render.taken_down_message(generation))
        elif word == "instructions":
            text = rest.strip()[len(handle) :]
            if not handle or not text.strip():
                raise InvalidInput(
                    "Give the character and its instructions.",
                    hint='`/character instructions @mascot "always wears the red scarf; never speaks"`, or `clear`.',
                )
            character = await core.registry.set_instructions(scope, actor, handle, text)
            await reply.ephemeral(origin, render.instructions_message(character))
        elif word == "notify":
            if len(words) != 2:
                raise InvalidInput("Say `on` or `off`.", hint="`/character notify @mascot off`.")
            character = await core.registry.set_notify(scope, actor, handle, parse_switch(words[1]))
            await reply.ephemeral(origin, render.notify_message(character))

    async def _share_form(self, origin: Origin, handle: str, trigger_id: str | None) -> None:
        """The form with a people picker (only the owner or an admin gets it: the core refuses others first)."""
        if trigger_id is None:
            raise InvalidInput(
                "People are picked in a form, which a mention cannot open.",
                hint=f"Use `/character share {handle or '@handle'}`, or name people as Slack mentions.",
            )
        actor = await self.s.actors.get(origin)
        character = await self.s.core.registry.get(origin.scope, handle)
        # Refused now, before the form, for anyone who may not change it.
        check_manager(character, actor, "change who may use it")
        metadata = ModalState(origin=origin, extra={SHARE_HANDLE: character.handle}).encode()
        client = await self.s.client(origin)
        await client.views_open(trigger_id=trigger_id, view=render.share_modal(metadata, character))


def _one_id(text: str, usage: str) -> str:
    """The one request id a command takes, without backticks."""
    words = text.split()
    if len(words) != 1:
        raise InvalidInput("Give one request id.", hint=f"Usage: {usage} (see `/character requests`).")
    return words[0].strip("`")

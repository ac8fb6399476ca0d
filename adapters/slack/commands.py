"""Slash commands, the app mention and the message shortcut → core calls. Every listener acks first."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from adapters.slack import render
from adapters.slack.files import first_video
from adapters.slack.origin import ModalState, Origin, from_command, from_event, from_interaction
from adapters.slack.owners import OWNER_WORDS, OwnerCommands
from adapters.slack.services import Services
from bot.chat.commands import (
    CONFIRM_FLAG,
    LineCommand,
    LineVerb,
    parse_generation_command,
    parse_line_command,
    parse_start,
    split_options,
    take_flag,
    video_id_arg,
)
from bot.errors import InvalidInput
from bot.videos.limits import change_limits, parse_limit_flags

#: A user mention as Slack writes it in message text: `<@U123>` or `<@U123|name>`.
_USER_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


def _words(text: str) -> list[str]:
    return text.split()


def _arg(words: list[str], index: int) -> str:
    """A positional argument, empty when missing (the core then says what is required)."""
    return words[index] if len(words) > index else ""


class SlashCommands:
    """`/sora`, `/character …`, `/soracast …`, `@soracast …` mentions and the "Make Sora character" shortcut."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.owners = OwnerCommands(services)

    def register(self, app: AsyncApp) -> None:
        app.command("/sora")(self.sora)
        app.command("/character")(self.character)
        app.command("/soracast")(self.soracast)
        app.event("app_mention")(self.mention)
        app.shortcut(render.MAKE_CHARACTER_SHORTCUT)(self.make_character)

    # --- listeners: ack, then hand the work to the background ---------------------------------------------

    async def sora(self, ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        origin = from_command(command, context)
        self.s.background.run(origin, self.generate(origin, render.unescape(command.get("text", ""))), "sora")

    async def character(self, ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        origin = from_command(command, context)
        work = self.run_character(
            origin, render.unescape(command.get("text", "")), trigger_id=command.get("trigger_id")
        )
        self.s.background.run(origin, work, "character")

    async def soracast(self, ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        origin = from_command(command, context)
        self.s.background.run(origin, self.run_soracast(origin, render.unescape(command.get("text", ""))), "soracast")

    async def mention(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        # bolt acks the event when this returns, which is at once: the work runs in the background.
        origin = from_event(event, context)
        text = render.unescape(_USER_MENTION.sub(" ", event.get("text", ""), count=1)).strip()
        verb, _, rest = text.partition(" ")
        if verb.lower() == "character":
            work = self.run_character(origin, rest, files=event.get("files") or [])
        elif verb.lower() == "sora":
            work = self.generate(origin, rest)
        else:
            work = self.s.replier.ephemeral(origin, render.help_message())
        self.s.background.run(origin, work, "mention")

    async def make_character(self, ack: AsyncAck, shortcut: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        origin = from_interaction(shortcut, context)
        work = self.open_from_message(origin, shortcut.get("message") or {}, shortcut["trigger_id"])
        self.s.background.run(origin, work, "shortcut")

    # --- the work ---------------------------------------------------------------------------------------------

    async def generate(self, origin: Origin, text: str) -> None:
        """`/sora <prompt> [--seconds 8 --size 1280x720]` (already unescaped) in the origin's channel and thread;
        `/sora queue` and `/sora cancel <video id>` ask about the line instead
        (`bot.chat.commands.parse_line_command`)."""
        line_command = parse_line_command(text)
        if line_command is not None:
            await self.run_line_command(origin, line_command)
            return
        prompt, options = parse_generation_command(text)
        actor = await self.s.actors.get(origin)
        generation = await self.s.core.generations.generate(
            origin.scope, actor, prompt, options, origin.target(), announce=True
        )
        await self.s.post_generation(generation)

    async def run_line_command(self, origin: Origin, command: LineCommand) -> None:
        """`queue`: the waiting videos of this workspace; `cancel <id>`: take one out of the line. Both private."""
        if command.verb is LineVerb.QUEUE:
            entries = await self.s.core.generations.line(origin.scope)
            await self.s.replier.ephemeral(origin, render.line_message(entries))
            return
        actor = await self.s.actors.get(origin)
        generation = await self.s.core.generations.cancel(origin.scope, actor, command.generation_id or "")
        await self.s.replier.ephemeral(origin, render.cancelled_message(generation))

    async def run_soracast(self, origin: Origin, text: str) -> None:
        """The `/soracast` grammar: queue | cancel <id> | limits [--monthly-usd …] [--daily-seconds …] | usage."""
        sub, _, rest = text.strip().partition(" ")
        sub = sub.lower() or "help"
        core = self.s.core
        if sub == "queue" and not rest.strip():
            await self.run_line_command(origin, LineCommand(LineVerb.QUEUE))
        elif sub == "cancel":
            generation_id = video_id_arg(rest, "/soracast cancel <video id>")
            await self.run_line_command(origin, LineCommand(LineVerb.CANCEL, generation_id))
        elif sub == "limits":
            changes = parse_limit_flags(rest)  # bad input is refused before anything is asked of Slack
            actor = await self.s.actors.get(origin)
            limits = await change_limits(core.budgets, origin.scope, actor, changes)
            await self.s.replier.ephemeral(origin, render.limits_message(limits, changed=not changes.empty))
        elif sub == "usage" and not rest.strip():
            actor = await self.s.actors.get(origin)
            usage = await core.budgets.usage(origin.scope, actor)
            await self.s.replier.ephemeral(origin, render.usage_message(usage))
        elif sub == "help":
            await self.s.replier.ephemeral(origin, render.help_message())
        else:
            prefix = f"There is no `/soracast {render.escape(text.strip()[:60])}`."
            await self.s.replier.ephemeral(origin, render.help_message(prefix))

    async def run_character(
        self, origin: Origin, text: str, *, trigger_id: str | None = None, files: list[dict[str, Any]] | None = None
    ) -> None:
        """The `/character` grammar: add | list | info | remove | rename | from | share | unshare | ask | requests |
        approve | decline | videos | takedown | instructions | notify | help."""
        sub, _, rest = text.strip().partition(" ")
        sub = sub.lower() or "help"
        core, scope = self.s.core, origin.scope
        words = _words(rest)
        if sub == "help":
            await self.s.replier.ephemeral(origin, render.help_message())
        elif sub == "list":
            await self.s.replier.ephemeral(origin, render.characters_message(await core.registry.list(scope)))
        elif sub == "info":
            character = await core.registry.get(scope, _arg(words, 0))
            files = await core.registry.files(character)
            stills = await self.s.stills.file_ids(origin.workspace, character, files.stills)
            await self.s.replier.ephemeral(origin, render.character_message(character, stills))
        elif sub in ("remove", "rm", "delete"):
            actor = await self.s.actors.get(origin)
            character = await core.registry.remove(scope, actor, _arg(words, 0))
            await self.s.replier.ephemeral(origin, render.removed_message(character))
        elif sub in ("rename", "mv"):
            actor = await self.s.actors.get(origin)
            character = await core.registry.rename(scope, actor, _arg(words, 0), _arg(words, 1))
            await self.s.replier.ephemeral(origin, render.renamed_message(_arg(words, 0).lstrip("@"), character))
        elif sub == "add":
            await self._add(origin, rest, trigger_id=trigger_id, files=files)
        elif sub == "from":
            await self._from_generation(origin, rest)
        elif sub in OWNER_WORDS:
            await self.owners.run(sub, origin, rest, trigger_id=trigger_id)
        else:
            prefix = f"There is no `/character {render.escape(sub)}`."
            await self.s.replier.ephemeral(origin, render.help_message(prefix))

    async def _add(
        self, origin: Origin, rest: str, *, trigger_id: str | None, files: list[dict[str, Any]] | None
    ) -> None:
        rest, confirmed = take_flag(rest, CONFIRM_FLAG)
        positional, options = split_options(rest, {"name", "start"})
        handle = _arg(_words(positional), 0)
        if files is not None:
            # A mention carries its clip as an attachment; a slash command opens the form with a file picker.
            video = first_video(files)
            if video is None:
                raise InvalidInput(
                    "There is no MP4 attached to that message.",
                    hint="Attach the clip to the same message that mentions soracast.",
                )
            start = parse_start(options.get("start"))
            await self.s.register_clip(
                origin, video, handle, name=options.get("name"), start=start, rights_confirmed=confirmed
            )
            return
        if trigger_id is None:
            raise InvalidInput("Adding a character needs a clip.", hint="Use `/character add @handle`.")
        # Everything that can be refused without the clip is refused before the form with the file picker opens.
        actor = await self.s.actors.get(origin)
        if handle:
            await self.s.core.registry.precheck(origin.scope, actor, handle, options.get("name"))
        else:
            await self.s.core.registry.check_can_register(origin.scope, actor)
        state = ModalState(origin=origin)
        view = render.character_modal(state.encode(), handle=handle, max_mb=self.s.core.registry.limits.max_mb)
        await (await self.s.client(origin)).views_open(trigger_id=trigger_id, view=view)

    async def _from_generation(self, origin: Origin, rest: str) -> None:
        rest, confirmed = take_flag(rest, CONFIRM_FLAG)
        positional, options = split_options(rest, {"name", "start"})
        words = _words(positional)
        actor = await self.s.actors.get(origin)
        character = await self.s.core.generations.character_from_generation(
            origin.scope,
            actor,
            _arg(words, 0),
            _arg(words, 1),
            name=options.get("name"),
            start=parse_start(options.get("start")),
            rights_confirmed=confirmed,
        )
        await self.s.replier.ephemeral(origin, render.registered_message(character))

    async def open_from_message(self, origin: Origin, message: dict[str, Any], trigger_id: str) -> None:
        """The shortcut: the character form, pre-filled with the message's MP4 (or the soracast video it shows)."""
        # Who may not register is told before anything is asked of Slack about the file.
        actor = await self.s.actors.get(origin)
        await self.s.core.registry.check_can_register(origin.scope, actor)
        video = first_video(message.get("files"))
        if video is not None:
            video = await self.s.files.describe(origin.workspace, video)
            self.s.files.check(video)
            state = ModalState(origin=origin, file=video.to_metadata())
            view = render.character_modal(state.encode(), clip_name=video.name)
        else:
            generation_id = render.generation_id_in(message.get("blocks") or [])
            if generation_id is None:
                text = "That message has no MP4 to make a character from. Use it on a message with a video clip."
                await self.s.replier.ephemeral(origin, render.note(text))
                return
            await self.s.core.generations.check_characters(origin.scope, actor, generation_id)
            state = ModalState(origin=origin, generation_id=generation_id)
            view = render.character_modal(state.encode(), generation_id=generation_id)
        await (await self.s.client(origin)).views_open(trigger_id=trigger_id, view=view)

"""Console command lines → core calls: the same words as in chat (`/character add`, `/sora`, `/remix` …)."""

from __future__ import annotations

import asyncio
import difflib
import shlex
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from adapters.console.render import ConsoleView, console_person
from adapters.console.sample import SAMPLE_SECONDS, make_sample_clip
from bot.app import Soracast
from bot.characters import media
from bot.chat import present
from bot.chat.commands import (
    CONFIRM_FLAG,
    LineVerb,
    parse_generation_command,
    parse_line_command,
    parse_share,
    parse_start,
    parse_switch,
    split_options,
    take_flag,
    video_id_arg,
)
from bot.errors import InvalidInput, SoracastError, UnknownHandle
from bot.models import Actor, DeliveryTarget, Generation, GenerationStatus, Scope
from bot.videos.limits import change_limits, parse_limit_flags

#: Console results have no chat channel; the core only needs some target to store.
CONSOLE_CHANNEL = "console"

DEMO_HANDLE = "mascot"
DEMO_NAME = "Sunny Mascot"
DEMO_PROMPT = f"@{DEMO_HANDLE} waving hello on a sunny beach"


class Outcome(Enum):
    """How a command line ended: the exit code of a script counts the failures."""

    OK = "ok"
    FAILED = "failed"
    QUIT = "quit"


@dataclass(frozen=True)
class CommandHelp:
    """One line of /help: how to type a command and what it does."""

    usage: str
    summary: str


HELP = (
    CommandHelp(
        '/character add @handle <clip.mp4> [--name "Name"] [--start 1.5] --confirm',
        "register a character from an MP4 (--confirm: you have the right to use its subject)",
    ),
    CommandHelp("/character list", "this workspace's characters"),
    CommandHelp("/character info @handle", "one character in detail: who may use it, its instructions, its rights"),
    CommandHelp("/character rename @old @new", "give a character a new handle"),
    CommandHelp("/character remove @handle", "forget a character"),
    CommandHelp(
        "/character from <video id> @handle [--start s] [--name ...] --confirm", "a character cut from a video"
    ),
    CommandHelp("/character share @handle everyone|only-me|@person …", "who may use your character"),
    CommandHelp("/character unshare @handle @person …", "take people off your character's list"),
    CommandHelp("/character ask @handle", "ask a character's owner to let you use it"),
    CommandHelp("/character requests", "requests to use your characters, waiting for your answer"),
    CommandHelp("/character approve|decline <request id>", "answer a request to use your character"),
    CommandHelp("/character videos @handle", "every video featuring your character (owner or admin)"),
    CommandHelp("/character takedown <video id>", "delete a video with your character: post, file, provider copy"),
    CommandHelp('/character instructions @handle "always wears the red scarf" | clear', "standing instructions"),
    CommandHelp("/character notify @handle on|off", "be told about other people's videos with your character"),
    CommandHelp("/sora <prompt with @handles> [--seconds 8] [--size 1280x720] [--model sora-2]", "make a video"),
    CommandHelp("/remix <video id> <prompt>", "a new video from a finished one"),
    CommandHelp("/extend <video id> <prompt> [--seconds 4]", "continue a finished video"),
    CommandHelp("/videos", "recent videos and their files"),
    CommandHelp("/queue", "this workspace's videos waiting in line (also /sora queue)"),
    CommandHelp("/cancel <video id>", "take a waiting video out of the line (also /sora cancel <video id>)"),
    CommandHelp("/usage", "what this workspace spent this month, per person and model"),
    CommandHelp(
        "/limits [--monthly-usd <USD|none|default>] [--daily-seconds <s|none|default>]",
        "show or change this workspace's budget limits",
    ),
    CommandHelp("/demo", "make a sample clip, register @mascot and render a video with it"),
    CommandHelp("/as <person> [--admin] · /as", "act as someone else (to try sharing), then as yourself again"),
    CommandHelp("/help", "this list"),
    CommandHelp("/quit", "leave (unfinished videos resume next time)"),
)

#: Top-level command words, for dispatch, suggestions and tab completion.
COMMANDS = (
    "character", "sora", "remix", "extend", "videos", "queue", "cancel", "usage", "limits", "demo", "as", "help",
    "quit", "exit",
)
CHARACTER_SUBCOMMANDS = (
    "add", "list", "info", "remove", "rename", "from", "share", "unshare", "ask", "requests", "approve", "decline",
    "videos", "takedown", "instructions", "notify",
)


def suggest(word: str, choices: tuple[str, ...]) -> str | None:
    """The closest known word to a mistyped one, if any is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if close:
        return close[0]
    prefixed = [c for c in choices if c.startswith(word)] if word else []
    return prefixed[0] if prefixed else None


def split_args(text: str, allowed: set[str]) -> tuple[list[str], dict[str, str]]:
    """Positional words (shell-like quoting, so paths may hold spaces) and `--option value` pairs."""
    # With no options allowed, a stray `--x` is just an extra word, which the usage check reports.
    words, options = split_options(text, allowed) if allowed else (text, {})
    try:
        return shlex.split(words), options
    except ValueError as exc:
        raise InvalidInput(f"Could not read that command: {exc}.", hint='Close any open "quotes".') from None


def _local_file(path: Path) -> tuple[Path, int]:
    """The clip a user named, with `~` expanded, and its size; a clear error when there is no such file."""
    clip = path.expanduser()
    if not clip.is_file():
        raise InvalidInput(
            f"There is no file at {clip}.", hint="Check the path (relative paths start from the current folder)."
        )
    return clip, clip.stat().st_size


def console_target() -> DeliveryTarget:
    """A fresh target per job: the core may record message ids on it, so it must not be shared."""
    return DeliveryTarget(channel_id=CONSOLE_CHANNEL)


def _usage(usage: str) -> InvalidInput:
    return InvalidInput("Those arguments do not fit that command.", hint=f"Usage: {usage}")


def person_id(token: str) -> str:
    """A person as typed in the terminal (`@ana` or `ana`): their id here."""
    return token.strip().lstrip("@")


class ConsoleCommands:
    """Parses one command line and calls the core for one console user (an admin of their own workspace), who
    may act as someone else with `/as` to try what other people see."""

    def __init__(self, core: Soracast, view: ConsoleView, scope: Scope, actor: Actor) -> None:
        self.core = core
        self.view = view
        self.scope = scope
        self.actor = actor
        self._me = actor

    async def run(self, line: str) -> Outcome:
        """Run one line; a SoracastError is shown the way chat shows it and makes the outcome FAILED."""
        try:
            return await self._dispatch(line.strip())
        except SoracastError as err:
            self.view.error(err)
            return Outcome.FAILED

    async def _dispatch(self, line: str) -> Outcome:
        head, _, rest = line.partition(" ")
        word = head.lstrip("/").lower()
        rest = rest.strip()
        if word in ("quit", "exit"):
            return Outcome.QUIT
        handler = {
            "character": self._character,
            "sora": self._sora,
            "remix": self._remix,
            "extend": self._extend,
            "videos": self._videos,
            "queue": self._queue,
            "cancel": self._cancel,
            "usage": self._spending,
            "limits": self._limits,
            "demo": self._demo,
            "as": self._act_as,
            "help": self._help,
        }.get(word)
        if handler is None:
            guess = suggest(word, COMMANDS)
            hint = f"Did you mean /{guess}? " if guess else ""
            raise InvalidInput(f"Unknown command {head!r}.", hint=hint + "Type /help to see every command.")
        return await handler(rest)

    # --- characters ------------------------------------------------------------------------------------------

    async def _character(self, rest: str) -> Outcome:
        sub, _, args = rest.partition(" ")
        sub = sub.lower()
        handler = {
            "add": self._character_add,
            "list": self._character_list,
            "info": self._character_info,
            "remove": self._character_remove,
            "rename": self._character_rename,
            "from": self._character_from,
            "share": self._character_share,
            "unshare": self._character_unshare,
            "ask": self._character_ask,
            "requests": self._character_requests,
            "approve": self._character_approve,
            "decline": self._character_decline,
            "videos": self._character_videos,
            "takedown": self._character_takedown,
            "instructions": self._character_instructions,
            "notify": self._character_notify,
        }.get(sub)
        if handler is None:
            guess = suggest(sub, CHARACTER_SUBCOMMANDS) if sub else None
            lead = f"Unknown /character subcommand {sub!r}." if sub else "/character needs a subcommand."
            hint = f"Did you mean /character {guess}? " if guess else ""
            raise InvalidInput(lead, hint=hint + "Choose one of: " + ", ".join(CHARACTER_SUBCOMMANDS) + ".")
        return await handler(args.strip())

    async def _character_add(self, args: str) -> Outcome:
        usage = '/character add @handle <clip.mp4> [--name "Name"] [--start 1.5] --confirm'
        args, confirmed = take_flag(args, CONFIRM_FLAG)
        words, options = split_args(args, {"name", "start"})
        if len(words) != 2:
            raise _usage(usage)
        handle, raw_path = words
        start = parse_start(options.get("start"))
        await self._register(handle, Path(raw_path), options.get("name"), start, confirmed)
        return Outcome.OK

    async def _register(self, handle: str, clip: Path, name: str | None, start: float, confirmed: bool) -> None:
        # Refusals that need no file (a reserved or taken handle, a full workspace, no rights confirmation) come
        # before the file.
        await self.core.registry.precheck(self.scope, self.actor, handle, name, rights_confirmed=confirmed)
        clip, size = await asyncio.to_thread(_local_file, clip)
        # The same up-front check chat adapters run on an attachment before downloading it.
        media.check_upload(clip.name, None, size, self.core.registry.limits)
        self.view.info(f"Preparing {clip.name} and registering @{handle.lstrip('@')}…")
        character = await self.core.registry.register(
            self.scope, self.actor, handle, clip, name=name, start=start, rights_confirmed=confirmed
        )
        self.view.success(f"Registered @{character.handle} as “{character.name}”. Try: /sora @{character.handle} …")

    async def _character_list(self, args: str) -> Outcome:
        if args:
            raise _usage("/character list")
        self.view.characters(await self.core.registry.list(self.scope))
        return Outcome.OK

    async def _character_info(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) != 1:
            raise _usage("/character info @handle")
        character = await self.core.registry.get(self.scope, words[0])
        self.view.character(character, await self.core.registry.files(character))
        return Outcome.OK

    async def _character_remove(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) != 1:
            raise _usage("/character remove @handle")
        removed = await self.core.registry.remove(self.scope, self.actor, words[0])
        self.view.success(f"Removed @{removed.handle}.")
        return Outcome.OK

    async def _character_rename(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) != 2:
            raise _usage("/character rename @old @new")
        renamed = await self.core.registry.rename(self.scope, self.actor, words[0], words[1])
        self.view.success(f"@{words[0].lstrip('@').lower()} is now @{renamed.handle}.")
        return Outcome.OK

    async def _character_from(self, args: str) -> Outcome:
        usage = "/character from <video id> @handle [--start s] [--name ...] --confirm"
        args, confirmed = take_flag(args, CONFIRM_FLAG)
        words, options = split_args(args, {"name", "start"})
        if len(words) != 2:
            raise _usage(usage)
        generation_id, handle = words
        start = parse_start(options.get("start"))
        self.view.info(f"Cutting a clip from {generation_id} and registering @{handle.lstrip('@')}…")
        character = await self.core.generations.character_from_generation(
            self.scope,
            self.actor,
            generation_id,
            handle,
            name=options.get("name"),
            start=start,
            rights_confirmed=confirmed,
        )
        self.view.success(f"Registered @{character.handle} as “{character.name}” from video {generation_id}.")
        return Outcome.OK

    # --- who a character belongs to ------------------------------------------------------------------------

    async def _character_share(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) < 2:
            raise _usage("/character share @handle everyone|only-me|@person …")
        handle, *rest = words
        sharing, people = parse_share(rest)
        if sharing is not None:
            character = await self.core.access.set_sharing(self.scope, self.actor, handle, sharing)
        else:
            character = await self.core.access.share(self.scope, self.actor, handle, [person_id(p) for p in people])
        self.view.success(present.sharing_changed_text(character, person=console_person))
        return Outcome.OK

    async def _character_unshare(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) < 2:
            raise _usage("/character unshare @handle @person …")
        handle, *people = words
        character = await self.core.access.unshare(self.scope, self.actor, handle, [person_id(p) for p in people])
        self.view.success(present.sharing_changed_text(character, person=console_person))
        return Outcome.OK

    async def _character_ask(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) != 1:
            raise _usage("/character ask @handle")
        outcome = await self.core.requests.ask(self.scope, self.actor, words[0])
        text = present.asked_text(outcome.request, outcome.character, new=outcome.new, person=console_person)
        self.view.success(text)
        return Outcome.OK

    async def _character_requests(self, args: str) -> Outcome:
        if args:
            raise _usage("/character requests")
        self.view.requests(await self.core.requests.waiting(self.scope, self.actor))
        return Outcome.OK

    async def _character_approve(self, args: str) -> Outcome:
        return await self._decide(args, approve=True)

    async def _character_decline(self, args: str) -> Outcome:
        return await self._decide(args, approve=False)

    async def _decide(self, args: str, *, approve: bool) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) != 1:
            raise _usage(f"/character {'approve' if approve else 'decline'} <request id>")
        decision = await self.core.requests.decide(self.actor, words[0], approve, scope=self.scope)
        self.view.success(present.decided_text(decision.request, decision.character, person=console_person))
        return Outcome.OK

    async def _character_videos(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) != 1:
            raise _usage("/character videos @handle")
        found = await self.core.character_videos.list(self.scope, self.actor, words[0])
        self.view.character_videos(found.character, found.videos)
        return Outcome.OK

    async def _character_takedown(self, args: str) -> Outcome:
        generation_id = video_id_arg(args, "/character takedown <video id>")
        deleted = await self.core.generations.delete(self.scope, self.actor, generation_id)
        self.view.success(present.taken_down_text(deleted))
        return Outcome.OK

    async def _character_instructions(self, args: str) -> Outcome:
        handle, _, text = args.strip().partition(" ")
        if not handle or not text.strip():
            raise _usage('/character instructions @handle "always wears the red scarf" | clear')
        character = await self.core.registry.set_instructions(self.scope, self.actor, handle, text)
        self.view.success(present.instructions_changed_text(character))
        return Outcome.OK

    async def _character_notify(self, args: str) -> Outcome:
        words, _ = split_args(args, set())
        if len(words) != 2:
            raise _usage("/character notify @handle on|off")
        character = await self.core.registry.set_notify(self.scope, self.actor, words[0], parse_switch(words[1]))
        self.view.success(present.notify_changed_text(character))
        return Outcome.OK

    async def _act_as(self, rest: str) -> Outcome:
        """`/as ana [--admin]`: act as someone else in this workspace; `/as` alone: as yourself again."""
        rest, admin = take_flag(rest, "admin")
        words, _ = split_args(rest, set())
        if len(words) > 1:
            raise _usage("/as <person> [--admin] · /as")
        if not words or person_id(words[0]) == self._me.id:
            self.actor = self._me
        else:
            name = person_id(words[0])
            self.actor = Actor(id=name, display_name=name, is_admin=admin)
        role = " (an admin)" if self.actor.is_admin else ""
        self.view.info(f"Acting as {self.actor.id}{role}.")
        return Outcome.OK

    # --- videos ----------------------------------------------------------------------------------------------

    async def _sora(self, rest: str) -> Outcome:
        line_command = parse_line_command(rest)
        if line_command is not None:
            if line_command.verb is LineVerb.QUEUE:
                return await self._queue("")
            return await self._cancel(line_command.generation_id or "")
        prompt, options = parse_generation_command(rest)
        generation = await self.core.generations.generate(
            self.scope, self.actor, prompt, options, console_target(), announce=True
        )
        return await self._follow(generation)

    async def _remix(self, rest: str) -> Outcome:
        generation_id, _, text = rest.partition(" ")
        prompt, options = parse_generation_command(text)
        if not generation_id or not prompt:
            raise _usage("/remix <video id> <prompt>")
        if options.model_dump(exclude_none=True):
            # The API remixes with the original's model, length and size; say so rather than drop the flag.
            raise InvalidInput(
                "A remix keeps the original video's model, length and size.",
                hint="Leave out --seconds/--size/--model, or make a new video with /sora.",
            )
        generation = await self.core.generations.remix(
            self.scope, self.actor, generation_id, prompt, console_target(), announce=True
        )
        return await self._follow(generation)

    async def _extend(self, rest: str) -> Outcome:
        generation_id, _, text = rest.partition(" ")
        prompt, options = split_options(text, {"seconds"})
        if not generation_id or not prompt:
            raise _usage("/extend <video id> <prompt> [--seconds 4]")
        generation = await self.core.generations.extend(
            self.scope,
            self.actor,
            generation_id,
            prompt,
            console_target(),
            seconds=options.get("seconds"),
            announce=True,
        )
        return await self._follow(generation)

    async def _follow(self, generation: Generation) -> Outcome:
        """Show a submitted job until the Notifier has reported its end; FAILED if the video failed."""
        self.view.submitted(generation)
        self.view.watch(generation)
        # Submitted with `announce`: the core held its reports until the lines above were printed.
        await self.core.generations.attach_message(generation.id, None)
        try:
            final = await self.core.generations.wait_finished(generation.id)
        finally:
            # Normally the Notifier already closed the bar; this covers an interrupted wait.
            self.view.unwatch(generation.id)
        return Outcome.OK if final.status is GenerationStatus.COMPLETED else Outcome.FAILED

    async def _videos(self, rest: str) -> Outcome:
        if rest:
            raise _usage("/videos")
        self.view.videos(await self.core.generations.recent(self.scope))
        return Outcome.OK

    # --- the line and budgets ----------------------------------------------------------------------------------

    async def _queue(self, rest: str) -> Outcome:
        if rest:
            raise _usage("/queue")
        self.view.queue(await self.core.generations.line(self.scope))
        return Outcome.OK

    async def _cancel(self, rest: str) -> Outcome:
        generation_id = video_id_arg(rest, "/cancel <video id>")
        generation = await self.core.generations.cancel(self.scope, self.actor, generation_id)
        self.view.success(present.cancelled_text(generation))
        return Outcome.OK

    async def _spending(self, rest: str) -> Outcome:
        if rest:
            raise _usage("/usage")
        self.view.usage(await self.core.budgets.usage(self.scope, self.actor))
        return Outcome.OK

    async def _limits(self, rest: str) -> Outcome:
        limits = await change_limits(self.core.budgets, self.scope, self.actor, parse_limit_flags(rest))
        self.view.limits(limits)
        return Outcome.OK

    # --- newcomers -------------------------------------------------------------------------------------------

    async def _demo(self, rest: str) -> Outcome:
        if rest:
            raise _usage("/demo")
        try:
            existing = await self.core.registry.get(self.scope, DEMO_HANDLE)
        except UnknownHandle:
            existing = None
        if existing is not None:
            self.view.step(1, 3, "Sample clip: not needed")
            self.view.step(2, 3, f"@{DEMO_HANDLE} is already registered as “{existing.name}”; reusing it")
        else:
            self.view.step(1, 3, f"Drawing a sample clip of a mascot ({SAMPLE_SECONDS:g} s)")
            clip = await asyncio.to_thread(make_sample_clip, self.core.settings.data_dir / "demo" / "mascot.mp4")
            self.view.info(f"Saved to {clip}")
            self.view.step(2, 3, f"Registering @{DEMO_HANDLE} from it")
            # The sample is soracast's own drawing: its right to use it is the console user's.
            await self._register(DEMO_HANDLE, clip, DEMO_NAME, 0.0, confirmed=True)
        self.view.step(3, 3, f"Rendering /sora {DEMO_PROMPT}")
        return await self._sora(DEMO_PROMPT)

    async def _help(self, rest: str) -> Outcome:
        self.view.help([(h.usage, h.summary) for h in HELP])
        return Outcome.OK

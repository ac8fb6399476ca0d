"""Slash commands and the "Make character" message menu: Discord events → core calls.

Every handler acknowledges first (private for character commands, a public "thinking…" for /sora, or a modal)
and only then does anything slow; answers come as followups or edits of the acknowledged message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import discord
from discord import app_commands

from adapters.discord import options, render, views
from adapters.discord.files import ClipDownloads, check_attachment, is_video
from adapters.discord.interactions import PendingClips
from adapters.discord.notifier import DiscordNotifier
from adapters.discord.origin import actor_of, scope_of, target_of
from adapters.discord.replies import (
    NO_MENTIONS,
    defer_private,
    defer_public,
    guarded,
    log_unexpected,
    refuse_malformed,
    reply_private,
)
from bot.actions import VideoAction, decode_action, encode_action
from bot.app import Soracast
from bot.chat import present
from bot.chat.commands import parse_share, parse_start
from bot.config import Settings
from bot.errors import InvalidInput
from bot.models import BudgetKind, GenerationOptions
from bot.videos.limits import change_limits, parse_limit_changes

log = logging.getLogger(__name__)

# The `@partial` being typed at the very end of a prompt (after a space or at the start).
_TRAILING_MENTION = re.compile(r"(?:^|(?<=\s))@([A-Za-z0-9_.]*)$")

#: Discord's limits for autocomplete: 25 choices, names and values of at most 100 characters.
_CHOICES_MAX = 25
_CHOICE_TEXT_MAX = 100


def _choices(values: list[tuple[str, str]]) -> list[app_commands.Choice[str]]:
    """(label, value) pairs as Discord choices, within its limits."""
    return [
        app_commands.Choice(name=render.clip(label, _CHOICE_TEXT_MAX), value=value)
        for label, value in values[:_CHOICES_MAX]
    ]


class Commands:
    """The handlers behind `/character …`, `/sora`, `/soracast …` and the message menu."""

    def __init__(
        self,
        core: Soracast,
        settings: Settings,
        notifier: DiscordNotifier,
        downloads: ClipDownloads,
        pending: PendingClips,
        bot_user_id: Callable[[], int | None],
    ) -> None:
        self._core = core
        self._settings = settings
        self._notifier = notifier
        self._downloads = downloads
        self._pending = pending
        self._bot_user_id = bot_user_id

    # --- /character ----------------------------------------------------------------------------------------

    async def character_add(
        self,
        interaction: discord.Interaction,
        handle: str,
        clip: discord.Attachment,
        confirm: bool,
        name: str | None,
        start: str | None,
    ) -> None:
        async with guarded(interaction, "character add"):
            handle, clip = options.text(handle, "handle"), options.attachment(clip, "clip")
            confirm = options.flag(confirm, "confirm")
            name, start = options.optional_text(name, "name"), options.optional_text(start, "start")
            await defer_private(interaction)
            scope, actor = scope_of(interaction), actor_of(interaction)
            # Everything that can refuse without the file (the rights confirmation too) runs before the download.
            seconds = parse_start(start)
            await self._core.registry.precheck(scope, actor, handle, name, rights_confirmed=confirm)
            async with self._downloads.fetch(clip) as path:
                character = await self._core.registry.register(
                    scope,
                    actor,
                    handle,
                    path,
                    name=name,
                    start=seconds,
                    source_ref=clip.filename,
                    rights_confirmed=confirm,
                )
            await reply_private(interaction, render.character_embed(character, f"Registered @{character.handle}"))

    async def character_list(self, interaction: discord.Interaction) -> None:
        async with guarded(interaction, "character list"):
            await defer_private(interaction)
            characters = await self._core.registry.list(scope_of(interaction))
            view = views.list_view(0, render.page_count(len(characters)))
            await reply_private(interaction, render.character_page(characters, 0), view)

    async def character_info(self, interaction: discord.Interaction, handle: str) -> None:
        async with guarded(interaction, "character info"):
            handle = options.text(handle, "handle")
            await defer_private(interaction)
            character = await self._core.registry.get(scope_of(interaction), handle)
            files = await self._core.registry.files(character)
            stills = [
                discord.File(path, filename=render.still_filename(character, index))
                for index, path in enumerate(files.stills, 1)
            ]
            embed = render.character_embed(character, still=stills[0].filename if stills else None)
            await reply_private(interaction, embed, files=stills)

    async def character_remove(self, interaction: discord.Interaction, handle: str) -> None:
        async with guarded(interaction, "character remove"):
            handle = options.text(handle, "handle")
            await defer_private(interaction)
            character = await self._core.registry.remove(scope_of(interaction), actor_of(interaction), handle)
            await reply_private(interaction, render.removed_embed(character))

    async def character_rename(self, interaction: discord.Interaction, handle: str, new_handle: str) -> None:
        async with guarded(interaction, "character rename"):
            handle, new_handle = options.text(handle, "handle"), options.text(new_handle, "new_handle")
            await defer_private(interaction)
            character = await self._core.registry.rename(
                scope_of(interaction), actor_of(interaction), handle, new_handle
            )
            await reply_private(interaction, render.character_embed(character, f"Renamed to @{character.handle}"))

    # --- who a character belongs to ---------------------------------------------------------------------------

    async def character_share(
        self, interaction: discord.Interaction, handle: str, to: str | None, person: discord.abc.User | None
    ) -> None:
        async with guarded(interaction, "character share"):
            handle, to = options.text(handle, "handle"), options.optional_text(to, "to")
            person = options.optional_user(person, "person")
            if (to is None) == (person is None):
                raise InvalidInput(
                    "Choose who may use it: `to` (everyone or only me) or one `person`.",
                    hint="e.g. `/character share handle:mascot to:everyone` or `… person:@ana`.",
                )
            await defer_private(interaction)
            scope, actor = scope_of(interaction), actor_of(interaction)
            if to is not None:
                sharing, _ = parse_share([to])
                assert sharing is not None  # `to` is one of the command's choices
                character = await self._core.access.set_sharing(scope, actor, handle, sharing)
            else:
                assert person is not None
                character = await self._core.access.share(scope, actor, handle, [str(person.id)])
            await reply_private(interaction, render.sharing_embed(character))

    async def character_unshare(
        self, interaction: discord.Interaction, handle: str, person: discord.abc.User
    ) -> None:
        async with guarded(interaction, "character unshare"):
            handle, person = options.text(handle, "handle"), options.user(person, "person")
            await defer_private(interaction)
            character = await self._core.access.unshare(
                scope_of(interaction), actor_of(interaction), handle, [str(person.id)]
            )
            await reply_private(interaction, render.sharing_embed(character))

    async def character_ask(self, interaction: discord.Interaction, handle: str) -> None:
        async with guarded(interaction, "character ask"):
            handle = options.text(handle, "handle")
            await defer_private(interaction)
            outcome = await self._core.requests.ask(scope_of(interaction), actor_of(interaction), handle)
            await reply_private(interaction, render.asked_embed(outcome))

    async def character_requests(self, interaction: discord.Interaction) -> None:
        async with guarded(interaction, "character requests"):
            await defer_private(interaction)
            waiting = await self._core.requests.waiting(scope_of(interaction), actor_of(interaction))
            shown = [r.id for r, _ in waiting[: render.REQUESTS_SHOWN]]
            await reply_private(interaction, render.requests_embed(waiting), views.requests_view(shown))
            for request_id in shown:
                await self._core.requests.seen(request_id)

    async def character_videos(self, interaction: discord.Interaction, handle: str) -> None:
        async with guarded(interaction, "character videos"):
            handle = options.text(handle, "handle")
            await defer_private(interaction)
            found = await self._core.character_videos.list(scope_of(interaction), actor_of(interaction), handle)
            shown = [g.id for g in found.videos[: render.VIDEOS_SHOWN]]
            await reply_private(interaction, render.character_videos_embed(found), views.delete_view(shown))

    async def character_takedown(self, interaction: discord.Interaction, video: str) -> None:
        async with guarded(interaction, "character takedown"):
            video = options.text(video, "video")
            await defer_private(interaction)
            generation = await self._core.generations.delete(scope_of(interaction), actor_of(interaction), video)
            await reply_private(interaction, render.taken_down_embed(generation))

    async def character_instructions(self, interaction: discord.Interaction, handle: str, text: str) -> None:
        async with guarded(interaction, "character instructions"):
            handle, text = options.text(handle, "handle"), options.text(text, "text")
            await defer_private(interaction)
            character = await self._core.registry.set_instructions(
                scope_of(interaction), actor_of(interaction), handle, text
            )
            await reply_private(interaction, render.instructions_embed(character))

    async def character_notify(self, interaction: discord.Interaction, handle: str, on: bool) -> None:
        async with guarded(interaction, "character notify"):
            handle, on = options.text(handle, "handle"), options.flag(on, "on")
            await defer_private(interaction)
            character = await self._core.registry.set_notify(scope_of(interaction), actor_of(interaction), handle, on)
            await reply_private(interaction, render.notify_embed(character))

    async def show_unseen_requests(self, interaction: discord.Interaction) -> None:
        """Discord's fallback for a member whose direct messages are closed to the bot: what could not reach them
        privately — requests to use their characters (with Approve / Decline) and notes about videos made with
        them — is shown privately after their next soracast command, once."""
        if interaction.guild_id is None or not interaction.response.is_done():
            return
        scope, member = scope_of(interaction), str(interaction.user.id)
        try:
            unseen = (await self._core.requests.unseen(scope, member))[: render.REQUESTS_SHOWN]
            if unseen:
                await interaction.followup.send(
                    ephemeral=True,
                    embed=render.requests_embed(unseen),
                    view=views.requests_view([r.id for r, _ in unseen]),  # type: ignore[arg-type]
                    allowed_mentions=NO_MENTIONS,
                )
                for request, _ in unseen:
                    await self._core.requests.seen(request.id)
            missed = await self._core.generations.notices.missed(scope, member)
            if missed:
                embed = render.owner_notice_embed(missed)
                await interaction.followup.send(ephemeral=True, embed=embed, allowed_mentions=NO_MENTIONS)
        except Exception as exc:
            log.warning("could not show what %s missed: %s", interaction.user.id, type(exc).__name__)

    async def complete_handle(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """This server's handles matching what is typed so far."""
        if interaction.guild_id is None or not isinstance(current, str):
            return []
        found = await self._core.registry.complete(scope_of(interaction), current, limit=_CHOICES_MAX)
        return [
            app_commands.Choice(name=render.clip(f"@{c.handle} — {c.name}", _CHOICE_TEXT_MAX), value=c.handle)
            for c in found
        ]

    # --- /sora ---------------------------------------------------------------------------------------------

    async def sora(
        self,
        interaction: discord.Interaction,
        prompt: str,
        seconds: str | None,
        size: str | None,
        model: str | None,
    ) -> None:
        async with guarded(interaction, "sora"):
            # Checked before the public "thinking…": a refusal here is private from the start.
            prompt = options.text(prompt, "prompt")
            message_id = await defer_public(interaction)
            generation = await self._core.generations.generate(
                scope_of(interaction),
                actor_of(interaction),
                prompt,
                GenerationOptions(seconds=seconds, size=size, model=model),
                target_of(interaction, message_id),
                announce=True,
            )
            await self._notifier.announce(interaction, generation)
        await self.show_unseen_requests(interaction)

    async def complete_prompt(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        """Complete the `@partial` being typed at the end of a prompt with this server's handles."""
        if interaction.guild_id is None or not isinstance(current, str):
            return []
        match = _TRAILING_MENTION.search(current)
        if match is None:
            return []
        head, partial = current[: match.start()], match.group(1)
        found = await self._core.registry.complete(scope_of(interaction), partial, limit=_CHOICES_MAX)
        choices = []
        for character in found:
            value = f"{head}@{character.handle}"
            if len(value) > _CHOICE_TEXT_MAX:
                continue  # Discord refuses longer values; the user keeps typing instead
            label = render.clip(f"@{character.handle} ({character.name}) — {value}", _CHOICE_TEXT_MAX)
            choices.append(app_commands.Choice(name=label, value=value))
        return choices

    # --- /soracast config ----------------------------------------------------------------------------------

    async def configure(self, interaction: discord.Interaction, register_role: discord.Role | None) -> None:
        async with guarded(interaction, "soracast config"):
            register_role = options.optional_role(register_role, "register_role")
            await defer_private(interaction)
            settings = await self._core.registry.configure(
                scope_of(interaction),
                actor_of(interaction),
                register_role_id=str(register_role.id) if register_role is not None else None,
            )
            await reply_private(interaction, render.settings_embed(settings))

    # --- /soracast queue | cancel | limits | usage ------------------------------------------------------------

    async def queue(self, interaction: discord.Interaction) -> None:
        async with guarded(interaction, "soracast queue"):
            await defer_private(interaction)
            entries = await self._core.generations.line(scope_of(interaction))
            await reply_private(interaction, render.line_embed(entries))

    async def cancel(self, interaction: discord.Interaction, video: str) -> None:
        async with guarded(interaction, "soracast cancel"):
            video = options.text(video, "video")
            await defer_private(interaction)
            generation = await self._core.generations.cancel(scope_of(interaction), actor_of(interaction), video)
            await reply_private(interaction, render.cancelled_embed(generation))

    async def complete_cancellable(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The waiting videos this member may cancel (their own; every one for an admin), matching what is typed."""
        if interaction.guild_id is None or not isinstance(current, str):
            return []
        typed = current.strip().strip("`").lower()
        entries = await self._core.generations.cancellable(scope_of(interaction), actor_of(interaction))
        found = [(e.generation, present.ordinal(e.place.position)) for e in entries]
        return _choices(
            [
                (f"{g.id} · {place} in line · {g.prompt}", g.id)
                for g, place in found
                if typed in g.id or typed in g.prompt.lower()
            ]
        )

    async def limits(
        self, interaction: discord.Interaction, monthly_usd: str | None, daily_seconds: str | None
    ) -> None:
        async with guarded(interaction, "soracast limits"):
            monthly_usd = options.optional_text(monthly_usd, "monthly_usd")
            daily_seconds = options.optional_text(daily_seconds, "daily_seconds")
            # A value that is not a limit is refused before anything is acknowledged or changed.
            changes = parse_limit_changes(
                {BudgetKind.MONTHLY_USD: monthly_usd, BudgetKind.DAILY_SECONDS: daily_seconds}
            )
            await defer_private(interaction)
            limits = await change_limits(self._core.budgets, scope_of(interaction), actor_of(interaction), changes)
            await reply_private(interaction, render.limits_embed(limits, changed=not changes.empty))

    async def usage(self, interaction: discord.Interaction) -> None:
        async with guarded(interaction, "soracast usage"):
            await defer_private(interaction)
            usage = await self._core.budgets.usage(scope_of(interaction), actor_of(interaction))
            await reply_private(interaction, render.usage_embed(usage))

    # --- "Make character" on a message ---------------------------------------------------------------------

    async def make_character_menu(self, interaction: discord.Interaction, message: discord.Message) -> None:
        async with guarded(interaction, "make character menu"):
            # Who may not register is told now, before a form asks for a handle.
            await self._core.registry.check_can_register(scope_of(interaction), actor_of(interaction))
            generation_id = self._generation_of(message)
            if generation_id is not None:
                # A video with a character the member may not use is refused now, not after the form.
                await self._core.generations.check_characters(
                    scope_of(interaction), actor_of(interaction), generation_id
                )
                custom_id = encode_action(VideoAction.CHARACTER, generation_id)
                await interaction.response.send_modal(views.character_modal(custom_id, ask_name=True))
                return
            videos = [a for a in message.attachments if is_video(a)] or list(message.attachments)
            if not videos:
                text = "That message has no video attached. Use Make character on a message with an MP4."
                await reply_private(interaction, render.notice_embed(text))
                return
            # Refuse a wrong file now, before asking for a handle; the download waits for the form.
            check_attachment(videos[0], self._core.registry.limits)
            key = await self._pending.put(interaction.id, videos[0])
            await interaction.response.send_modal(views.character_modal(views.CLIP_FORM_PREFIX + key, ask_name=True))

    def _generation_of(self, message: discord.Message) -> str | None:
        """The generation a message of ours shows, read from its buttons' custom ids."""
        if message.author.id != self._bot_user_id():
            return None
        for row in message.components:
            for child in getattr(row, "children", ()):
                custom_id = getattr(child, "custom_id", None)
                decoded = decode_action(custom_id) if custom_id else None
                if decoded is not None:
                    return decoded[1]
        return None

    # --- registration --------------------------------------------------------------------------------------

    def register(self, tree: app_commands.CommandTree) -> None:
        """Add every command to the tree (synced to Discord by `app.run_discord`)."""
        tree.add_command(self._character_group())
        tree.add_command(self._sora_command())
        tree.add_command(self._soracast_group())
        tree.add_command(self._make_character_menu())
        tree.error(self._tree_error)

    def _character_group(self) -> app_commands.Group:
        group = app_commands.Group(name="character", description="Reusable @handle characters", guild_only=True)
        limit = self._settings.max_upload_mb

        @group.command(name="add", description="Register a character from a short video clip")
        @app_commands.describe(
            handle="The @handle to use in prompts, e.g. mascot",
            clip=f"An MP4 showing the character (up to {limit:g} MB)",
            confirm="True: you have the right to use its subject (the person agreed, or your pet, mascot, product)",
            name="The name the video model is told (default: from the handle)",
            start="Second of the clip to start from, e.g. 1.5",
        )
        async def add(
            interaction: discord.Interaction,
            handle: str,
            clip: discord.Attachment,
            confirm: bool,
            name: str | None = None,
            start: str | None = None,
        ) -> None:
            await self.character_add(interaction, handle, clip, confirm, name, start)
            await self.show_unseen_requests(interaction)

        @group.command(name="list", description="The characters of this server")
        async def list_(interaction: discord.Interaction) -> None:
            await self.character_list(interaction)
            await self.show_unseen_requests(interaction)

        @group.command(name="info", description="Show one character: who may use it, its instructions, its rights")
        async def info(interaction: discord.Interaction, handle: str) -> None:
            await self.character_info(interaction, handle)
            await self.show_unseen_requests(interaction)

        @group.command(name="remove", description="Forget a character (its owner or an admin)")
        async def remove(interaction: discord.Interaction, handle: str) -> None:
            await self.character_remove(interaction, handle)

        @group.command(name="rename", description="Give a character a new handle (its owner or an admin)")
        async def rename(interaction: discord.Interaction, handle: str, new_handle: str) -> None:
            await self.character_rename(interaction, handle, new_handle)

        @group.command(name="share", description="Who may use your character: everyone, only you, or a person")
        @app_commands.describe(to="Everyone in this server, or only you (and admins)", person="Let this person use it")
        @app_commands.choices(
            to=[
                app_commands.Choice(name="everyone", value="everyone"),
                app_commands.Choice(name="only me", value="only-me"),
            ]
        )
        async def share(
            interaction: discord.Interaction,
            handle: str,
            to: app_commands.Choice[str] | None = None,
            person: discord.User | None = None,
        ) -> None:
            await self.character_share(interaction, handle, to.value if to else None, person)

        @group.command(name="unshare", description="Take a person off the people who may use your character")
        async def unshare(interaction: discord.Interaction, handle: str, person: discord.User) -> None:
            await self.character_unshare(interaction, handle, person)

        @group.command(name="ask", description="Ask a character's owner to let you use it")
        async def ask(interaction: discord.Interaction, handle: str) -> None:
            await self.character_ask(interaction, handle)

        @group.command(name="requests", description="Requests to use your characters, waiting for your answer")
        async def requests(interaction: discord.Interaction) -> None:
            await self.character_requests(interaction)

        @group.command(name="videos", description="Every video featuring your character (its owner or an admin)")
        async def videos(interaction: discord.Interaction, handle: str) -> None:
            await self.character_videos(interaction, handle)
            await self.show_unseen_requests(interaction)

        @group.command(name="takedown", description="Delete a video with your character: post, file, provider copy")
        @app_commands.describe(video="The video's id, e.g. gabc23def (see /character videos)")
        async def takedown(interaction: discord.Interaction, video: str) -> None:
            await self.character_takedown(interaction, video)

        @group.command(name="instructions", description="Standing instructions for every video with your character")
        @app_commands.describe(text="e.g. always wears the red scarf; never speaks — or clear")
        async def instructions(interaction: discord.Interaction, handle: str, text: str) -> None:
            await self.character_instructions(interaction, handle, text)

        @group.command(name="notify", description="Be told privately about other people's videos with your character")
        async def notify(interaction: discord.Interaction, handle: str, on: bool) -> None:
            await self.character_notify(interaction, handle, on)

        for command in (info, remove, rename, share, unshare, ask, videos, instructions, notify):
            command.autocomplete("handle")(self.complete_handle)
        return group

    def _sora_command(self) -> app_commands.Command:  # type: ignore[type-arg]
        options = self._core.catalog.option_choices()

        @app_commands.command(name="sora", description="Make a video; use @handles for characters")
        @app_commands.guild_only()
        @app_commands.describe(
            prompt="What happens, e.g. @mascot surfing at sunset",
            seconds="Length in seconds",
            size="Width x height",
            model="Video model",
        )
        @app_commands.choices(
            seconds=_choices(options.seconds), size=_choices(options.sizes), model=_choices(options.models)
        )
        @app_commands.autocomplete(prompt=self.complete_prompt)
        async def sora(
            interaction: discord.Interaction,
            prompt: str,
            seconds: app_commands.Choice[str] | None = None,
            size: app_commands.Choice[str] | None = None,
            model: app_commands.Choice[str] | None = None,
        ) -> None:
            await self.sora(
                interaction,
                prompt,
                seconds.value if seconds else None,
                size.value if size else None,
                model.value if model else None,
            )

        return sora

    def _make_character_menu(self) -> app_commands.ContextMenu:
        @app_commands.context_menu(name="Make character")
        @app_commands.guild_only()
        async def make_character(interaction: discord.Interaction, message: discord.Message) -> None:
            await self.make_character_menu(interaction, message)

        return make_character

    def _soracast_group(self) -> app_commands.Group:
        # Everyone sees the group (queue and cancel are for everyone); the core refuses what is for admins only.
        group = app_commands.Group(
            name="soracast", description="The line, budgets and settings of soracast in this server", guild_only=True
        )

        @group.command(name="config", description="Limit who may register characters (admins only)")
        @app_commands.describe(register_role="Only this role (and admins) may register; leave out to allow everyone")
        async def config(interaction: discord.Interaction, register_role: discord.Role | None = None) -> None:
            await self.configure(interaction, register_role)

        @group.command(name="queue", description="The videos of this server waiting in line")
        async def queue(interaction: discord.Interaction) -> None:
            await self.queue(interaction)

        @group.command(name="cancel", description="Take a waiting video out of the line (yours; admins: any)")
        @app_commands.describe(video="The video's id, e.g. gabc23def")
        @app_commands.autocomplete(video=self.complete_cancellable)
        async def cancel(interaction: discord.Interaction, video: str) -> None:
            await self.cancel(interaction, video)

        @group.command(name="limits", description="This server's budget limits; admins change them")
        @app_commands.describe(
            monthly_usd="USD a month for the server; none lifts the limit, default restores the bot's",
            daily_seconds="Seconds of video per person a day; none lifts it, default restores the bot's",
        )
        async def limits(
            interaction: discord.Interaction, monthly_usd: str | None = None, daily_seconds: str | None = None
        ) -> None:
            await self.limits(interaction, monthly_usd, daily_seconds)

        @group.command(name="usage", description="What this server spent this month, per person and model (admins)")
        async def usage(interaction: discord.Interaction) -> None:
            await self.usage(interaction)

        return group

    async def _tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        # Reached only for failures outside the handlers' guard: discord.py refusing the interaction itself.
        what = f"command {interaction.command.qualified_name if interaction.command else '?'}"
        if options.is_malformed(error):
            await refuse_malformed(interaction, what, error)
            return
        log_unexpected(what, error)
        if not interaction.response.is_done():
            await interaction.response.send_message(embed=render.unexpected_embed(), ephemeral=True)

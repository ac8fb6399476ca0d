"""Buttons under videos and the forms they open: Discord component and modal interactions → core calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import discord

from adapters.discord import render, views
from adapters.discord.files import ClipDownloads
from adapters.discord.notifier import DiscordNotifier
from adapters.discord.origin import actor_of, scope_of, target_of
from adapters.discord.replies import (
    NO_MENTIONS,
    defer_private,
    defer_public,
    defer_update,
    guarded,
    reply_private,
)
from bot.actions import VideoAction, decode_action, encode_action
from bot.app import Soracast
from bot.backends.catalog import describe_durations
from bot.chat.commands import parse_start
from bot.config import Settings
from bot.models import Generation, GenerationKind, utcnow
from storage.base import Storage

log = logging.getLogger(__name__)

#: Where a member's attachment waits for its "Make character" form, by the interaction that opened it.
_FORM_KEY = "discord:make-character:"


class PendingClips:
    """Attachments a "Make character" form was opened on, until the form comes back.

    Without the privileged message-content intent the bot cannot re-read another member's attachments later,
    but the menu's own payload carries them. What the download needs is stored with an expiry, so a form opened
    before a restart (or in another process) still works after it.
    """

    def __init__(
        self,
        storage: Storage,
        attachment_of: Callable[[dict[str, Any]], discord.Attachment],
        ttl: float = 900.0,
    ) -> None:
        self._storage = storage
        self._attachment_of = attachment_of
        self._ttl = ttl

    async def put(self, interaction_id: int, attachment: discord.Attachment) -> str:
        """Remember an attachment; returns the key the form's custom id carries."""
        key = str(interaction_id)
        expires = utcnow() + timedelta(seconds=self._ttl)
        await self._storage.put_pending_form(_FORM_KEY + key, json.dumps(attachment.to_dict()), expires)
        return key

    async def take(self, key: str) -> discord.Attachment | None:
        body = await self._storage.take_pending_form(_FORM_KEY + key, utcnow())
        if body is None:
            return None
        try:
            return self._attachment_of(json.loads(body))
        except (ValueError, KeyError, TypeError):
            log.warning("a stored make-character form could not be read; treated as expired")
            return None


class Components:
    """The handlers behind video buttons, list paging and every modal soracast opens."""

    def __init__(
        self,
        core: Soracast,
        settings: Settings,
        notifier: DiscordNotifier,
        downloads: ClipDownloads,
        pending: PendingClips,
    ) -> None:
        self._core = core
        self._settings = settings
        self._notifier = notifier
        self._downloads = downloads
        self._pending = pending

    # --- buttons (called by views.VideoButton / views.ListPageButton) --------------------------------------

    async def video_button(self, interaction: discord.Interaction, action: VideoAction, generation_id: str) -> None:
        async with guarded(interaction, f"{action.value} button"):
            if action in (VideoAction.REMIX, VideoAction.EXTEND, VideoAction.CHARACTER):
                # A video with a character the member may not use is refused now, not after the form.
                await self._core.generations.check_characters(
                    scope_of(interaction), actor_of(interaction), generation_id
                )
            if action is VideoAction.REMIX:
                await interaction.response.send_modal(views.remix_modal(generation_id))
            elif action is VideoAction.EXTEND:
                generation = await self._core.generations.get(scope_of(interaction), generation_id)
                choices = self._core.generations.extend_choices(generation)
                if not choices:
                    # The button is not offered for such videos; an old message may still carry one.
                    self._core.generations.derivable(generation, GenerationKind.EXTEND)
                default = min(choices, key=lambda d: abs(d - int(generation.seconds)))
                await interaction.response.send_modal(
                    views.extend_modal(generation_id, describe_durations(choices), default)
                )
            elif action is VideoAction.CHARACTER:
                # Who may not register is told now, before a form asks for a handle.
                await self._core.registry.check_can_register(scope_of(interaction), actor_of(interaction))
                custom_id = encode_action(VideoAction.CHARACTER, generation_id)
                await interaction.response.send_modal(views.character_modal(custom_id, ask_name=False))
            elif action is VideoAction.DELETE:
                await self._delete(interaction, generation_id)
            elif action is VideoAction.CANCEL:
                await self._cancel(interaction, generation_id)
            elif action is VideoAction.ASK:
                await self._ask(interaction, generation_id)
            elif action in (VideoAction.APPROVE, VideoAction.DECLINE):
                await self._decide(interaction, generation_id, approve=action is VideoAction.APPROVE)

    async def list_page(self, interaction: discord.Interaction, page: int) -> None:
        """Prev / Next on a character list: re-read the list and show the asked page."""
        async with guarded(interaction, "character list page"):
            await defer_update(interaction)
            characters = await self._core.registry.list(scope_of(interaction))
            pages = render.page_count(len(characters))
            page = min(page, pages - 1)
            await interaction.edit_original_response(
                embed=render.character_page(characters, page), view=views.list_view(page, pages)
            )

    async def _delete(self, interaction: discord.Interaction, generation_id: str) -> None:
        """Delete under a video, or in `/character videos`: the core removes the video's message itself (through
        the notifier), wherever the button was clicked."""
        await defer_private(interaction)
        generation = await self._core.generations.delete(scope_of(interaction), actor_of(interaction), generation_id)
        await reply_private(interaction, render.deleted_embed(generation))

    async def _ask(self, interaction: discord.Interaction, character_id: str) -> None:
        """Ask under a refusal: the character's owner gets a direct message with Approve / Decline."""
        await defer_private(interaction)
        outcome = await self._core.requests.ask_for(scope_of(interaction), actor_of(interaction), character_id)
        await reply_private(interaction, render.asked_embed(outcome))

    async def _decide(self, interaction: discord.Interaction, request_id: str, *, approve: bool) -> None:
        """Approve / Decline in the owner's direct message (no server there: only the owner may decide) or in
        `/character requests` (an admin may too). The direct message then shows the decision instead of its
        buttons."""
        in_dm = interaction.guild_id is None
        if in_dm:
            await defer_update(interaction)
        else:
            await defer_private(interaction)
        scope = None if in_dm else scope_of(interaction)
        decision = await self._core.requests.decide(actor_of(interaction), request_id, approve, scope=scope)
        embed = render.request_embed(decision.request, decision.character)
        if in_dm:
            await interaction.edit_original_response(embed=embed, view=None, allowed_mentions=NO_MENTIONS)
        else:
            await reply_private(interaction, embed)

    async def _cancel(self, interaction: discord.Interaction, generation_id: str) -> None:
        """Cancel under a waiting video: answered privately; its message becomes "Cancelled" (without the button)
        when the core reports it, as any other change of a video."""
        await defer_private(interaction)
        generation = await self._core.generations.cancel(scope_of(interaction), actor_of(interaction), generation_id)
        await reply_private(interaction, render.cancelled_embed(generation))

    # --- modal submits (routed here from Client.on_interaction) -------------------------------------------

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Route a modal submit by its custom id; other interactions are handled by the tree and the views."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        values = views.modal_values(data)
        decoded = decode_action(custom_id)
        if decoded is not None:
            await self._submit_video_form(interaction, decoded[0], decoded[1], values)
        elif custom_id.startswith(views.CLIP_FORM_PREFIX):
            await self._submit_clip_form(interaction, custom_id.removeprefix(views.CLIP_FORM_PREFIX), values)

    async def _submit_video_form(
        self, interaction: discord.Interaction, action: VideoAction, generation_id: str, values: dict[str, str]
    ) -> None:
        async with guarded(interaction, f"{action.value} form"):
            if action is VideoAction.CHARACTER:
                await defer_private(interaction)
                character = await self._core.generations.character_from_generation(
                    scope_of(interaction),
                    actor_of(interaction),
                    generation_id,
                    values.get(views.HANDLE, ""),
                    name=values.get(views.NAME) or None,
                    start=parse_start(values.get(views.START)),
                    rights_confirmed=views.rights_confirmed(values),
                )
                await reply_private(interaction, render.character_embed(character, f"Registered @{character.handle}"))
                return
            if action not in (VideoAction.REMIX, VideoAction.EXTEND):
                return
            message_id = await defer_public(interaction)
            scope, actor, target = scope_of(interaction), actor_of(interaction), target_of(interaction, message_id)
            prompt = values.get(views.PROMPT, "")
            generation: Generation
            if action is VideoAction.REMIX:
                generation = await self._core.generations.remix(
                    scope, actor, generation_id, prompt, target, announce=True
                )
            else:
                seconds = values.get(views.SECONDS, "").strip() or None
                generation = await self._core.generations.extend(
                    scope, actor, generation_id, prompt, target, seconds=seconds, announce=True
                )
            await self._notifier.announce(interaction, generation)

    async def _submit_clip_form(self, interaction: discord.Interaction, key: str, values: dict[str, str]) -> None:
        async with guarded(interaction, "make character form"):
            await defer_private(interaction)
            attachment = await self._pending.take(key)
            if attachment is None:
                await reply_private(
                    interaction,
                    render.notice_embed("That form has expired. Use Make character on the message again."),
                )
                return
            scope, actor = scope_of(interaction), actor_of(interaction)
            start = parse_start(values.get(views.START))
            confirmed = views.rights_confirmed(values)
            await self._core.registry.precheck(
                scope, actor, values.get(views.HANDLE, ""), values.get(views.NAME) or None, rights_confirmed=confirmed
            )
            async with self._downloads.fetch(attachment) as path:
                character = await self._core.registry.register(
                    scope,
                    actor,
                    values.get(views.HANDLE, ""),
                    path,
                    name=values.get(views.NAME) or None,
                    start=start,
                    source_ref=attachment.filename,
                    rights_confirmed=confirmed,
                )
            await reply_private(interaction, render.character_embed(character, f"Registered @{character.handle}"))

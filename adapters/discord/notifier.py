"""The core's Notifier for Discord: one public message per generation, edited as it progresses, then the video.

The message starts as the command's "thinking…" reply (edited through the interaction webhook while the token
is fresh); every later edit goes through the bot's channel message endpoints, because interaction tokens
expire after 15 minutes and renders can take longer.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import discord

from adapters.discord import render, views
from adapters.discord.origin import EXTRA_GUILD, EXTRA_NONCE, EXTRA_NONCE_FOR, upload_limit
from adapters.discord.replies import NO_MENTIONS, mark_answered
from bot.characters import media
from bot.chat.notify import VideoNotice
from bot.errors import SoracastError
from bot.models import AccessRequest, Character, DeliveryReceipt, Generation, Scope
from bot.videos.generations import GenerationService

log = logging.getLogger(__name__)

FileFactory = Callable[[], discord.File]

#: How many of a channel's messages since a lost post are searched for it.
HISTORY_LIMIT = 200


class DiscordNotifier:
    """Implements `bot.chat.notify.Notifier`; also shows a new generation's first message for the commands."""

    def __init__(self, client: discord.Client, generations: GenerationService, work_dir: Path) -> None:
        self._client = client
        self._generations = generations
        self._work_dir = work_dir

    # --- the first message (called by the commands) ----------------------------------------------------

    async def announce(self, interaction: discord.Interaction, generation: Generation) -> None:
        """Turn the interaction's "thinking…" reply into the generation's progress message.

        The generation must have been submitted with `announce=True`: the core holds its reports until the
        message is recorded here, so a fast job never overtakes it.
        """
        message_id: str | None = None
        try:
            message = await interaction.edit_original_response(
                content=None,
                embed=render.generation_embed(generation),
                view=self._buttons(generation),
                allowed_mentions=NO_MENTIONS,
            )
            mark_answered(interaction)
            message_id = str(message.id)
        finally:
            await self._generations.attach_message(generation.id, message_id)

    # --- Notifier ----------------------------------------------------------------------------------------

    async def progress(self, generation: Generation) -> None:
        """Edit the progress bar (with Cancel while the video waits in line); the core already spaces these calls
        out."""
        if generation.target.message_id is None:
            return
        await self._message(generation).edit(
            embed=render.generation_embed(generation), view=self._buttons(generation), allowed_mentions=NO_MENTIONS
        )

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        """Attach the MP4 to the generation's message (shrunk to the server's limit if needed) with its buttons."""
        scratch = self._work_dir / f"{generation.id}-fit.mp4"
        try:
            make_file, note = await self._fit(generation, scratch)
            view = views.video_view(generation.id, self._generations.offered_actions(generation))
            try:
                message = await self._show(generation, render.generation_embed(generation, note), view, make_file)
            except discord.HTTPException as exc:
                if make_file is None or exc.status not in (403, 413):
                    raise  # transient or unknown: the core tries the delivery again later
                # Discord refused the file itself (too large after all, or no Attach Files permission).
                log.warning("discord refused the video of %s: %s %s", generation.id, exc.status, exc.code)
                note, make_file = _refused_note(exc), None
                message = await self._show(generation, render.generation_embed(generation, note), view, None)
        finally:
            scratch.unlink(missing_ok=True)
        return DeliveryReceipt(message_id=str(message.id), attached=make_file is not None, note=note)

    async def failed(self, generation: Generation) -> None:
        """Replace the progress bar with why it failed and what to do next."""
        await self._show(generation, render.generation_embed(generation), None, None)

    # --- Messenger: direct messages ---------------------------------------------------------------------

    async def ask_owner(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        """A direct message to the owner with Approve / Decline (their ids carry the request: they survive
        restarts); False when the owner does not take direct messages from the bot."""
        view = views.request_view(request.id)
        return await self._direct(character.owner_id, render.request_embed(request, character), view)

    async def tell_requester(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        return await self._direct(request.requester_id, render.decision_embed(request, character), None)

    async def tell_owner(self, scope: Scope, owner_id: str, notices: Sequence[VideoNotice]) -> bool:
        """One direct message per video, or a digest of several, each with its jump link."""
        return await self._direct(owner_id, render.owner_notice_embed(notices), None)

    async def remove_post(self, generation: Generation) -> None:
        """Delete the video's message (it carries the file); one already gone is fine."""
        if generation.target.message_id is None:
            return
        try:
            await self._message(generation).delete()
        except discord.NotFound:
            pass

    async def _direct(self, user_id: str, embed: discord.Embed, view: discord.ui.View | None) -> bool:
        channel = await self._client.create_dm(discord.Object(id=int(user_id)))
        kwargs: dict[str, object] = {"embed": embed, "allowed_mentions": NO_MENTIONS}
        if view is not None:
            kwargs["view"] = view
        try:
            await channel.send(**kwargs)  # type: ignore[arg-type]
        except discord.Forbidden as exc:
            # 50007: the member does not accept direct messages from the bot (or shares no server with it).
            log.info("no direct message to %s: %s %s", user_id, exc.status, exc.code)
            return False
        return True

    # --- helpers -----------------------------------------------------------------------------------------

    def _buttons(self, generation: Generation) -> discord.ui.View | None:
        """The buttons the core offers for the video's state now (Cancel while it waits); None clears them."""
        actions = self._generations.offered_actions(generation)
        return views.video_view(generation.id, actions) if actions else None

    def _channel(self, generation: Generation) -> discord.PartialMessageable:
        guild = generation.target.extra.get(EXTRA_GUILD) or generation.scope.id
        return self._client.get_partial_messageable(
            int(generation.target.channel_id), guild_id=int(guild) if guild.isdigit() else None
        )

    def _message(self, generation: Generation) -> discord.PartialMessage:
        assert generation.target.message_id is not None
        return self._channel(generation).get_partial_message(int(generation.target.message_id))

    async def _show(
        self,
        generation: Generation,
        embed: discord.Embed,
        view: discord.ui.View | None,
        make_file: FileFactory | None,
    ) -> discord.Message:
        """Edit the generation's message; only where it has none (or it was deleted) is one posted, once."""
        if generation.target.message_id is not None:
            try:
                return await self._edit(self._message(generation), embed, view, make_file)
            except discord.NotFound:
                log.info("the message of %s is gone; posting a new one", generation.id)
        return await self._post_once(generation, embed, view, make_file)

    async def _edit(
        self,
        message: discord.Message | discord.PartialMessage,
        embed: discord.Embed,
        view: discord.ui.View | None,
        make_file: FileFactory | None,
    ) -> discord.Message:
        # An edit says everything the message shows (its file included), so repeating it changes nothing.
        return await message.edit(
            content=None,
            embed=embed,
            attachments=[make_file()] if make_file else [],
            view=view,
            allowed_mentions=NO_MENTIONS,
        )

    async def _post_once(
        self,
        generation: Generation,
        embed: discord.Embed,
        view: discord.ui.View | None,
        make_file: FileFactory | None,
    ) -> discord.Message:
        """Post the generation's message so that a delivery tried again (after a lost answer or a restart) edits
        it instead of posting a second one.

        The post carries a nonce stored before it is sent: Discord answers a repeated nonce with the message it
        already made, for a few minutes; later, the channel's messages since the nonce was made are searched for
        ours showing this generation.
        """
        replaces = generation.target.message_id or ""
        nonce = generation.target.extra.get(EXTRA_NONCE)
        if nonce and nonce.isdigit() and generation.target.extra.get(EXTRA_NONCE_FOR, "") == replaces:
            earlier = await self._find_post(generation, int(nonce))
            if earlier is not None:
                log.info("the message of %s was posted before its answer was lost; editing it", generation.id)
                message = await self._edit(earlier, embed, view, make_file)
                await self._generations.attach_message(generation.id, str(message.id))
                return message
        else:
            nonce = str(new_nonce())
            await self._generations.remember(generation.id, **{EXTRA_NONCE: nonce, EXTRA_NONCE_FOR: replaces})
        kwargs: dict[str, object] = {"embed": embed, "allowed_mentions": NO_MENTIONS, "nonce": int(nonce)}
        if view is not None:
            kwargs["view"] = view
        if make_file is not None:
            kwargs["file"] = make_file()
        message = await self._channel(generation).send(**kwargs)  # type: ignore[arg-type]
        await self._generations.attach_message(generation.id, str(message.id))
        return message

    async def _find_post(self, generation: Generation, nonce: int) -> discord.Message | None:
        """Our message showing this generation, posted since `nonce` (a snowflake of its making) was made."""
        me = self._client.user
        since = discord.Object(id=max(0, (nonce >> 22 << 22) - 1))
        marker = f"`{generation.id}`"
        try:
            async for message in self._channel(generation).history(limit=HISTORY_LIMIT, after=since):
                if (me is None or message.author.id == me.id) and any(
                    marker in (embed.description or "") for embed in message.embeds
                ):
                    return message
        except discord.HTTPException as exc:
            # No Read Message History here: the nonce is all there is (Discord holds to it for minutes).
            log.info("could not search the channel of %s: %s", generation.id, exc.status)
        return None

    async def _fit(self, generation: Generation, scratch: Path) -> tuple[FileFactory | None, str | None]:
        """The video as a file that fits the server's upload limit (re-encoded if needed), or why it can't."""
        size = _size(generation.video_path)
        if generation.video_path is None or size is None:
            log.warning("the video of %s is not here (%s); posting without it", generation.id, generation.video_path)
            return None, render.missing_file_note()
        path, name = generation.video_path, render.video_filename(generation)
        limit = upload_limit(generation.target)
        if size <= limit:
            return (lambda: discord.File(path, filename=name)), None
        _make_dir(self._work_dir)
        try:
            fitted = await media.shrink_to_fit(path, scratch, limit)
        except SoracastError as err:
            log.warning("could not shrink %s (%d bytes) under %d: %s", generation.id, size, limit, err.code)
            fitted = None
        shrunk = _size(fitted)
        if fitted is None or shrunk is None or shrunk > limit:
            return None, render.too_large_note(size, limit)
        return (lambda: discord.File(fitted, filename=name)), render.shrunk_note(size, shrunk)


def new_nonce() -> int:
    """A message nonce that is also a snowflake of now (random below the millisecond), so it says when the
    post was sent: the search for a lost post starts there."""
    return discord.utils.time_snowflake(discord.utils.utcnow()) + secrets.randbits(22)


def _size(path: Path | None) -> int | None:
    """A file's size, or None when it is missing."""
    try:
        return path.stat().st_size if path is not None else None
    except FileNotFoundError:
        return None


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _refused_note(exc: discord.HTTPException) -> str:
    if exc.status == 403:
        return "Discord refused the upload: soracast needs the Attach Files permission in this channel."
    return "Discord refused the upload as too large for this server."

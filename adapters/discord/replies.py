"""Acknowledging interactions in time, and answering privately — including when something failed."""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import discord

from adapters.discord import options, render, views
from bot.chat.acks import AckGate
from bot.errors import SoracastError

log = logging.getLogger(__name__)

#: `interaction.extras` keys: how the interaction was acknowledged, and whether its thinking reply was used.
_DEFERRED = "soracast_deferred"
_PUBLIC, _PRIVATE = "public", "private"
_ANSWERED = "soracast_answered"

NO_MENTIONS = discord.AllowedMentions.none()

# Interaction tokens sit in webhook and callback paths; an exception text quoting a URL must not log them.
_TOKEN_PATH = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._-]{20,}")


#: `interaction.extras` key: this interaction is counted by the client's AckGate until it is acknowledged.
_GATE = "soracast_gate"


def _gate(interaction: discord.Interaction) -> AckGate | None:
    return getattr(interaction.client, "ack_gate", None)


def _slot(interaction: discord.Interaction) -> contextlib.AbstractAsyncContextManager[object]:
    gate = _gate(interaction)
    return gate.slot if gate is not None else contextlib.nullcontext()


def _acknowledged(interaction: discord.Interaction) -> None:
    gate = _gate(interaction)
    if gate is not None and interaction.extras.pop(_GATE, False):
        gate.acknowledged()


async def _after_ack(interaction: discord.Interaction) -> None:
    _acknowledged(interaction)
    gate = _gate(interaction)
    if gate is not None:
        await gate.settle()


def redact(text: str) -> str:
    """Mask interaction tokens in URLs quoted by an exception or a log line."""
    return _TOKEN_PATH.sub(r"\1***", text)


def log_unexpected(what: str, exc: BaseException) -> None:
    """`log.exception` for an unexpected failure, with interaction tokens masked in the traceback."""
    text = redact("".join(traceback.format_exception(exc)))
    log.error("discord %s failed unexpectedly\n%s", what, text.rstrip())


async def defer_private(interaction: discord.Interaction) -> None:
    """Acknowledge now; the answer, visible to the user only, comes later."""
    async with _slot(interaction):
        await interaction.response.defer(ephemeral=True, thinking=True)
    interaction.extras[_DEFERRED] = _PRIVATE
    await _after_ack(interaction)


async def defer_public(interaction: discord.Interaction) -> int | None:
    """Acknowledge with a public "thinking…" message; returns its id when Discord says it."""
    async with _slot(interaction):
        response = await interaction.response.defer(thinking=True)
    interaction.extras[_DEFERRED] = _PUBLIC
    await _after_ack(interaction)
    return response.message_id if response is not None else None


async def defer_update(interaction: discord.Interaction) -> None:
    """Acknowledge a button without a new message (the clicked message may be edited later)."""
    async with _slot(interaction):
        await interaction.response.defer()
    await _after_ack(interaction)


async def reply_private(
    interaction: discord.Interaction,
    embed: discord.Embed,
    view: discord.ui.View | None = None,
    *,
    files: Sequence[discord.File] = (),
) -> None:
    """Say something to the user only, whatever state the interaction's response is in."""
    kwargs: dict[str, Any] = {"embed": embed, "allowed_mentions": NO_MENTIONS}
    if view is not None:
        kwargs["view"] = view
    if not interaction.response.is_done():
        await interaction.response.send_message(ephemeral=True, files=list(files), **kwargs)
        return
    state = interaction.extras.get(_DEFERRED)
    if state == _PRIVATE and not interaction.extras.get(_ANSWERED):
        # The private "thinking…" message becomes the answer.
        interaction.extras[_ANSWERED] = True
        await interaction.edit_original_response(content=None, attachments=list(files), **kwargs)
        return
    if state == _PUBLIC and not interaction.extras.get(_ANSWERED):
        # A public "thinking…" message would show the error to everyone: remove it, then answer privately.
        interaction.extras[_ANSWERED] = True
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.warning("could not remove a thinking message: %s", exc.status)
    await interaction.followup.send(ephemeral=True, wait=False, files=list(files), **kwargs)


def mark_answered(interaction: discord.Interaction) -> None:
    """The deferred message was used for a result (e.g. the progress message); later replies are followups."""
    interaction.extras[_ANSWERED] = True


@asynccontextmanager
async def guarded(interaction: discord.Interaction, what: str) -> AsyncIterator[None]:
    """Run a handler; a SoracastError is shown privately with its title, anything else as a generic apology."""
    gate = _gate(interaction)
    if gate is not None:
        gate.arrived()
        interaction.extras[_GATE] = True
    try:
        yield
    except SoracastError as err:
        log.info("discord %s refused: %s", what, err.code)
        # A refusal may offer what to do next as buttons (Ask the owner of a character not shared with you).
        await _tell(interaction, render.error_embed(err), what, views.offers_view(err.offers))
    except Exception as exc:
        log_unexpected(what, exc)
        await _tell(interaction, render.unexpected_embed(), what)
    finally:
        _acknowledged(interaction)  # a handler that answered without deferring (a modal, an early refusal)


async def refuse_malformed(interaction: discord.Interaction, what: str, error: Exception) -> None:
    """discord.py refused an interaction as ill-formed: one log line, and a private answer (an empty list for
    autocomplete, which cannot take a message)."""
    log.warning("discord %s refused: malformed interaction (%s)", what, type(error).__name__)
    if interaction.type is discord.InteractionType.autocomplete:
        if not interaction.response.is_done():
            with contextlib.suppress(discord.HTTPException):
                await interaction.response.autocomplete([])
        return
    await _tell(interaction, render.error_embed(options.malformed()), what)


async def _tell(
    interaction: discord.Interaction, embed: discord.Embed, what: str, view: discord.ui.View | None = None
) -> None:
    try:
        await reply_private(interaction, embed, view)
    except Exception as exc:
        # The interaction may have expired (15 min) or been answered already; nothing else can reach the user.
        log.warning("could not tell the user about a failed %s: %s", what, type(exc).__name__)

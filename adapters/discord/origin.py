"""Who and where an interaction comes from, in the core's terms: Scope, Actor, DeliveryTarget."""

from __future__ import annotations

import discord

from bot.errors import MalformedRequest
from bot.models import Actor, DeliveryTarget, Platform, Scope

#: What a non-boosted server allows per file; used when a stored target predates `upload_limit`.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

#: Keys this adapter keeps in `DeliveryTarget.extra`.
EXTRA_GUILD = "guild_id"
EXTRA_UPLOAD_LIMIT = "upload_limit"
#: The nonce of a post the notifier sent where a generation had no message, and the message it replaced ("").
EXTRA_NONCE = "post_nonce"
EXTRA_NONCE_FOR = "post_nonce_for"


def scope_of(interaction: discord.Interaction) -> Scope:
    """Characters are private to a Discord server (guild); commands are guild-only, so it is always set."""
    if interaction.guild_id is None:
        raise MalformedRequest("soracast's commands only run in a server.", hint="Use it in a server channel.")
    return Scope(platform=Platform.DISCORD, id=str(interaction.guild_id))


def actor_of(interaction: discord.Interaction) -> Actor:
    """The member as the core sees them: Manage Server makes an admin; role ids for register restrictions.

    Both come from the interaction payload itself (`member.permissions`, `member.roles`), so they are right
    even when the guild's roles are not cached (no gateway, or a cache still filling after a reconnect).
    """
    user = interaction.user
    permissions = interaction.permissions
    role_ids = frozenset(str(role_id) for role_id in getattr(user, "_roles", ()))
    return Actor(
        id=str(user.id),
        display_name=user.display_name,
        is_admin=permissions.administrator or permissions.manage_guild,
        role_ids=role_ids,
    )


def target_of(interaction: discord.Interaction, message_id: int | None = None) -> DeliveryTarget:
    """Where a video asked for here is posted; the upload limit is remembered for delivery time.

    A thread is a channel of its own on Discord, so `channel_id` is the thread's id when used in one.
    """
    if interaction.channel_id is None:
        raise MalformedRequest("Discord did not say which channel this came from.", hint="Try again in a channel.")
    extra = {EXTRA_UPLOAD_LIMIT: str(interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT)}
    if interaction.guild_id is not None:
        extra[EXTRA_GUILD] = str(interaction.guild_id)
    return DeliveryTarget(
        channel_id=str(interaction.channel_id),
        message_id=str(message_id) if message_id is not None else None,
        extra=extra,
    )


def upload_limit(target: DeliveryTarget) -> int:
    """The largest file the target's server accepted when the command ran."""
    try:
        return int(target.extra.get(EXTRA_UPLOAD_LIMIT, DEFAULT_UPLOAD_LIMIT))
    except ValueError:
        return DEFAULT_UPLOAD_LIMIT

"""Wiring the Discord bot (a discord.py `Client` with an app-command tree) to the core, and `soracast discord`."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from adapters.discord.commands import Commands
from adapters.discord.files import ClipDownloads
from adapters.discord.interactions import Components, PendingClips
from adapters.discord.notifier import DiscordNotifier
from adapters.discord.views import ListPageButton, VideoButton
from bot.app import Soracast, build_app, settle_after_start_up
from bot.chat.acks import AckGate
from bot.config import Settings
from bot.errors import ConfigError
from bot.models import Platform

log = logging.getLogger(__name__)


class SoracastClient(discord.Client):
    """A gateway client with default (non-privileged) intents whose interactions drive the core."""

    def __init__(self, core: Soracast, settings: Settings, **options: object) -> None:
        super().__init__(
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
            **options,  # type: ignore[arg-type]
        )
        self.core = core
        self.settings = settings
        self.tree = app_commands.CommandTree(self)
        #: Acknowledgements first when interactions arrive in a burst (see `bot.chat.acks.AckGate`).
        self.ack_gate = AckGate()
        work = settings.resolved_media_dir / "discord"
        self.notifier = DiscordNotifier(self, core.generations, work / "outgoing")
        downloads = ClipDownloads(core.registry.limits, work / "incoming")
        pending = PendingClips(core.storage, self._attachment)
        #: What `views.handlers_of` finds: the handlers of buttons and modals.
        self.soracast = Components(core, settings, self.notifier, downloads, pending)
        self.commands = Commands(core, settings, self.notifier, downloads, pending, self._own_id)
        self.commands.register(self.tree)
        # Buttons are matched by the pattern of their custom ids, so those posted before a restart still work.
        self.add_dynamic_items(VideoButton, ListPageButton)

    def _attachment(self, data: dict[str, Any]) -> discord.Attachment:
        """A stored attachment as discord.py's own again, able to download itself through this client."""
        return discord.Attachment(data=data, state=self._connection)  # type: ignore[arg-type]

    def _own_id(self) -> int | None:
        return self.user.id if self.user is not None else None

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.soracast.on_interaction(interaction)


class ShardedSoracastClient(SoracastClient, discord.AutoShardedClient):
    """The same client running some of the bot's shards (`DISCORD_SHARD_COUNT`, `DISCORD_SHARD_IDS`)."""


def build_discord_bot(core: Soracast, settings: Settings, **options: object) -> SoracastClient:
    """The client with every command and button registered, and its notifier registered with the core.

    With `DISCORD_SHARD_COUNT` set it runs the shards `DISCORD_SHARD_IDS` names (all of them if unset): big bots
    split their servers across processes, each process one part of the shards.
    """
    if settings.discord_shard_count:
        options = {"shard_count": settings.discord_shard_count, "shard_ids": settings.discord_shard_ids, **options}
        client: SoracastClient = ShardedSoracastClient(core, settings, **options)
    else:
        client = SoracastClient(core, settings, **options)
    core.generations.register_notifier(Platform.DISCORD, client.notifier)
    return client


async def sync_commands(client: SoracastClient, guild_id: int | None) -> None:
    """Publish the commands: to one server (instant, for development) or globally."""
    if guild_id:
        guild = discord.Object(id=guild_id)
        client.tree.copy_global_to(guild=guild)
        synced = await client.tree.sync(guild=guild)
        log.info("synced %d command(s) to server %s", len(synced), guild_id)
    else:
        synced = await client.tree.sync()
        log.info("synced %d global command(s); new ones can take a while to appear", len(synced))


async def prepare_bot(client: SoracastClient, token: str) -> int:
    """Everything before the gateway: log in, publish the commands, pick up this platform's unfinished videos.

    Returns how many videos were picked up; their messages are edited through the REST API, so this works
    before the gateway is connected.
    """
    await client.login(token)
    shards = client.settings.discord_shard_ids
    if not shards or 0 in shards:
        # Commands belong to the application, not a shard: one process publishes them.
        await sync_commands(client, client.settings.discord_guild_id)
    resumed = await client.core.generations.resume(Platform.DISCORD)
    if resumed:
        log.info("picked up %d unfinished video(s)", resumed)
    settle_after_start_up()
    return resumed


async def run_discord(settings: Settings) -> None:
    """`soracast discord`: build the core, log in, resume this platform's videos, sync commands, run."""
    token = settings.discord_token.get_secret_value() if settings.discord_token is not None else ""
    if not token:
        raise ConfigError("DISCORD_TOKEN is not set.", hint="Set the bot token; see adapters/discord/README.md.")
    core = await build_app(settings)
    client = build_discord_bot(core, settings)
    try:
        async with client:
            await prepare_bot(client, token)
            await client.connect(reconnect=True)
    finally:
        await core.aclose()

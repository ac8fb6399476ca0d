"""Private answers to one person, and who that person is (`users.info`, cached briefly)."""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.origin import Origin
from adapters.slack.render import Message
from adapters.slack.webapi import slack_error
from adapters.slack.workspaces import Workspace, WorkspaceClients
from bot.models import Actor

log = logging.getLogger(__name__)


class Replier:
    """Sends a message only the requester sees, by the best route the request offers."""

    def __init__(self, clients: WorkspaceClients) -> None:
        self._clients = clients

    async def ephemeral(self, origin: Origin, message: Message) -> None:
        """response_url first (works in any conversation), then chat.postEphemeral, then a direct message."""
        if origin.response_url and await self._via_response_url(origin.response_url, message):
            return
        client = await self._clients.client(origin.workspace)
        if origin.channel_id:
            try:
                await client.chat_postEphemeral(
                    channel=origin.channel_id,
                    user=origin.user_id,
                    text=message.text,
                    blocks=message.blocks or None,
                    thread_ts=origin.thread_ts,
                )
                return
            except SlackApiError as exc:
                log.info("chat.postEphemeral refused (%s); sending a direct message", slack_error(exc))
        await client.chat_postMessage(channel=origin.user_id, text=message.text, blocks=message.blocks or None)

    async def _via_response_url(self, url: str, message: Message) -> bool:
        try:
            response = await AsyncWebhookClient(url).send(
                text=message.text,
                blocks=message.blocks or None,
                response_type="ephemeral",
                replace_original=False,
            )
        except Exception as exc:  # the URL expires after 30 minutes or 5 uses; there are other routes
            log.info("response_url failed: %s", type(exc).__name__)
            return False
        return response.status_code == 200


class ActorDirectory:
    """Slack users as core `Actor`s; admins and owners count as admins. Cached for `ttl` seconds, per workspace
    (asked with that workspace's token: whether someone is an admin is that workspace's answer)."""

    def __init__(self, clients: WorkspaceClients, ttl: float = 300.0) -> None:
        self._clients = clients
        self._ttl = ttl
        self._cache: dict[tuple[Workspace, str], tuple[float, Actor]] = {}
        self._pending: dict[tuple[Workspace, str], asyncio.Task[Actor]] = {}

    async def get(self, origin: Origin) -> Actor:
        """The actor who sent a request; one `users.info` call however many requests ask at once."""
        key = (origin.workspace, origin.user_id)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._lookup(key, origin.user_name))
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))
        return await asyncio.shield(task)

    async def _lookup(self, key: tuple[Workspace, str], fallback_name: str) -> Actor:
        workspace, user_id = key
        client = await self._clients.client(workspace)
        try:
            response = await client.users_info(user=user_id)
        except SlackApiError as exc:
            # Without users:read nobody is an admin, which only ever denies, never grants.
            log.warning("users.info failed for %s: %s", user_id, slack_error(exc))
            return Actor(id=user_id, display_name=fallback_name)
        user = response.get("user") or {}
        profile = user.get("profile") or {}
        actor = Actor(
            id=user_id,
            display_name=profile.get("display_name") or user.get("real_name") or user.get("name") or fallback_name,
            is_admin=bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner")),
        )
        self._cache[key] = (time.monotonic() + self._ttl, actor)
        return actor

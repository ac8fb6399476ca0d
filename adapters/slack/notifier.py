"""The core's Notifier for Slack: one message per generation, edited as it progresses, then the video uploaded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from adapters.slack.webapi import slack_error, without_retries
from adapters.slack.workspaces import Workspace, WorkspaceClients
from bot.chat.notify import DestinationGone, VideoNotice
from bot.models import AccessRequest, Character, DeliveryReceipt, Generation, Scope, utcnow
from bot.videos.generations import GenerationService

log = logging.getLogger(__name__)

#: Slack errors worth another delivery attempt later; any other refusal will not change by retrying.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}

#: Keys this notifier keeps in `DeliveryTarget.extra`: the video's Slack file (stored before its bytes are sent;
#: the Delete button removes it) and when its completion was sent ("" until then).
EXTRA_FILE = "file_id"
EXTRA_COMPLETING = "file_completing_at"
#: How long a completed upload may take to show as shared before it counts as dropped by Slack.
SHARE_GRACE = 120.0


class Share(Enum):
    """What Slack says about an upload whose completion may have been sent."""

    POSTED = "posted"
    PENDING = "pending"
    NEVER = "never"


class SharePending(Exception):
    """Slack has the completed upload but has not shown it in the channel yet: deliver again a little later."""


class UploadFailed(Exception):
    """The upload URL did not take the bytes; the delivery is tried again later."""


class SlackNotifier:
    """Implements `bot.chat.notify.Notifier`; also posts the first progress message for the listeners.

    Every call speaks with the token of the workspace the generation was asked for in (in any process, long
    after the request). Where Slack's refusal means soracast is no longer installed there, `DestinationGone`
    ends the job quietly instead of retrying it.
    """

    def __init__(self, clients: WorkspaceClients, generations: GenerationService) -> None:
        self._clients = clients
        self._generations = generations

    async def _client(self, generation: Generation) -> AsyncWebClient:
        return await self._clients.client(Workspace.of(generation))

    async def _check(self, generation: Generation, exc: SlackApiError) -> None:
        """Raise DestinationGone if this refusal means the workspace is gone; else return (the caller goes on)."""
        await self._clients.check_refusal(Workspace.of(generation), exc)

    @staticmethod
    def _channel(generation: Generation) -> str:
        # chat.postMessage answers with the real channel id (a DM posted to a user id gets a D… id).
        return generation.target.extra.get("channel") or generation.target.channel_id

    async def post(self, generation: Generation) -> str:
        """Post the progress message of a new generation (submitted with `announce=True`) and record it."""
        message = render.generation_message(generation, actions=self._generations.offered_actions(generation))
        try:
            client = await self._client(generation)
            response = await client.chat_postMessage(
                channel=generation.target.channel_id,
                thread_ts=generation.target.thread_id,
                text=message.text,
                blocks=message.blocks,
            )
        except Exception:
            # Nothing was posted: the core stops holding the generation's reports for this message.
            await self._generations.attach_message(generation.id, None)
            raise
        ts = str(response["ts"])
        await self._generations.attach_message(generation.id, ts, channel=str(response["channel"]))
        return ts

    async def progress(self, generation: Generation) -> None:
        """Edit the progress bar (with Cancel while it waits in line); the core already spaces these calls out."""
        if generation.target.message_id is None:
            return
        message = render.generation_message(generation, actions=self._generations.offered_actions(generation))
        await self._edit(await self._client(generation), generation, message)

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        """Post the MP4 next to the message (exactly once, see `_post_video`), then turn the message into "Done"
        with the video buttons."""
        note: str | None = None
        client = await self._client(generation)
        path = generation.video_path
        if path is None or not path.exists():
            log.warning("the video of %s is not here (%s); posting the message without it", generation.id, path)
            note = "The finished video file was not found, so it could not be attached."
        else:
            try:
                await self._post_video(client, generation, path)
            except SlackApiError as exc:
                await self._check(generation, exc)
                error = slack_error(exc)
                if error in _TRANSIENT:
                    raise  # the core tries the delivery again later
                log.warning("upload of %s refused by Slack: %s", generation.id, error)
                note = f"Slack refused the upload ({error}); invite soracast to this channel and ask again."
        # From here the video is in the channel: a failed edit must not make the core upload it twice.
        ts = await self._show(client, generation, note)
        return DeliveryReceipt(message_id=ts, attached=note is None, note=note)

    async def _post_video(self, client: AsyncWebClient, generation: Generation, path: Path) -> str:
        """Upload the video and share it in the channel, once, whatever dies when; returns its file id.

        Slack's upload is three steps: `files.getUploadURLExternal` (a file id), the bytes, then
        `files.completeUploadExternal`, which posts the file. The file id is stored before the bytes are sent and
        the moment of completing before it is asked, so a delivery tried again (after a lost answer or a
        restart) first asks Slack (`files.info`) whether that file was posted, and only uploads anew when it
        cannot have been.
        """
        extra = generation.target.extra
        file_id, completing = extra.get(EXTRA_FILE), extra.get(EXTRA_COMPLETING)
        if file_id and completing:
            state = await self._share_state(client, file_id)
            if state is Share.POSTED:
                log.info("the video of %s is already in the channel (%s): not uploaded again", generation.id, file_id)
                return file_id
            if state is Share.PENDING:
                waited = _seconds_since(completing)
                if waited < SHARE_GRACE:
                    raise SharePending(f"{file_id} is completed but not shared yet ({waited:.0f}s)")
                # Slack took the completion but never posted it: take the file back before posting anew, so a
                # share that still comes later shows nothing.
                log.warning("Slack never shared %s of %s; uploading it again", file_id, generation.id)
                try:
                    await without_retries(client).files_delete(file=file_id)
                except SlackApiError as exc:
                    log.warning("could not take back %s of %s: %s", file_id, generation.id, slack_error(exc))
        return await self._upload(client, generation, path)

    async def _upload(self, client: AsyncWebClient, generation: Generation, path: Path) -> str:
        data = await asyncio.to_thread(path.read_bytes)
        ticket = await client.files_getUploadURLExternal(filename=video_filename(generation), length=len(data))
        file_id, upload_url = str(ticket["file_id"]), str(ticket["upload_url"])
        await self._generations.remember(generation.id, **{EXTRA_FILE: file_id, EXTRA_COMPLETING: ""})
        await self._send_bytes(client, upload_url, data)
        await self._generations.remember(generation.id, **{EXTRA_COMPLETING: utcnow().isoformat()})
        # Never repeated by the client itself: a completion whose answer was lost is checked, not sent again.
        await without_retries(client).files_completeUploadExternal(
            files=[{"id": file_id, "title": render.upload_title(generation)}],
            channel_id=self._channel(generation),
            thread_ts=generation.target.thread_id,
            initial_comment=render.ready_comment(generation),
        )
        return file_id

    async def _share_state(self, client: AsyncWebClient, file_id: str) -> Share:
        """Whether an upload that was being completed is in a channel, on its way there, or was never posted."""
        try:
            response = await client.files_info(file=file_id)
        except SlackApiError as exc:
            error = slack_error(exc)
            if error == "file_deleted":
                return Share.POSTED  # posted, then someone removed it: not soracast's to post again
            if error == "file_not_found":
                return Share.NEVER
            raise
        file = response.get("file") or {}
        shares = file.get("shares") or {}
        if any(shares.get(kind) for kind in ("public", "private")) or any(
            file.get(kind) for kind in ("channels", "groups", "ims")
        ):
            return Share.POSTED
        return Share.PENDING

    async def _send_bytes(self, client: AsyncWebClient, url: str, data: bytes) -> None:
        """POST the video to the upload URL Slack gave (sending it twice only replaces the bytes)."""
        session = client.session
        owned = session is None
        if owned:
            session = aiohttp.ClientSession()
        assert session is not None
        try:
            async with session.post(
                url,
                data=data,
                proxy=client.proxy,
                ssl=client.ssl,
                timeout=aiohttp.ClientTimeout(total=client.timeout),
            ) as response:
                if response.status != 200:
                    raise UploadFailed(f"the upload URL answered {response.status}")
        finally:
            if owned:
                await session.close()

    async def failed(self, generation: Generation) -> None:
        """Replace the progress bar with why it failed and what to do next."""
        message = render.generation_message(generation)
        client = await self._client(generation)
        if generation.target.message_id is not None:
            await self._edit(client, generation, message)
            return
        try:
            await self._post_new(client, generation, message)
        except SlackApiError as exc:
            await self._check(generation, exc)
            raise

    async def _edit(self, client: AsyncWebClient, generation: Generation, message: render.Message) -> None:
        """Edit the generation's message; a refusal meaning the workspace is gone ends it (`DestinationGone`)."""
        try:
            await client.chat_update(
                channel=self._channel(generation),
                ts=generation.target.message_id,
                text=message.text,
                blocks=message.blocks,
            )
        except SlackApiError as exc:
            await self._check(generation, exc)
            raise

    async def _show(self, client: AsyncWebClient, generation: Generation, note: str | None) -> str | None:
        message = render.generation_message(generation, note, self._generations.offered_actions(generation))
        try:
            if generation.target.message_id is not None:
                await client.chat_update(
                    channel=self._channel(generation),
                    ts=generation.target.message_id,
                    text=message.text,
                    blocks=message.blocks,
                )
                return generation.target.message_id
            return await self._post_new(client, generation, message)
        except Exception as exc:
            log.warning("could not update the message of %s: %s", generation.id, type(exc).__name__)
            return generation.target.message_id

    # --- Messenger: direct messages, links and removal -------------------------------------------------------

    async def ask_owner(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        """A direct message to the owner with Approve / Decline (their action ids carry the request)."""
        return await self._direct(scope, character.owner_id, render.request_message(request, character))

    async def tell_requester(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        return await self._direct(scope, request.requester_id, render.decision_message(request, character))

    async def tell_owner(self, scope: Scope, owner_id: str, notices: Sequence[VideoNotice]) -> bool:
        """One direct message per video, or a digest of several, each with a link to its post."""
        links = {n.generation.id: await self.permalink(n.generation) for n in notices}
        return await self._direct(scope, owner_id, render.owner_notice_message(notices, links))

    async def permalink(self, generation: Generation) -> str | None:
        """The link to a video's message: `chat.getPermalink`, or one built from its ids where Slack will not say."""
        ts = generation.target.message_id
        if ts is None:
            return None
        channel = self._channel(generation)
        try:
            client = await self._client(generation)
            response = await client.chat_getPermalink(channel=channel, message_ts=ts)
            return str(response["permalink"])
        except (SlackApiError, KeyError, DestinationGone) as exc:
            log.info("no permalink for %s: %s", generation.id, type(exc).__name__)
            return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"

    async def remove_post(self, generation: Generation) -> None:
        """Take a deleted video's message and its uploaded file out of the channel; a message Slack will not let
        soracast delete (workspace policy) is shown as deleted instead."""
        client = await self._client(generation)
        file_id = generation.target.extra.get(EXTRA_FILE)
        if file_id:
            try:
                await client.files_delete(file=file_id)
            except SlackApiError as exc:
                log.warning("could not delete the file of %s: %s", generation.id, slack_error(exc))
        ts = generation.target.message_id
        if ts is None:
            return
        channel = self._channel(generation)
        try:
            await client.chat_delete(channel=channel, ts=ts)
        except SlackApiError as exc:
            log.info("chat.delete of %s refused (%s); marking it deleted", generation.id, slack_error(exc))
            shown = render.generation_message(generation)
            await client.chat_update(channel=channel, ts=ts, text=shown.text, blocks=shown.blocks)

    async def _direct(self, scope: Scope, user_id: str, message: render.Message) -> bool:
        """`conversations.open` with the person, then the message there; False where Slack will not let soracast
        write to them (a deactivated account, a user of another workspace, a workspace that removed soracast)."""
        try:
            client = await self._clients.client(Workspace(team_id=scope.id))
            opened = await client.conversations_open(users=user_id)
            channel = str(opened["channel"]["id"])
            await client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
        except DestinationGone:
            log.info("no direct message to %s: soracast is not installed in %s", user_id, scope.id)
            return False
        except SlackApiError as exc:
            error = slack_error(exc)
            if error in _TRANSIENT:
                raise
            log.info("no direct message to %s: %s", user_id, error)
            return False
        return True

    async def _post_new(self, client: AsyncWebClient, generation: Generation, message: render.Message) -> str:
        """Post the generation's message where it has none (its first one failed), and record it at once: a
        delivery tried again then edits this message instead of posting another."""
        response = await client.chat_postMessage(
            channel=self._channel(generation),
            thread_ts=generation.target.thread_id,
            text=message.text,
            blocks=message.blocks,
        )
        ts = str(response["ts"])
        await self._generations.attach_message(generation.id, ts, channel=str(response["channel"]))
        return ts


def _seconds_since(stamp: str) -> float:
    """Seconds since a stored ISO time; an unreadable one counts as long ago."""
    try:
        return (utcnow() - datetime.fromisoformat(stamp)).total_seconds()
    except (ValueError, TypeError):
        return float("inf")


def video_filename(generation: Generation) -> str:
    """The uploaded video's file name (the soak and tests find a generation's posts by it)."""
    return f"soracast-{generation.id}.mp4"

"""The core's Notifier for Slack: one message per generation, edited as it progresses, then the video uploaded."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from adapters.slack.webapi import slack_error
from bot.generations import GenerationService
from bot.models import DeliveryReceipt, Generation

log = logging.getLogger(__name__)

#: Slack errors worth another delivery attempt later; any other refusal will not change by retrying.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class SlackNotifier:
    """Implements `bot.notify.Notifier`; also posts the first progress message for the listeners."""

    def __init__(self, client: AsyncWebClient, generations: GenerationService) -> None:
        self._client = client
        self._generations = generations

    @staticmethod
    def _channel(generation: Generation) -> str:
        # chat.postMessage answers with the real channel id (a DM posted to a user id gets a D… id).
        return generation.target.extra.get("channel") or generation.target.channel_id

    async def post(self, generation: Generation) -> str:
        """Post the progress message of a new generation (submitted with `announce=True`) and record it."""
        message = render.generation_message(generation, actions=self._generations.offered_actions(generation))
        try:
            response = await self._client.chat_postMessage(
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
        await self._client.chat_update(
            channel=self._channel(generation), ts=generation.target.message_id, text=message.text, blocks=message.blocks
        )

    async def completed(self, generation: Generation) -> DeliveryReceipt:
        """Upload the MP4 next to the message, then turn the message into "Done" with the video buttons."""
        note: str | None = None
        file_id: str | None = None
        path = generation.video_path
        if path is None or not path.exists():
            note = "The finished video file was not found, so it could not be attached."
        else:
            try:
                upload = await self._client.files_upload_v2(
                    file=str(path),
                    filename=f"soracast-{generation.id}.mp4",
                    title=render.upload_title(generation),
                    channel=self._channel(generation),
                    thread_ts=generation.target.thread_id,
                    initial_comment=render.ready_comment(generation),
                )
                file_id = (upload.get("file") or {}).get("id")
            except SlackApiError as exc:
                error = slack_error(exc)
                if error in _TRANSIENT:
                    raise  # the core tries the delivery again later
                log.warning("upload of %s refused by Slack: %s", generation.id, error)
                note = f"Slack refused the upload ({error}); invite soracast to this channel and ask again."
        # From here the video is in the channel: a failed edit must not make the core upload it twice.
        ts = await self._show(generation, note)
        if ts is not None and file_id:
            await self._generations.attach_message(generation.id, ts, file_id=file_id)
        return DeliveryReceipt(message_id=ts, attached=note is None, note=note)

    async def failed(self, generation: Generation) -> None:
        """Replace the progress bar with why it failed and what to do next."""
        message = render.generation_message(generation)
        if generation.target.message_id is None:
            await self._client.chat_postMessage(
                channel=self._channel(generation),
                thread_ts=generation.target.thread_id,
                text=message.text,
                blocks=message.blocks,
            )
            return
        await self._client.chat_update(
            channel=self._channel(generation), ts=generation.target.message_id, text=message.text, blocks=message.blocks
        )

    async def _show(self, generation: Generation, note: str | None) -> str | None:
        message = render.generation_message(generation, note, self._generations.offered_actions(generation))
        try:
            if generation.target.message_id is not None:
                await self._client.chat_update(
                    channel=self._channel(generation),
                    ts=generation.target.message_id,
                    text=message.text,
                    blocks=message.blocks,
                )
                return generation.target.message_id
            response = await self._client.chat_postMessage(
                channel=self._channel(generation),
                thread_ts=generation.target.thread_id,
                text=message.text,
                blocks=message.blocks,
            )
            return str(response["ts"])
        except Exception as exc:
            log.warning("could not update the message of %s: %s", generation.id, type(exc).__name__)
            return generation.target.message_id

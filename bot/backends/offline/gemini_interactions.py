"""The emulated Gemini API's state and its answer about one interaction: the application's keys, the emulator's
options, interaction and file ids, and the interaction as `GET /v1beta/interactions/{id}` shows it (in progress,
waiting, failed, blocked in words, or completed with its video inline or as a Files API link).
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.backends.offline.faults import FaultPlan
from bot.backends.offline.gemini_dialect import invalid
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.spec import MODERATION_TRIGGER
from bot.backends.offline.webhook_sender import WebhookSender
from bot.backends.openai.schemas import VideoStatus
from bot.errors import VideosAPIError

#: Prompt markers that leave an interaction waiting in these states (played like `[[moderation]]`).
STATE_MARKERS = {"[[requires_action]]": "requires_action", "[[idle]]": "idle"}
#: Inline answers above this are sent as a Files API link instead, as the real API does.
MAX_INLINE_OUTPUT = 4 * 1024 * 1024
TOKENS_PER_SECOND = 5800

OFFLINE_KEY = web.AppKey("gemini_offline", OfflineVideosAPI)
LIMITS_KEY = web.AppKey("gemini_limits", "ReferenceLimits")
FAULTS_KEY = web.AppKey("gemini_faults", FaultPlan)
#: Delivery asked per job (in memory: after a restart outputs go inline or by link by their size alone).
DELIVERY_KEY = web.AppKey("gemini_delivery", dict)
#: The `webhook_config` each create was sent with (kept in memory, like delivery).
WEBHOOK_CONFIG_KEY = web.AppKey("gemini_webhook_configs", dict)
WEBHOOKS_KEY = web.AppKey("gemini_webhooks", WebhookSender)
SIGNER_KEY = web.AppKey("gemini_signer", "WebhookSigner")
OPTIONS_KEY = web.AppKey("gemini_options", "EmulatorOptions")


@dataclass(frozen=True)
class EmulatorOptions:
    """Where the emulator plays from: whether uploaded-video editing is offered there, and a registered webhook
    (`(uri, whsec_ secret)`) that gets the events of creates that name no `uris`."""

    uploaded_video_editing: bool = True
    registered_webhook: tuple[str, str] | None = None


def interaction_id(video_id: str) -> str:
    """The interaction id Google would give the renderer's job `video_id`."""
    return "v1_" + video_id.removeprefix("video_")


def video_id_of(interaction: str) -> str:
    """The renderer's job id of an interaction id; Google's 400 for one that cannot be ours."""
    if not interaction.startswith("v1_") or not interaction[3:].isalnum():
        raise invalid(f"Invalid interaction name: {interaction[:80]}")
    return "video_" + interaction.removeprefix("v1_")


async def known_video(offline: OfflineVideosAPI, interaction: str) -> Any:
    """The renderer's job of an interaction id; Google's 400 "Invalid interaction name" for an unknown one."""
    video_id = video_id_of(interaction)
    try:
        return await offline.retrieve_video(video_id)
    except VideosAPIError:
        raise invalid(f"Invalid interaction name: {interaction[:80]}") from None


def file_id(video_id: str) -> str:
    """The Files API id of a job's output."""
    return video_id.removeprefix("video_")


async def interaction_body(app: web.Application, video_id: str, origin: str) -> dict[str, Any]:
    """The interaction of job `video_id` as the API shows it; file links start at `origin`."""
    offline = app[OFFLINE_KEY]
    video = await offline.retrieve_video(video_id)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(video.created_at))
    answer: dict[str, Any] = {
        "id": interaction_id(video.id),
        "model": video.model,
        "created": created,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    config = app[WEBHOOK_CONFIG_KEY].get(video.id)
    if config is not None:
        answer["webhook_config"] = config
    failure = offline.failure_of(video.id)
    marker = next((state for mark, state in STATE_MARKERS.items() if mark in (video.prompt or "")), None)
    if marker is not None and not (failure and failure[0] == "cancelled"):
        answer["status"] = marker
        return answer
    if video.status in (VideoStatus.QUEUED, VideoStatus.IN_PROGRESS):
        answer["status"] = "queued" if video.status is VideoStatus.QUEUED else "in_progress"
        return answer
    if video.status is VideoStatus.FAILED:
        code, message = failure or ("failed", "The video could not be generated.")
        if code == "cancelled":
            answer["status"] = "cancelled"
        elif code == "moderation_blocked" or MODERATION_TRIGGER in (video.prompt or "").lower():
            # Omni answers a safety block in words: the interaction completes, with text and no video.
            answer["status"] = "completed"
            answer["steps"] = [
                {
                    "type": "model_output",
                    "content": [
                        {
                            "type": "text",
                            "text": "I can't create that video because the request may violate the safety "
                            "policy on harmful content.",
                        }
                    ],
                }
            ]
        else:
            answer["status"] = "failed"
            answer["errors"] = [{"code": code, "message": message}]
        return answer
    path = await offline.content_path(video.id)
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    content: dict[str, Any] = {"type": "video", "mime_type": "video/mp4"}
    if app[DELIVERY_KEY].get(video.id) == "uri" or size > MAX_INLINE_OUTPUT:
        content["uri"] = f"{origin}/v1beta/files/{file_id(video.id)}"
    else:
        content["data"] = base64.b64encode(await asyncio.to_thread(path.read_bytes)).decode("ascii")
    answer["status"] = "completed"
    answer["steps"] = [{"type": "model_output", "content": [content]}]
    answer["usage"] = {
        "total_output_tokens": int(video.seconds or 0) * TOKENS_PER_SECOND,
        "output_tokens_by_modality": [{"modality": "video", "tokens": int(video.seconds or 0) * TOKENS_PER_SECOND}],
    }
    return answer

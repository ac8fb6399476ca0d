"""The emulated fal queue's state and ids: the application's keys, fal request ids for the renderer's jobs, and
a finished request's result (its video served by this app under `/files/`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from bot.backends.offline.fal_dialect import platform_error
from bot.backends.offline.faults import FaultPlan
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.backends.offline.webhook_sender import WebhookSender

OFFLINE_KEY = web.AppKey("fal_offline", OfflineVideosAPI)
FAULTS_KEY = web.AppKey("fal_faults", FaultPlan)
#: The endpoints this app serves (all of ENDPOINTS unless the test or operator narrowed them).
SERVED_KEY = web.AppKey("fal_served", dict)
#: Video ids of requests not known to be finished, in the order submitted (their queue).
PENDING_KEY = web.AppKey("fal_pending", list)
WEBHOOKS_KEY = web.AppKey("fal_webhooks", WebhookSender)
SIGNER_KEY = web.AppKey("fal_signer", "WebhookSigner")

#: fal's `error_type` for the renderer's failure codes.
ERROR_TYPES = {"moderation_blocked": "content_policy_violation", "cancelled": "request_cancelled"}


def request_id_of(video_id: str) -> str:
    """The renderer's `video_<32 hex>` as a fal request id (a UUID)."""
    return str(uuid.UUID(hex=video_id.removeprefix("video_")))


def video_id_of(request_id: str) -> str:
    """The renderer's job id of a fal request id; fal's 404 for one that cannot be ours."""
    try:
        return "video_" + uuid.UUID(request_id).hex
    except ValueError:
        raise platform_error(404, f"Request {request_id} not found") from None


async def result_body(app: web.Application, video_id: str, origin: str) -> dict[str, Any]:
    """A finished request's result: its video, served from `origin` under `/files/`."""
    path = await app[OFFLINE_KEY].content_path(video_id)
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    file_id = video_id.removeprefix("video_")
    return {
        "video": {
            "url": f"{origin}/files/{file_id}/output.mp4",
            "content_type": "video/mp4",
            "file_name": "output.mp4",
            "file_size": size,
        }
    }

"""Videos API webhooks (`video.completed` / `video.failed`), verified in the Standard Webhooks scheme.

A webhook only says which video changed; the tracker then retrieves it, so a forged or replayed event could
at worst cause one extra status poll — and forged ones are refused before that.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.signing import WebhookRejected, check_signature, standard_headers
from bot.web.http_door import Refused, read_body, refusing

if TYPE_CHECKING:
    from bot.videos.generations import GenerationService
    from storage.base import Storage

log = logging.getLogger(__name__)

#: A `video.*` event is a few hundred bytes; anything much larger is not one.
MAX_BODY_BYTES = 64 * 1024


class _EventData(BaseModel):
    id: str


class VideoEvent(BaseModel):
    """The part of a webhook event soracast uses."""

    id: str | None = None
    type: str
    data: _EventData


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> VideoEvent:
    """Check id, timestamp window and signature; return the parsed event or raise WebhookRejected."""
    webhook_id, sent_at, signatures = standard_headers(headers, now)
    check_signature(secret, webhook_id, sent_at, signatures, body)
    try:
        # Strict UTF-8 (json.loads would guess UTF-16/32 from the first bytes).
        event = VideoEvent.model_validate(json.loads(body.decode("utf-8")))
    except (ValueError, ValidationError):
        raise WebhookRejected("signed body is not a video event", status=400) from None
    return event.model_copy(update={"id": webhook_id})


async def handle_video_webhook(
    secret: str, storage: Storage, generations: GenerationService, headers: Mapping[str, str], body: bytes
) -> None:
    """Verify and act on one webhook; raises `Refused` with the status to answer when it is not one."""
    try:
        event = verify(secret, headers, body)
    except WebhookRejected as exc:
        raise Refused(exc.status, f"webhook: {exc}") from None
    if not await storage.remember_webhook(event.id or ""):
        return  # redelivery of something already handled
    if event.type in ("video.completed", "video.failed"):
        known = await generations.on_video_event(event.data.id)
        if not known:
            log.info("webhook for a video soracast does not track: %s", event.data.id)
    else:
        # Other event types are the provider's to send; acknowledged so they are not redelivered.
        log.info("ignored a webhook of type %r", event.type[:80])


WEBHOOK_PATH = "/webhooks/openai"


def webhook_route(secret: str | None, storage: Storage, generations: GenerationService) -> web.RouteDef:
    """`POST /webhooks/openai` for an aiohttp app: off without a secret (404), then size (413), signature and
    timestamp (401), the body (400), each refusal in one log line; verified events are de-duplicated and wake
    the tracker."""

    async def receive(request: web.Request) -> web.Response:
        if not secret:
            raise Refused(404, "Videos API webhooks are off (OPENAI_WEBHOOK_SECRET is not set)")
        body = await read_body(request, MAX_BODY_BYTES)
        await handle_video_webhook(secret, storage, generations, request.headers, body)
        return web.Response(status=200)

    return web.post(WEBHOOK_PATH, refusing(receive))

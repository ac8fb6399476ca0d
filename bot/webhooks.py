"""Videos API webhooks (`video.completed` / `video.failed`), verified in the Standard Webhooks scheme.

A webhook only says which video changed; the tracker then retrieves it, so a forged or replayed event could
at worst cause one extra status poll — and forged ones are refused before that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from bot.generations import GenerationService
    from storage.base import Storage

log = logging.getLogger(__name__)

#: How far a webhook's timestamp may be from our clock (replay window).
TOLERANCE_SECONDS = 300


class WebhookRejected(Exception):
    """The request is not a valid, fresh, correctly signed webhook."""


class _EventData(BaseModel):
    id: str


class VideoEvent(BaseModel):
    """The part of a webhook event soracast uses."""

    id: str | None = None
    type: str
    data: _EventData


def _secret_bytes(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for a payload (used by tests and the emulator)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> VideoEvent:
    """Check id, timestamp window and signature; return the parsed event or raise WebhookRejected."""
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (webhook_id and timestamp and signatures):
        raise WebhookRejected("missing webhook headers")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRejected("bad timestamp") from None
    if abs((now if now is not None else time.time()) - sent_at) > TOLERANCE_SECONDS:
        raise WebhookRejected("timestamp outside the tolerance window")
    expected = sign(secret, webhook_id, sent_at, body).split(",", 1)[1]
    offered = [part.split(",", 1)[1] for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise WebhookRejected("signature mismatch")
    try:
        event = VideoEvent.model_validate(json.loads(body))
    except (ValueError, ValidationError):
        raise WebhookRejected("body is not a video event") from None
    return event.model_copy(update={"id": webhook_id})


async def handle_video_webhook(
    secret: str | None, storage: Storage, generations: GenerationService, headers: Mapping[str, str], body: bytes
) -> int:
    """Verify and act on one webhook; returns the HTTP status to answer with."""
    if not secret:
        return 404
    try:
        event = verify(secret, headers, body)
    except WebhookRejected as exc:
        log.warning("webhook refused: %s", exc)
        return 401
    if not await storage.remember_webhook(event.id or ""):
        return 200  # redelivery of something already handled
    if event.type in ("video.completed", "video.failed"):
        known = await generations.on_video_event(event.data.id)
        if not known:
            log.info("webhook for a video soracast does not track: %s", event.data.id)
    return 200


WEBHOOK_PATH = "/webhooks/openai"


def webhook_route(secret: str | None, storage: Storage, generations: GenerationService) -> web.RouteDef:
    """`POST /webhooks/openai` for an aiohttp app: verified, de-duplicated, then the tracker is woken."""

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        status = await handle_video_webhook(secret, storage, generations, request.headers, body)
        return web.Response(status=status)

    return web.post(WEBHOOK_PATH, receive)

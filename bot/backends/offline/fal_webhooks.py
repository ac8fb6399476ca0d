"""Webhooks of the emulated fal queue.

A submit with `?fal_webhook=<url>` is announced there once it ends, as fal does (docs.fal.ai webhooks page):
`{request_id, gateway_request_id, status: OK|ERROR, payload}`, signed with Ed25519 over
`request id \n user id \n timestamp \n sha256(body)` (headers `X-Fal-Webhook-*`, signature in hex), the public
key published at `GET /.well-known/jwks.json`; an answer other than 2xx gets the webhook again.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.backends.offline.fal_jobs import ERROR_TYPES, OFFLINE_KEY, result_body, video_id_of
from bot.backends.openai.schemas import VideoStatus
from bot.jwks import b64url_encode


class WebhookSigner:
    """fal's webhook signature: Ed25519 over `request id \n user id \n timestamp \n sha256(body)`, in hex."""

    def __init__(self, user_id: str = "emulator-user") -> None:
        self.user_id = user_id
        self.key = Ed25519PrivateKey.generate()
        self.kid = uuid.uuid4().hex[:16]

    def headers(self, request_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        message = "\n".join([request_id, self.user_id, stamp, hashlib.sha256(body).hexdigest()]).encode()
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": self.user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": self.key.sign(message).hex(),
        }

    def jwks(self) -> dict[str, Any]:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig", "x": b64url_encode(raw)}]}


async def webhook_body(request_id: str, video: Any, app: web.Application, origin: str) -> bytes:
    """What fal posts when a request ends: its result as `payload`, or the error."""
    video_id = video_id_of(request_id)
    event: dict[str, Any] = {"request_id": request_id, "gateway_request_id": request_id}
    if video.status is VideoStatus.FAILED:
        code, message = app[OFFLINE_KEY].failure_of(video_id) or ("failed", "The video could not be generated.")
        event.update(status="ERROR", error=message, payload={"detail": message, "error_type": ERROR_TYPES.get(code)})
    else:
        event.update(status="OK", payload=await result_body(app, video_id, origin))
    return json.dumps(event).encode()

"""Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256).

OpenAI's and Gemini's webhooks are signed this way; the offline emulators sign with the same code, so a
verifier and its sender cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

#: How far a webhook's timestamp may be from our clock (replay window).
TOLERANCE_SECONDS = 300

class WebhookRejected(Exception):
    """The request is not a valid, fresh, correctly signed webhook; `status` is what to answer (401 for who
    sent it, 400 for a signed body that is not an event)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.status = status


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


def standard_headers(headers: Mapping[str, str], now: float | None = None) -> tuple[str, int, str]:
    """The Standard Webhooks headers (`webhook-id`, `webhook-timestamp` within the window, `webhook-signature`);
    WebhookRejected when one is missing, malformed or stale."""
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (webhook_id and timestamp and signatures):
        raise WebhookRejected("missing webhook headers")
    # Header values are whatever the sender put there; the scheme only ever uses ASCII.
    if not (webhook_id.isascii() and signatures.isascii() and len(webhook_id) <= 256):
        raise WebhookRejected("malformed webhook headers")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRejected("bad timestamp") from None
    if abs((now if now is not None else time.time()) - sent_at) > TOLERANCE_SECONDS:
        raise WebhookRejected("timestamp outside the tolerance window")
    return webhook_id, sent_at, signatures


def check_signature(secret: str, webhook_id: str, sent_at: int, signatures: str, body: bytes) -> None:
    """One of the `v1,` signatures is the HMAC of this delivery under `secret`; WebhookRejected otherwise."""
    expected = sign(secret, webhook_id, sent_at, body).split(",", 1)[1]
    offered = [part.split(",", 1)[1] for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise WebhookRejected("signature mismatch")

"""Webhooks of the emulated Gemini API, sent as Google's webhooks guide describes them.

A create whose `webhook_config` names `uris` is announced there when it ends (`interaction.completed`,
`interaction.failed`, `interaction.requires_action`), with the `user_metadata` it was given, under Standard
Webhooks headers whose `webhook-signature` is an RS256 JSON Web Token (a per-request webhook's), the key published
at `GET /.well-known/jwks.json`. A webhook registered with the emulator (`registered_webhook=(uri, "whsec_…")`)
gets the events of creates without `uris`, signed with that secret's HMAC. An answer other than 2xx gets the
webhook again.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bot.backends.offline.gemini_interactions import OPTIONS_KEY, SIGNER_KEY, WEBHOOKS_KEY, interaction_body
from bot.jwks import b64url_encode
from bot.signing import sign as sign_hmac


class WebhookSigner:
    """Signs per-request webhooks as Google does: an RS256 JSON Web Token in `webhook-signature`."""

    def __init__(self, issuer: str = "https://generativelanguage.googleapis.com") -> None:
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)

    def token(self, audience: str, *, now: float | None = None, lifetime: float = 300.0) -> str:
        issued = int(time.time() if now is None else now)
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        claims = {"iss": self.issuer, "aud": audience, "iat": issued, "exp": issued + int(lifetime)}
        signing_input = ".".join(b64url_encode(json.dumps(part).encode()) for part in (header, claims))
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url_encode(signature)}"

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.kid,
                    "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64url_encode(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                }
            ]
        }


def announce_when_done(request: web.Request, video_id: str, config: dict[str, Any] | None) -> None:
    """Send the job's webhook once it ends: to the create's `uris` (a signed token), else to the registered
    webhook (its HMAC secret)."""
    app = request.app
    registered = app[OPTIONS_KEY].registered_webhook
    if config is None and registered is None:
        return
    if config is not None and not config["uris"] and registered is None:
        return
    origin = str(request.url.origin())

    async def announce(done_id: str) -> list[tuple[str, bytes, dict[str, str]]]:
        answer = await interaction_body(app, done_id, origin)
        kind = {
            "completed": "interaction.completed",
            "failed": "interaction.failed",
            "requires_action": "interaction.requires_action",
        }.get(str(answer.get("status")))
        if kind is None:
            return []  # a cancelled job is the caller's own doing; nothing is announced
        metadata = (config or {}).get("user_metadata") or {}
        event = {
            "type": kind,
            "version": "v1",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {"id": answer["id"], "status": answer["status"], "user_metadata": metadata},
        }
        body = json.dumps(event).encode()
        webhook_id = "msg_" + secrets.token_hex(12)
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": str(stamp)}
        if config is not None and config["uris"]:
            return [
                (uri, body, {**headers, "webhook-signature": app[SIGNER_KEY].token(uri)}) for uri in config["uris"]
            ]
        assert registered is not None
        uri, secret = registered
        return [(uri, body, {**headers, "webhook-signature": sign_hmac(secret, webhook_id, stamp, body)})]

    app[WEBHOOKS_KEY].after_job(video_id, announce)

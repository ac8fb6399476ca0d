"""Webhooks from the video providers that announce their jobs: `POST /webhooks/gemini` and
`POST /webhooks/fal/{generation id}` on `soracast web`, beside the Videos API's `/webhooks/openai`.

Both stand behind the same door as every route (`bot.web.http_door`): the body is read under a size cap, the
signature is checked before anything else looks at it, and each refusal is one status and one log line.

- **Gemini** (Google's webhooks guide, read 2026-12-04) signs under Standard Webhooks (`webhook-id`,
  `webhook-timestamp`, `webhook-signature`). A webhook registered with the API signs with its HMAC secret
  (`GEMINI_WEBHOOK_SECRET`, shown once when it is created); a per-request `webhook_config.uris` webhook — what
  soracast sends when `SORACAST_PUBLIC_URL` is set — carries an RS256 JSON Web Token instead, checked against
  Google's published keys (`SORACAST_GEMINI_JWKS_URL`) and meant for this route's address. The event names the
  interaction (`data.id`) and gives back the `user_metadata` the create carried: soracast's generation id.
- **fal** (docs.fal.ai webhooks page) signs `request id \\n user id \\n timestamp \\n sha256(body)` with Ed25519;
  the keys are fal's JSON Web Key Set (`SORACAST_FAL_JWKS_URL`), and the timestamp must be within five minutes.
  The generation id is the last segment of the URL soracast gave the submit.

A verified event only wakes the tracker (or, after a lost create answer, gives the generation its job once the
provider confirms it exists): the tracker then reads the job from the provider itself, so a replayed or stale
event can at worst cause one extra status check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.backends.base import GENERATION_KEY
from bot.config import FAL_WEBHOOK_PATH, GEMINI_WEBHOOK_PATH
from bot.errors import SoracastError
from bot.jwks import KeySet, KeySetUnavailable, SignatureRejected, ed25519_verifies, verify_rs256_token
from bot.signing import TOLERANCE_SECONDS, WebhookRejected, check_signature, standard_headers
from bot.web.http_door import Refused, read_body, refusing

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.videos.generations import GenerationService
    from storage.base import Storage

log = logging.getLogger(__name__)

#: Google documents thin events (a few hundred bytes), but a completed interaction may ride along with its video
#: inline (Google answers inline up to about 4 MB): more than that is not an event.
GEMINI_MAX_BODY_BYTES = 8 * 1024 * 1024
#: fal's event carries the result (links to files, never the files): a few kilobytes.
FAL_MAX_BODY_BYTES = 1024 * 1024
#: Gemini events that say an interaction ended (or stopped to wait): the tracker looks at it at once.
GEMINI_EVENTS = frozenset(
    {
        "interaction.completed",
        "interaction.failed",
        "interaction.cancelled",
        "interaction.requires_action",
        "video.generated",
    }
)
_GENERATION_ID = re.compile(r"g[a-z0-9]{8}")


# --- Gemini ------------------------------------------------------------------------------------------------


class GeminiVerifier:
    """Checks a Gemini webhook: a registered webhook's HMAC (with `secret`), or a per-request webhook's RS256
    token from Google's keys meant for `audience` (this route's public address)."""

    def __init__(self, *, secret: str | None, audience: str | None, keys: KeySet | None) -> None:
        self._secret = secret
        self._audience = audience
        self._keys = keys

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """The delivery's `webhook-id`; `Refused` (401, or 503 when Google's keys cannot be fetched) otherwise."""
        try:
            webhook_id, sent_at, signature = standard_headers(headers, now)
        except WebhookRejected as exc:
            raise Refused(exc.status, f"gemini webhook: {exc}") from None
        if signature.count(".") == 2 and "," not in signature:
            await self._verify_token(signature, now)
            return webhook_id
        if self._secret is None:
            raise Refused(401, "gemini webhook: an HMAC signature, but GEMINI_WEBHOOK_SECRET is not set")
        try:
            check_signature(self._secret, webhook_id, sent_at, signature, body)
        except WebhookRejected as exc:
            raise Refused(exc.status, f"gemini webhook: {exc}") from None
        return webhook_id

    async def _verify_token(self, token: str, now: float | None) -> None:
        if self._keys is None or self._audience is None:
            raise Refused(401, "gemini webhook: a signed token, but SORACAST_PUBLIC_URL is not set")
        try:
            await verify_rs256_token(token, self._keys, audiences={self._audience}, now=now)
        except SignatureRejected as exc:
            raise Refused(401, f"gemini webhook: {exc}") from None
        except KeySetUnavailable as exc:
            raise Refused(503, f"gemini webhook: Google's keys are unavailable ({exc})") from None


class GeminiEvent:
    """What soracast reads of a Gemini event: its type, the interaction, and the generation it was made for.
    Google's thin event (`data.id`, `data.user_metadata`) is read, and so are events that carry the interaction
    itself, with its `webhook_config.user_metadata`."""

    def __init__(self, kind: str, interaction_id: str | None, generation_id: str | None) -> None:
        self.kind = kind
        self.interaction_id = interaction_id
        self.generation_id = generation_id

    @classmethod
    def parse(cls, body: bytes) -> GeminiEvent:
        try:
            # Strict UTF-8 (json.loads would guess UTF-16/32 from the first bytes).
            event = json.loads(body.decode("utf-8"))
        except ValueError:
            raise Refused(400, "gemini webhook: the signed body is not UTF-8 JSON") from None
        kind = (event.get("type") or event.get("event_type")) if isinstance(event, dict) else None
        if not isinstance(kind, str):
            raise Refused(400, "gemini webhook: the signed body is not an event")
        data = _object(event.get("data"))
        # The interaction itself may be `data`, `data.interaction` or (as the SDK's stream events have it)
        # `interaction`.
        shapes = [_object(data.get("interaction")), _object(event.get("interaction")), data]
        ident = next(
            (
                value
                for value in (data.get("interaction_id"), *(shape.get("id") for shape in shapes))
                if isinstance(value, str) and value
            ),
            None,
        )
        metadata = [data.get("user_metadata"), event.get("user_metadata")]
        metadata += [_object(shape.get("webhook_config")).get("user_metadata") for shape in shapes]
        generation = next(
            (
                found
                for found in (_object(m).get(GENERATION_KEY) for m in metadata)
                if isinstance(found, str) and _GENERATION_ID.fullmatch(found)
            ),
            None,
        )
        return cls(kind[:80], ident[:256] if ident else None, generation)


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- fal ---------------------------------------------------------------------------------------------------


class FalVerifier:
    """Checks fal's Ed25519 webhook signature against fal's published keys."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    async def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        """The request id the signature covers; `Refused` (401, or 503 without fal's keys) otherwise."""
        lowered = {k.lower(): v for k, v in headers.items()}
        fields = [lowered.get(f"x-fal-webhook-{name}") for name in ("request-id", "user-id", "timestamp", "signature")]
        request_id, user_id, timestamp, signature = fields
        if not (request_id and user_id and timestamp and signature):
            raise Refused(401, "fal webhook: missing signature headers")
        if not all(value.isascii() and len(value) <= 512 for value in (request_id, user_id, timestamp, signature)):
            raise Refused(401, "fal webhook: malformed signature headers")
        try:
            sent_at = int(timestamp)
            raw_signature = bytes.fromhex(signature)
        except ValueError:
            raise Refused(401, "fal webhook: malformed timestamp or signature") from None
        if abs((time.time() if now is None else now) - sent_at) > TOLERANCE_SECONDS:
            raise Refused(401, "fal webhook: timestamp outside the tolerance window")
        message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()
        try:
            if ed25519_verifies(await self._keys.keys(), raw_signature, message):
                return request_id
            # fal rotates its keys: a signature no cached key makes is tried once against a fresh set.
            if self._keys.can_refetch and ed25519_verifies(await self._keys.keys(fresh=True), raw_signature, message):
                return request_id
        except KeySetUnavailable as exc:
            raise Refused(503, f"fal webhook: fal's keys are unavailable ({exc})") from None
        raise Refused(401, "fal webhook: signature mismatch")


def _fal_request_id(body: bytes, signed_request_id: str) -> str:
    """The request a fal event is about (the signed header must name it too)."""
    try:
        event = json.loads(body.decode("utf-8"))
    except ValueError:
        raise Refused(400, "fal webhook: the signed body is not UTF-8 JSON") from None
    if not isinstance(event, dict):
        raise Refused(400, "fal webhook: the signed body is not an event")
    named = {v for v in (event.get("request_id"), event.get("gateway_request_id")) if isinstance(v, str)}
    request_id = event.get("request_id")
    if not isinstance(request_id, str) or signed_request_id not in named:
        raise Refused(400, "fal webhook: the event does not name the signed request")
    return request_id[:256]


# --- the routes --------------------------------------------------------------------------------------------


class ProviderWebhooks:
    """The Gemini and fal webhook routes of `soracast web`, and the key sets they check signatures against
    (closed with the app)."""

    def __init__(self, settings: Settings, storage: Storage, generations: GenerationService) -> None:
        self._storage = storage
        self._generations = generations
        public = settings.public_url
        secret = settings.gemini_webhook_secret.get_secret_value() if settings.gemini_webhook_secret else None
        self._gemini_on = bool(public or secret)
        self._gemini_keys = KeySet(settings.gemini_jwks_url) if public else None
        self._gemini = GeminiVerifier(secret=secret, audience=settings.gemini_webhook_url, keys=self._gemini_keys)
        self._fal_keys = KeySet(settings.fal_jwks_url) if public else None
        self._fal = FalVerifier(self._fal_keys) if self._fal_keys is not None else None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(GEMINI_WEBHOOK_PATH, refusing(self._receive_gemini)),
            web.post(FAL_WEBHOOK_PATH + "/{generation_id}", refusing(self._receive_fal)),
        ]

    async def aclose(self) -> None:
        for keys in (self._gemini_keys, self._fal_keys):
            if keys is not None:
                await keys.aclose()

    async def _receive_gemini(self, request: web.Request) -> web.Response:
        if not self._gemini_on:
            raise Refused(404, "Gemini webhooks are off (neither SORACAST_PUBLIC_URL nor GEMINI_WEBHOOK_SECRET is set)")
        body = await read_body(request, GEMINI_MAX_BODY_BYTES)
        webhook_id = await self._gemini.verify(request.headers, body)
        event = GeminiEvent.parse(body)
        if event.kind not in GEMINI_EVENTS:
            # Other event types are Google's to send; acknowledged so they are not delivered again.
            log.info("ignored a Gemini webhook of type %r", event.kind)
            return web.Response(status=200)
        if event.interaction_id is None:
            raise Refused(400, "gemini webhook: the event names no interaction")
        await self._act("gemini", event.interaction_id, event.generation_id, f"gemini:{webhook_id}")
        return web.Response(status=200)

    async def _receive_fal(self, request: web.Request) -> web.Response:
        if self._fal is None:
            raise Refused(404, "fal webhooks are off (SORACAST_PUBLIC_URL is not set)")
        body = await read_body(request, FAL_MAX_BODY_BYTES)
        signed_request = await self._fal.verify(request.headers, body)
        request_id = _fal_request_id(body, signed_request)
        generation_id = request.match_info["generation_id"]
        if not _GENERATION_ID.fullmatch(generation_id):
            raise Refused(404, "fal webhook: not a generation id")
        await self._act("fal", request_id, generation_id, f"fal:{request_id}")
        return web.Response(status=200)

    async def _act(self, backend: str, provider_id: str, generation_id: str | None, delivery: str) -> None:
        try:
            known = await self._generations.on_provider_event(backend, provider_id, generation_id)
        except SoracastError as exc:
            if exc.retryable:
                # The provider (or storage) could not be asked now: a 503 has the webhook delivered again.
                raise Refused(503, f"{backend} webhook: could not act on it now ({exc.code})") from None
            log.warning("%s webhook for %s could not be acted on: %s", backend, provider_id[:80], exc.code)
            known = True
        if not known:
            log.info("%s webhook for a job soracast does not track: %s", backend, provider_id[:80])
        # Acted on first (every action repeats safely), remembered after: a failed attempt is redelivered.
        if not await self._storage.remember_webhook(delivery[:300]):
            log.debug("%s webhook %s was a redelivery", backend, delivery[:80])

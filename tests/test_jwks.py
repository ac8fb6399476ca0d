"""Published signing keys (JSON Web Key Sets) fetched over real HTTP: cached, fetched again when a signature
names a key the cache lacks (rotation) but not on every forged key id, and a key set that cannot be fetched
makes the webhook answer 503 (so the provider delivers it again) instead of a refusal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.backends.offline.fal_webhooks import WebhookSigner as FalSigner
from bot.backends.offline.gemini_webhooks import WebhookSigner as GeminiSigner
from bot.jwks import KeySet, KeySetUnavailable, SignatureRejected, verify_rs256_token
from bot.web.http_door import Refused
from bot.web.provider_webhooks import FalVerifier, GeminiVerifier

AUDIENCE = "https://soracast.example/webhooks/gemini"


class KeyServer:
    """Serves a key set that a test can rotate; counts the fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        self.status = 200
        self.url = ""

    async def handle(self, _request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response(self.document, status=self.status)


@pytest.fixture
async def keys_server() -> AsyncIterator[KeyServer]:
    server = KeyServer()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/.well-known/jwks.json"
    yield server
    await runner.cleanup()


async def test_a_rotated_key_is_fetched_once_and_a_forged_key_id_does_not_hammer_the_provider(
    keys_server: KeyServer,
) -> None:
    old, new = GeminiSigner(), GeminiSigner()
    keys_server.document = old.jwks()
    now = [1000.0]
    keys = KeySet(keys_server.url, refetch_after=60.0, clock=lambda: now[0])
    try:
        claims = await verify_rs256_token(old.token(AUDIENCE), keys, audiences={AUDIENCE})
        assert claims["aud"] == AUDIENCE and keys_server.fetches == 1
        # Google rotates: the new key id is not in the cache, so the set is fetched again, once.
        keys_server.document = {"keys": old.jwks()["keys"] + new.jwks()["keys"]}
        now[0] += 61  # a minute later
        await verify_rs256_token(new.token(AUDIENCE), keys, audiences={AUDIENCE})
        assert keys_server.fetches == 2
        # A token naming a key nobody published is refused without asking again right away.
        stranger = GeminiSigner()
        with pytest.raises(SignatureRejected, match="unknown key"):
            await verify_rs256_token(stranger.token(AUDIENCE), keys, audiences={AUDIENCE})
        assert keys_server.fetches == 2
    finally:
        await keys.aclose()


async def test_a_key_set_that_cannot_be_fetched_answers_503_not_401(keys_server: KeyServer) -> None:
    keys_server.status = 500
    signer = GeminiSigner()
    keys = KeySet(keys_server.url)
    verifier = GeminiVerifier(secret=None, audience=AUDIENCE, keys=keys)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time())),
               "webhook-signature": signer.token(AUDIENCE)}
    try:
        with pytest.raises(KeySetUnavailable):
            await keys.keys()
        with pytest.raises(Refused) as caught:
            await verifier.verify(headers, b"{}")
        assert caught.value.status == 503
    finally:
        await keys.aclose()


async def test_fal_signatures_verify_against_a_rotated_key_after_one_fetch(keys_server: KeyServer) -> None:
    old, new = FalSigner(), FalSigner()
    keys_server.document = old.jwks()
    keys = KeySet(keys_server.url, refetch_after=0.0)
    verifier = FalVerifier(keys)
    body = b'{"request_id": "r1", "status": "OK", "payload": {}}'
    try:
        assert await verifier.verify(old.headers("r1", body), body) == "r1"
        keys_server.document = new.jwks()
        assert await verifier.verify(new.headers("r1", body), body) == "r1"
        assert keys_server.fetches == 2
        # The message signed is the request id, the user id, the timestamp and the body's SHA-256: change any and
        # it no longer verifies.
        headers = new.headers("r1", body)
        for name, value in (("X-Fal-Webhook-Request-Id", "r2"), ("X-Fal-Webhook-User-Id", "someone-else")):
            with pytest.raises(Refused) as caught:
                await verifier.verify({**headers, name: value}, body)
            assert caught.value.status == 401
    finally:
        await keys.aclose()

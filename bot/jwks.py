"""Public keys a provider publishes as a JSON Web Key Set (RFC 7517), fetched and cached, and the signatures
checked against them: Google's per-request webhooks are RS256 JSON Web Tokens, fal's webhooks Ed25519
signatures. Only public keys are ever read; nothing here holds a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

log = logging.getLogger(__name__)

#: A key set is a few hundred bytes; a larger answer is not one.
MAX_KEY_SET_BYTES = 64 * 1024
#: Keys rotate: a fetched set is kept this long (fal asks for at most 24 hours).
KEY_SET_TTL = 3600.0
#: A key id (or signature) the cached set cannot match fetches the set again, at most this often.
REFETCH_AFTER = 60.0


class KeySetUnavailable(Exception):
    """The key set could not be fetched (the webhook cannot be checked now; the provider retries later)."""


class SignatureRejected(Exception):
    """The signature or token does not verify; the reason is for the log."""


def b64url_decode(text: str) -> bytes:
    """Base64url without padding, as JOSE writes it; ValueError when it is not."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class KeySet:
    """The keys published at `url`, fetched when first needed and again when stale or when a signature names a
    key the cached set lacks (never more often than `refetch_after`)."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = KEY_SET_TTL,
        refetch_after: float = REFETCH_AFTER,
        timeout: float = 10.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.url = url
        self._ttl = ttl
        self._refetch_after = refetch_after
        self._timeout = timeout
        self._clock = clock
        self._keys: list[dict[str, Any]] = []
        self._fetched_at: float | None = None
        self._client: httpx.AsyncClient | None = None

    async def keys(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The published keys; `fresh` fetches again unless the set was fetched moments ago."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self._ttl
        may_refetch = self._fetched_at is None or now - self._fetched_at > self._refetch_after
        if stale or (fresh and may_refetch):
            await self._fetch()
        return self._keys

    @property
    def can_refetch(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at > self._refetch_after

    async def key(self, kid: str) -> dict[str, Any] | None:
        """The key with this id (fetching the set again once if the cached one lacks it)."""
        found = _by_id(await self.keys(), kid)
        if found is None and self.can_refetch:
            found = _by_id(await self.keys(fresh=True), kid)
        return found

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _fetch(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=True)
        try:
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            data = response.content
            if response.status_code != 200 or len(data) > MAX_KEY_SET_BYTES:
                raise KeySetUnavailable(f"{self.url} answered HTTP {response.status_code} ({len(data)} bytes)")
            parsed = json.loads(data)
        except httpx.HTTPError as exc:
            raise KeySetUnavailable(f"{self.url}: {type(exc).__name__}") from None
        except ValueError:
            raise KeySetUnavailable(f"{self.url} did not answer with JSON") from None
        keys = parsed.get("keys") if isinstance(parsed, dict) else None
        if not isinstance(keys, list):
            raise KeySetUnavailable(f"{self.url} has no `keys` list")
        self._keys = [k for k in keys if isinstance(k, dict)]
        self._fetched_at = self._clock()
        log.info("fetched %d public key(s) from %s", len(self._keys), self.url)


def _by_id(keys: Iterable[dict[str, Any]], kid: str) -> dict[str, Any] | None:
    return next((k for k in keys if k.get("kid") == kid), None)


def rsa_public_key(jwk: dict[str, Any]) -> RSAPublicKey:
    """An RSA key (`kty` RSA, `n`, `e`); ValueError when the entry is not one."""
    if jwk.get("kty") != "RSA":
        raise ValueError("not an RSA key")
    n = int.from_bytes(b64url_decode(str(jwk.get("n", ""))), "big")
    e = int.from_bytes(b64url_decode(str(jwk.get("e", ""))), "big")
    return RSAPublicNumbers(e, n).public_key()


def ed25519_public_key(jwk: dict[str, Any]) -> Ed25519PublicKey:
    """An Ed25519 key (`kty` OKP, `crv` Ed25519, `x`); ValueError when the entry is not one."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk.get("x", ""))))


def ed25519_verifies(keys: Iterable[dict[str, Any]], signature: bytes, message: bytes) -> bool:
    """Whether any Ed25519 key of the set made `signature` over `message`."""
    for jwk in keys:
        try:
            ed25519_public_key(jwk).verify(signature, message)
        except (ValueError, InvalidSignature):
            continue
        return True
    return False


async def verify_rs256_token(
    token: str, keys: KeySet, *, audiences: set[str], now: float | None = None, leeway: float = 60.0
) -> dict[str, Any]:
    """The claims of an RS256 JSON Web Token signed by a key of the set, current (`exp`, `nbf`, `iat` within
    `leeway`) and meant for one of `audiences`; SignatureRejected otherwise, KeySetUnavailable when the keys
    cannot be fetched."""
    pieces = token.split(".")
    if len(pieces) != 3 or not token.isascii() or len(token) > 16 * 1024:
        raise SignatureRejected("not a JSON Web Token")
    try:
        header = json.loads(b64url_decode(pieces[0]))
        claims = json.loads(b64url_decode(pieces[1]))
        signature = b64url_decode(pieces[2])
    except ValueError:
        raise SignatureRejected("malformed JSON Web Token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise SignatureRejected("malformed JSON Web Token")
    if header.get("alg") != "RS256":
        raise SignatureRejected(f"token algorithm {str(header.get('alg'))[:20]!r} is not RS256")
    kid = header.get("kid")
    jwk = await keys.key(kid) if isinstance(kid, str) else None
    if jwk is None:
        raise SignatureRejected("token signed by an unknown key")
    try:
        rsa_public_key(jwk).verify(
            signature, f"{pieces[0]}.{pieces[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
    except (ValueError, InvalidSignature):
        raise SignatureRejected("token signature does not verify") from None
    moment = time.time() if now is None else now
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or moment > expires + leeway:
        raise SignatureRejected("token expired")
    for claim in ("nbf", "iat"):
        value = claims.get(claim)
        if isinstance(value, int | float) and value > moment + leeway:
            raise SignatureRejected(f"token `{claim}` is in the future")
    audience = claims.get("aud")
    listed = audience if isinstance(audience, list) else [audience]
    offered = {a for a in listed if isinstance(a, str)}
    if not offered & audiences:
        raise SignatureRejected("token is meant for another audience")
    return claims

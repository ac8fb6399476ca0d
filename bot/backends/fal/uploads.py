"""Stills on fal's CDN: uploaded through fal-client's storage upload once per still and account, then reused.

fal's docs say URLs work with every model and data URIs only with some, and that a file uploaded to the CDN is
kept as long as its lifecycle says (`X-Fal-Object-Lifecycle`, which fal-client sends for `expires_in`). Every
upload here asks for `LIFETIME`, so soracast knows when a URL stops working and uploads the still again a day
before (`RENEW_BEFORE`): a character is uploaded once a week at most, not once per video, and fal keeps no copy
of it for longer than that. CDN URLs are public to whoever has them (they are long and random).

What was uploaded is remembered by the core (`HostedReference`, keyed by the still's content hash and
`hosting_account`), so another process or a restart reuses it too.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import fal_client
import httpx

from bot.backends.fal.errors import describe_body, map_fal_error, read_error
from bot.backends.fal.payload import Plan
from bot.backends.fal.queue import QueueClient
from bot.errors import APIUnavailable, VideosAPIError
from bot.models import HostedReference, utcnow

#: How long fal keeps an uploaded still (fal-client's `expires_in` values: "1d", "7d", "30d" …).
LIFETIME_NAME = "7d"
LIFETIME = timedelta(days=7)
#: A URL this close to its end is not used: a job may wait in fal's queue before the model reads it.
RENEW_BEFORE = timedelta(days=1)


def hosting_account(key: str, fal_url: str | None) -> str:
    """Whose CDN uploads these are: the host they went to and a fingerprint of the key (never the key)."""
    host = urlsplit(fal_url).netloc if fal_url else "v3.fal.media"
    return f"fal-cdn@{host}#{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _read(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


class StillHost:
    """Puts the stills a request sends on fal's CDN, reusing what the characters' `hosted` already holds."""

    def __init__(self, client: QueueClient, account: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._client = client
        self.account = account
        self._clock = clock

    async def urls(self, plan: Plan) -> tuple[dict[Path, str], list[HostedReference]]:
        """The URL of every still `plan` sends, and the uploads made for it (recorded in the characters' `hosted`
        too, so a second call for the same request uploads nothing)."""
        urls: dict[Path, str] = {}
        made: list[HostedReference] = []
        for character, path in plan.stills():
            if path in urls:
                continue
            data, digest = await asyncio.to_thread(_read, path)
            kept = character.hosted.get(digest)
            if kept is None or not kept.usable_until(self._clock() + RENEW_BEFORE):
                kept = next((m for m in made if m.sha256 == digest), None) or await self._upload(path, data, digest)
                if kept not in made:
                    made.append(kept)
                character.hosted[digest] = kept
            urls[path] = kept.url
        return urls, made

    async def _upload(self, path: Path, data: bytes, digest: str) -> HostedReference:
        started = self._clock()
        mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        try:
            url = await self._client.upload(
                data,
                mime,
                file_name=f"{digest[:16]}{path.suffix.lower() or '.jpg'}",
                lifecycle=fal_client.StorageSettings(expires_in=LIFETIME_NAME),
            )
        except (fal_client.FalClientHTTPError, httpx.HTTPStatusError) as exc:
            # fal's answer to the token request or the upload (the token request fails as httpx's error).
            detail = f"upload -> {describe_body(exc.response)}"
            raise _not_sent(map_fal_error(read_error(exc.response), log_detail=detail)) from None
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise _not_sent(
                APIUnavailable(
                    "Could not upload the character's pictures to fal; the video was not sent.",
                    hint="soracast tries again by itself; if it keeps happening, the bot's operator should check "
                    "the network.",
                    log_detail=f"upload: {type(exc).__name__}: {str(exc)[:200]}",
                )
            ) from None
        return HostedReference(account=self.account, sha256=digest, url=url, expires_at=started + LIFETIME)


def _not_sent(error: VideosAPIError) -> VideosAPIError:
    # Nothing was submitted: sending again later cannot make a second video.
    error.maybe_sent = False
    return error

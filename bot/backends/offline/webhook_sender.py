"""Webhooks an emulated API sends once its jobs end, retried as providers retry them, every attempt recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass
class SentWebhook:
    """One delivery attempt of a webhook: where, what, and the answer (`status` None: no answer came)."""

    url: str
    body: bytes = field(repr=False)
    headers: dict[str, str]
    status: int | None = None
    attempt: int = 1

    @property
    def json(self) -> Any:
        return json.loads(self.body)


#: Builds a finished job's webhooks: (url, body, headers) for each, or none. Called once the job has ended.
Announce = Callable[[str], Awaitable[list[tuple[str, bytes, dict[str, str]]]]]


class WebhookSender:
    """Sends an emulator's webhooks once its jobs end, retrying as providers do, and records every attempt.

    `lose_next` drops that many of the next deliveries (every attempt of them), as a network can lose them; a
    receiver answering anything but 2xx (or nothing) gets the delivery again, up to `attempts` times.
    """

    def __init__(self, offline: Any, *, attempts: int = 5, backoff: float = 0.05, timeout: float = 10.0) -> None:
        self.offline = offline
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.sent: list[SentWebhook] = []
        self.lose_next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def after_job(self, video_id: str, announce: Announce) -> None:
        """Once the renderer's job `video_id` has ended, send what `announce(video_id)` builds."""
        task = asyncio.get_running_loop().create_task(self._watch(video_id, announce), name=f"webhook-{video_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def delivered(self, url_part: str = "") -> list[SentWebhook]:
        """Deliveries a receiver acknowledged (2xx), optionally only those whose URL contains `url_part`."""
        return [w for w in self.sent if w.status is not None and 200 <= w.status < 300 and url_part in w.url]

    async def _watch(self, video_id: str, announce: Announce) -> None:
        try:
            while True:
                video = await self.offline.retrieve_video(video_id)
                if str(getattr(video, "status", "")) in ("completed", "failed"):
                    break
                await asyncio.sleep(min(0.25, max(0.002, self.offline.seconds_left(video_id))))
            for url, body, headers in await announce(video_id):
                if self.lose_next > 0:
                    self.lose_next -= 1
                    log.info("emulator: lost the webhook to %s on purpose", url)
                    continue
                await self._deliver(url, body, headers)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("emulator: sending the webhook of %s failed", video_id)

    async def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        for attempt in range(1, self.attempts + 1):
            record = SentWebhook(url=url, body=body, headers=dict(headers), attempt=attempt)
            self.sent.append(record)
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    record.status = response.status
                    await response.read()
                if 200 <= response.status < 300:
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("emulator: webhook to %s got no answer: %s", url, type(exc).__name__)
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

"""The Notifier protocol: how the core tells a platform what happened to a generation."""

from __future__ import annotations

from typing import Protocol

from bot.models import DeliveryReceipt, Generation


class DestinationGone(Exception):
    """Where a generation was to be posted is gone for good (the app was removed from that workspace, its token
    revoked): the core ends the job without posting it, with one log line, and never tries again."""


class Notifier(Protocol):
    """Implemented by each adapter; the core calls it, never the other way round.

    `progress` is already rate-bounded by the core. `completed` must post the video (or explain why it could
    not be attached) and return a receipt; raising means "not delivered", and the core will try again later —
    except `DestinationGone`, which ends the job quietly.
    """

    async def progress(self, generation: Generation) -> None: ...

    async def completed(self, generation: Generation) -> DeliveryReceipt: ...

    async def failed(self, generation: Generation) -> None: ...

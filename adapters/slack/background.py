"""Work that runs after Slack has been acknowledged: kept referenced, failures reported to the requester."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from adapters.slack import render
from adapters.slack.origin import Origin
from adapters.slack.replies import Replier
from bot.chat.acks import AckGate
from bot.errors import SoracastError

log = logging.getLogger(__name__)


class Background:
    """Runs one coroutine per request after `ack()`; a SoracastError becomes a private message, anything else
    is logged and answered with a generic one."""

    def __init__(self, replier: Replier, concurrency: int = 16, gate: AckGate | None = None) -> None:
        self._replier = replier
        #: Requests still waiting for their ack (HTTP mode); work waits for them, briefly.
        self.gate = gate or AckGate()
        # A burst of commands must not starve the acks of the ones still arriving: jobs run a few at a time.
        self._slots = asyncio.Semaphore(concurrency)
        # asyncio keeps only weak references to tasks: without this set a running job could be collected.
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, origin: Origin, work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """Start `work` now; `what` names it in the log."""
        task = asyncio.create_task(self._guarded(origin, work, what), name=f"slack-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, origin: Origin, work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await self.gate.settle()
            async with self._slots:
                await work
            return
        except asyncio.CancelledError:
            raise
        except SoracastError as err:
            log.info("slack %s refused: %s", what, err.code)
            message = render.error_message(err)
        except Exception:
            log.exception("slack %s failed unexpectedly", what)
            message = render.unexpected_error_message()
        try:
            await self._replier.ephemeral(origin, message)
        except Exception as exc:
            log.warning("could not tell %s about a failed %s: %s", origin.user_id, what, type(exc).__name__)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every started job (and any job those start) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel what is still running (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

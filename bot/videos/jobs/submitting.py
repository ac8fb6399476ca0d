"""Sending a generation's create exactly once: claim it, build the request, send it, and say what came of it;
settle a create whose answer was lost (find the job, wait for its webhook, or send it again); take the
account's shared create turns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from pathlib import Path

from bot.backends.base import JobState, VideoBackend, VideoRequest
from bot.characters.handles import mentions_of
from bot.errors import GenerationNotReady, RateLimited, SoracastError, VideosAPIError
from bot.models import Generation, GenerationKind, GenerationStatus, utcnow
from bot.videos.jobs.state import (
    FIND_JOB_GRACE,
    MAX_SOURCE_CHAIN,
    MAX_SUBMIT_ATTEMPTS,
    OFFLINE_FIRST_WAIT,
    Outcome,
    RunnerState,
    capitalised,
    on_disk,
)
from bot.videos.limiter import Priority

log = logging.getLogger(__name__)


class Submitter(RunnerState):
    """Sends creates and settles those whose answer was lost. What is sent (or may have been) is tracked from
    then on (the tracker's `track`); a create put back in line wakes the line (the dispatcher's `wake_line`)."""

    async def _send(self, generation_id: str, *, raise_refusal: bool) -> str | None:
        """Claim a waiting generation and send its create; see the module docstring for what each outcome means."""
        until = utcnow() + timedelta(seconds=self._settings.lease_seconds)
        generation = await self._storage.claim_for_submit(generation_id, self.owner, until)
        if generation is None:
            return None  # cancelled, or another process took it
        if not raise_refusal:
            self._left_line.add(generation.id)  # from the line, where its message shows a place
        self._sending.add(generation.id)
        try:
            return await self._send_claimed(generation, raise_refusal)
        finally:
            self._sending.discard(generation.id)
            self._woken_while_sending.discard(generation.id)

    async def _send_claimed(self, generation: Generation, raise_refusal: bool) -> str | None:
        backend = self._catalog.backend(generation.backend)
        limiter = self.limiter(generation.backend)
        limiter.take_submit()
        generation.submitted_at = utcnow()
        generation.submit_attempts += 1
        await self._storage.save_generation(generation)  # from here a crash means "outcome unknown"
        try:
            if backend is None:
                raise GenerationNotReady(
                    f"This video was meant for {generation.backend}, which this bot no longer uses.",
                    hint="Make it again with /sora.",
                )
            request = await self.build_request(generation, backend)
            await self._registry.host_references(request, backend)
            await limiter.gate(Priority.SUBMIT)
            job = await backend.submit(request, generation.api_prompt)
        except RateLimited as exc:
            pause = limiter.rate_limited(exc.retry_after, create=True)
            log.info("%s rate limited %s's create: back in line, %.1fs pause", generation.backend, generation.id, pause)
            if backend is not None:
                await self._hold_submits(backend, pause)
            await self._requeue(generation)
            return Outcome.REQUEUED
        except VideosAPIError as exc:
            if exc.retryable and not exc.maybe_sent:
                pause = limiter.unreachable()
                log.info("%s could not be reached for %s's create: back in line, %.1fs pause", generation.backend,
                         generation.id, pause)
                await self._requeue(generation)
                return Outcome.REQUEUED
            if exc.retryable:
                # The create may have made a job: the tracker finds out before anything is sent again.
                log.warning("create of %s got no answer (%s); checking whether it was made", generation.id, exc.code)
                woken = generation.id in self._woken_while_sending
                self._sending.discard(generation.id)
                self.track(generation.id, first_wait=0.0 if woken else self._find_job_grace)
                return Outcome.UNKNOWN
            await self._refused(generation, exc, raise_refusal)
            return None
        except SoracastError as exc:
            await self._refused(generation, exc, raise_refusal)
            return None
        limiter.succeeded()
        limiter.request_succeeded()
        self.apply(generation, job)
        await self._storage.save_generation(generation)
        await self._budgets.spent(generation.id)
        log.info("generation %s sent as %s", generation.id, generation.api_video_id)
        first_wait = self._settings.poll_interval
        if generation.backend == "offline":
            first_wait = min(first_wait, OFFLINE_FIRST_WAIT)
        if generation.id in self._woken_while_sending:
            first_wait = 0.0  # its webhook came before the create's answer was in
        self._sending.discard(generation.id)
        self.track(generation.id, first_wait=first_wait)
        return Outcome.SENT

    async def _requeue(self, generation: Generation) -> None:
        generation.status = GenerationStatus.WAITING
        generation.submitted_at = None
        await self._storage.save_generation(generation)
        await self._storage.release_lease(self.owner, generation.id)
        self.wake_line(generation.backend)

    async def _refused(self, generation: Generation, error: SoracastError, raise_refusal: bool) -> None:
        """The backend refused the create: synchronously the user is told and nothing is left behind; from the
        line, the generation fails with the reason (in its message) and its cost is given back."""
        if raise_refusal:
            await self._budgets.release(generation.id)
            await self._storage.delete_generation(generation.id)
            raise error
        self.fail(generation, error.code, error.user_text())
        await self._storage.save_generation(generation)
        await self._budgets.release(generation.id)
        self._sending.discard(generation.id)
        self.track(generation.id)

    async def build_request(self, generation: Generation, backend: VideoBackend) -> VideoRequest:
        """What the backend is sent: characters with their references, the source for remixes and extensions."""
        caps = self._catalog.capabilities_of(generation.backend, generation.model)
        if caps is None:
            raise GenerationNotReady(
                f"{generation.model} is no longer offered on {generation.backend}.", hint="Make it again with /sora."
            )
        characters = await self._registry.inputs_for(generation.characters, backend, caps)
        source_job, source_video, source_seconds = None, None, None
        if generation.kind is not GenerationKind.CREATE:
            parent = await self._storage.get_generation(generation.parent_id or "")
            if parent is None or parent.api_video_id is None:
                raise GenerationNotReady("The video this builds on is gone.", hint="Start from a new /sora video.")
            source_seconds = await self.total_seconds(parent)
            if parent.backend == generation.backend:
                # The backend made it and knows it by its id: the video itself need not travel.
                source_job = parent.api_video_id
                source_video = parent.video_path if await on_disk(parent.video_path) else None
            else:
                source_video = await self._source_video(parent, backend)
        used = set(generation.handles)
        return VideoRequest(
            kind=generation.kind,
            prompt=generation.prompt,
            mentions=[m for m in mentions_of(generation.prompt) if m.handle in used],
            characters=characters,
            model=generation.model,
            seconds=int(generation.seconds),
            size=generation.size,
            source_job_id=source_job,
            source_video=source_video,
            source_seconds=source_seconds,
            request_key=generation.id,
        )

    async def total_seconds(self, generation: Generation) -> int:
        """How long a finished video is: a new one its own seconds, an edit its source's length, an extension its
        source's length and what it added (read up the chain of sources)."""
        added = 0
        current: Generation | None = generation
        for _ in range(MAX_SOURCE_CHAIN):
            assert current is not None
            if current.kind is GenerationKind.CREATE:
                return added + int(current.seconds)
            if current.kind is GenerationKind.EXTEND:
                added += int(current.seconds)
            parent = await self._storage.get_generation(current.parent_id or "")
            if parent is None:
                # The chain is broken (an old record): an edit recorded its source's length, an extension less.
                return added + (int(current.seconds) if current.kind is GenerationKind.REMIX else 0)
            current = parent
        return added

    async def finished_video(self, generation: Generation) -> Path | None:
        """A finished generation's video on this machine, downloaded again from its backend if it is not here;
        None when neither has it any more."""
        backend = self._catalog.backend(generation.backend)
        if backend is None:
            path = generation.video_path
            return path if path is not None and await asyncio.to_thread(path.exists) else None
        return await self._source_video(generation, backend)

    async def _source_video(self, parent: Generation, backend: VideoBackend) -> Path | None:
        """The finished video a remix or extension builds on, on this machine (fetched again if it is not)."""
        path = parent.video_path
        if path is not None and await asyncio.to_thread(path.exists):
            return path
        with contextlib.suppress(VideosAPIError):
            assert parent.api_video_id is not None
            return await backend.download(parent.api_video_id, self.media_path(parent, ".mp4"))
        return None

    @property
    def _find_job_grace(self) -> float:
        # A job made by a create that got no answer may take a moment to show in the list: wait a poll interval.
        return min(FIND_JOB_GRACE, self._settings.poll_interval)

    async def _settle_create(self, generation: Generation, backend: VideoBackend) -> None:
        """A generation whose create may or may not have made a job: find it, or send the create (again)."""
        if generation.status is GenerationStatus.ACCEPTED and generation.submitted_at is None:
            generation.submitted_at = generation.created_at  # stored by an older version: assume it went out
        if generation.submitted_at is not None and backend.announces_jobs and not backend.can_list_jobs:
            if await self._await_announcement(generation, backend):
                return
        found: JobState | None = None
        request = await self.build_request(generation, backend)
        if generation.submitted_at is not None and backend.can_list_jobs:
            since = generation.submitted_at - timedelta(seconds=FIND_JOB_GRACE + self._settings.api_timeout)
            found = await self._call(
                backend, Priority.SUBMIT, lambda: backend.find_job(request, generation.api_prompt, since)
            )
            if found is not None and await self._storage.find_generation_by_video(found.id) is not None:
                found = None  # that job belongs to another generation with the same words
        if found is not None:
            log.info("the create of %s had made %s: adopted, not sent again", generation.id, found.id)
        else:
            if generation.submit_attempts >= MAX_SUBMIT_ATTEMPTS:
                self.fail(
                    generation,
                    "not_sent",
                    f"{capitalised(backend.service)} did not answer {generation.submit_attempts} requests to make this "
                    "video.",
                )
                await self._storage.save_generation(generation)
                await self._budgets.refund(generation.id)
                return
            if generation.submitted_at is not None and backend.announces_jobs and not backend.can_list_jobs:
                log.warning(
                    "no webhook from %s for the unanswered create of %s within %.0f s; sending it again",
                    backend.service,
                    generation.id,
                    self._settings.webhook_wait,
                )
            elif generation.submitted_at is not None and not backend.can_list_jobs:
                log.warning(
                    "%s cannot say whether the unanswered create of %s made a job; sending it again",
                    backend.service,
                    generation.id,
                )
            while (turn := await self._submit_turn(backend.name)) > 0:
                await self._sleep(generation.id, turn)  # a create sent again takes a turn like any other
            # Conditional: a webhook may have given it its job a moment ago, and that must not be overwritten.
            if not await self._stamp_resend(generation, utcnow()):
                return
            try:
                prompt = generation.api_prompt
                found = await self._call(backend, Priority.SUBMIT, lambda: backend.submit(request, prompt))
            except VideosAPIError as exc:
                if exc.retryable and not exc.maybe_sent:
                    await self._stamp_resend(generation, None)
                raise
        self.apply(generation, found)
        await self._storage.save_generation(generation)
        # Sent (or adopted): it counts as spent, unless the backend has failed it already (not billed).
        if generation.status is GenerationStatus.FAILED:
            await self._budgets.refund(generation.id)
        else:
            await self._budgets.spent(generation.id)

    async def _stamp_resend(self, generation: Generation, at: datetime | None) -> bool:
        """Record that the create goes out again now (or, with None, that it never left); False — after taking
        up what is stored — when the generation has a job by now or left `submitting`."""
        stamped = await self._storage.stamp_resend(generation.id, at)
        if stamped is None:
            await self._refresh(generation)
            return False
        generation.submitted_at, generation.submit_attempts = stamped.submitted_at, stamped.submit_attempts
        return True

    async def _await_announcement(self, generation: Generation, backend: VideoBackend) -> bool:
        """For a backend that announces its jobs by webhook: while that webhook can still come (within
        `SORACAST_WEBHOOK_WAIT` of the create, derived from what is stored, so a restart keeps waiting), wait for
        it instead of sending again. True while waiting (or once adopted); False when the wait is over."""
        assert generation.submitted_at is not None
        deadline = generation.submitted_at + timedelta(seconds=self._settings.webhook_wait)
        remaining = (deadline - utcnow()).total_seconds()
        if remaining <= 0:
            return False
        if generation.id not in self._awaiting:
            self._awaiting.add(generation.id)
            log.info(
                "the create of %s got no answer; waiting up to %.0f s for %s's webhook instead of sending it again",
                generation.id,
                remaining,
                backend.service,
            )
        # A webhook received here (or by another process) wakes this; the stored row is read again anyway, since
        # processes on SQLite cannot wake each other.
        await self._sleep(generation.id, min(remaining, self._settings.poll_interval))
        await self._refresh(generation)
        if generation.api_video_id is not None:
            log.info("the create of %s had made %s (its webhook said so): adopted, not sent again",
                     generation.id, generation.api_video_id)
            await self._budgets.spent(generation.id)
        return True

    async def _refresh(self, generation: Generation) -> None:
        """Take up what is stored for a generation this tracker holds (another writer changed it)."""
        stored = await self._storage.get_generation(generation.id)
        if stored is None:
            generation.status = GenerationStatus.DELETED
            return
        for name in Generation.model_fields:
            setattr(generation, name, getattr(stored, name))

    async def _submit_turn(self, backend_name: str) -> float:
        """0 when this process may send a create to the backend now; else seconds to wait. Where the storage is
        shared between machines, turns come from the account's one limiter there, at this process's rate."""
        backend = self._catalog.backend(backend_name)
        if backend is None or not self._storage.shared_between_machines:
            return 0.0
        every = 60.0 / self.limiter(backend_name).submit_rate
        try:
            return await self._storage.take_submit_turn(backend.account_key, utcnow(), every)
        except Exception as exc:  # this process's own limiter still holds it to the rate
            log.warning("no shared create turn for %s: %s", backend_name, type(exc).__name__)
            return 0.0

    async def _hold_submits(self, backend: VideoBackend, pause: float) -> None:
        """A 429: every process holds its creates to this account for as long as the provider asked."""
        if not self._storage.shared_between_machines:
            return
        try:
            await self._storage.hold_submits(backend.account_key, utcnow() + timedelta(seconds=pause))
        except Exception as exc:
            log.warning("could not hold other processes' creates to %s: %s", backend.name, type(exc).__name__)

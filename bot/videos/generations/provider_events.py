"""A backend's webhook about a job: its tracker woken, here or in whichever process holds it, and a job
whose create's answer was lost given to its generation."""

from __future__ import annotations

import logging

from bot.backends.base import VideoBackend
from bot.errors import VideosAPIError
from bot.models import Generation, GenerationStatus
from bot.videos.generations.state import ServiceState

log = logging.getLogger(__name__)


class ProviderEvents(ServiceState):
    """Takes the backends' webhooks (through `bot.web`) to the jobs they are about."""

    async def on_video_event(self, api_video_id: str) -> bool:
        """Handle a backend's webhook about a job: wake its tracker, here or in whichever process holds it."""
        generation = await self._storage.find_generation_by_video(api_video_id)
        if generation is None:
            return False
        await self._wake_holder(generation)
        return True

    async def on_provider_event(self, backend_name: str, provider_id: str, generation_id: str | None = None) -> bool:
        """Handle a provider's webhook about its job `provider_id`, which names soracast's generation where the
        provider carries it (Gemini's `user_metadata`, fal's URL path). A generation whose create's answer was
        lost is given that job here (after asking the provider that it exists and, where it can say, that it was
        made for this generation), then tracked as usual; the holder is woken to look at once. False when no
        generation of that backend is concerned.

        Raises a retryable `VideosAPIError` when the provider could not be asked (its webhook is retried)."""
        backend = self._catalog.backend(backend_name)
        if backend is None:
            return False
        generation = await self._storage.get_generation(generation_id) if generation_id else None
        if generation is None or generation.backend != backend_name:
            generation = await self._storage.find_generation_by_video(provider_id)
            if generation is None or generation.backend != backend_name:
                return False
        if generation.api_video_id is not None:
            if backend.provider_id_of(generation.api_video_id) != provider_id:
                # An earlier create of this generation made a job after all; the one soracast tracks is another.
                log.warning("a webhook names %s for %s, which tracks another job; ignored", provider_id[:80],
                            generation.id)
                return True
            await self._wake_holder(generation)
            return True
        if generation.status not in (GenerationStatus.SUBMITTING, GenerationStatus.ACCEPTED):
            return True
        await self._adopt(backend, generation, backend.job_id_of(provider_id, generation.model))
        return True

    async def _adopt(self, backend: VideoBackend, generation: Generation, job_id: str) -> None:
        """Give a generation whose create's answer was lost the job its webhook announced."""
        owner = await self._storage.find_generation_by_video(job_id)
        if owner is not None:
            if owner.id != generation.id:
                log.warning("a webhook gives %s the job of %s; ignored", generation.id, owner.id)
            return
        try:
            state = await self.runner.call(backend, lambda: backend.poll(job_id))
        except VideosAPIError as exc:
            if exc.retryable:
                raise
            log.warning("the job a webhook names for %s cannot be read (%s); not adopted", generation.id, exc.code)
            return
        if state.request_key is not None and state.request_key != generation.id:
            log.warning("the job a webhook names for %s was made for %s; not adopted", generation.id,
                        state.request_key[:40])
            return
        if await self._storage.adopt_job(generation.id, job_id):
            log.info("the lost create of %s had made %s (its webhook said so): adopted", generation.id, job_id[:120])
            await self._wake_holder(generation)

    async def _wake_holder(self, generation: Generation) -> None:
        if self.runner.wake(generation.id):
            return
        if generation.delivered_at is None:
            if await self.runner.take_over_if_dead(generation):
                return  # its holder died: this process looks at it now instead of after the lease runs out
            # Another process holds it (the Discord worker, say, for a webhook received by `web`): wake it there.
            self.runner.tell_holder(generation.id)
            if generation.platform in self.runner.platforms:
                await self.runner.start()  # …and take it up here if nobody holds it any more

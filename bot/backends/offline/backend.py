"""The offline renderer as a backend, playing the rules of the backend named by `SORACAST_OFFLINE_AS`.

Playing a backend means running that backend's own client against this machine: the OpenAI-shape backend
talks to the renderer in process, the Gemini backend drives `google-genai` against the Interactions API
emulator, and the fal backend drives `fal-client` against the emulated queue, each served on a free port of
127.0.0.1. So a newcomer with no key meets the same checks, limits and
messages as live — and the client code paths are the ones that run live.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.backends.base import (
    BackendCheck,
    CharacterInput,
    HostsReferences,
    JobState,
    ModelCapabilities,
    VideoBackend,
    VideoRequest,
)
from bot.backends.offline.emulation import start_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.config import BackendChoice, Settings

#: The key the local emulators are served with: never a real one.
OFFLINE_KEY = "offline-renderer"


class OfflineBackend:
    """A backend whose API is served on this machine; closing it stops that server and the renderer."""

    service = "the offline renderer"

    def __init__(self, inner: VideoBackend, closers: Sequence[Callable[[], Awaitable[Any]]], plays: str) -> None:
        self.inner = inner
        self.name = "offline"
        self.account_key = "offline"
        self.plays = plays
        self._closers = list(closers)
        if isinstance(inner, HostsReferences):
            # Playing a backend that uploads its references: so does this one (to the emulator).
            self.hosting_account = inner.hosting_account
            self.host_references = inner.host_references

    @property
    def can_list_jobs(self) -> bool:
        return self.inner.can_list_jobs

    @property
    def announces_jobs(self) -> bool:
        return self.inner.announces_jobs

    def job_id_of(self, provider_id: str, model: str) -> str:
        return self.inner.job_id_of(provider_id, model)

    def provider_id_of(self, job_id: str) -> str:
        return self.inner.provider_id_of(job_id)

    def models(self) -> Sequence[ModelCapabilities]:
        return self.inner.models()

    def compose_prompt(self, request: VideoRequest) -> str:
        return self.inner.compose_prompt(request)

    async def create_character(self, character: CharacterInput) -> str:
        return await self.inner.create_character(character)

    async def submit(self, request: VideoRequest, api_prompt: str) -> JobState:
        return await self.inner.submit(request, api_prompt)

    async def poll(self, job_id: str) -> JobState:
        return await self.inner.poll(job_id)

    async def poll_many(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return await self.inner.poll_many(job_ids)

    async def find_job(self, request: VideoRequest, api_prompt: str, since: datetime) -> JobState | None:
        return await self.inner.find_job(request, api_prompt, since)

    async def download(self, job_id: str, dest: Path) -> Path:
        return await self.inner.download(job_id, dest)

    async def download_thumbnail(self, job_id: str, dest: Path) -> Path | None:
        return await self.inner.download_thumbnail(job_id, dest)

    async def cancel(self, job_id: str) -> None:
        await self.inner.cancel(job_id)

    async def delete(self, job_id: str) -> None:
        await self.inner.delete(job_id)

    async def check(self) -> BackendCheck:
        # Nothing leaves this machine: the played backend's own check runs against the local emulator.
        return await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()
        for close in self._closers:
            await close()


async def open_offline_backend(settings: Settings, *, root: Path | None = None, **renderer: Any) -> OfflineBackend:
    """The offline renderer behind the client of `settings.offline_as`, rooted in the data directory."""
    api = OfflineVideosAPI.from_settings(settings, root=root or settings.data_dir / "offline-videos", **renderer)
    plays = settings.offline_as
    if plays is BackendChoice.GEMINI:
        from bot.backends.gemini.backend import GeminiBackend
        from bot.backends.gemini.models import gemini_models
        from bot.backends.offline.gemini_api import create_gemini_app
        from bot.backends.offline.gemini_requests import ReferenceLimits

        limits = ReferenceLimits(
            max_images=settings.gemini_max_reference_images, max_videos=settings.gemini_max_reference_videos
        )
        runner, origin = await start_app(create_gemini_app(api, api_key=OFFLINE_KEY, limits=limits), "127.0.0.1", 0)
        models = gemini_models(
            settings.gemini_models, max_images=limits.max_images, max_videos=limits.max_videos
        )
        inner: VideoBackend = GeminiBackend(
            OFFLINE_KEY,
            models,
            base_url=origin,
            name="offline",
            account_key="offline",
            spool_dir=settings.resolved_media_dir,
        )
        return OfflineBackend(inner, [runner.cleanup, api.aclose], plays.value)
    if plays is BackendChoice.FAL:
        from bot.backends.fal.backend import FalBackend
        from bot.backends.offline.fal_api import create_fal_app

        runner, origin = await start_app(create_fal_app(api, api_key=OFFLINE_KEY), "127.0.0.1", 0)
        inner = FalBackend.from_settings(
            settings, key=OFFLINE_KEY, queue_url=origin, name="offline", account_key="offline"
        )
        return OfflineBackend(inner, [runner.cleanup, api.aclose], plays.value)
    from bot.backends.openai.backend import OpenAIBackend

    return OfflineBackend(OpenAIBackend(api, settings, name="offline", account_key="offline"), [], plays.value)

"""Assembling soracast in one place: `build_app(settings)` is what the CLI and the tests call."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

from bot import media
from bot.config import Settings
from bot.errors import ConfigError
from bot.generations import GenerationService
from bot.registry import CharacterRegistry
from bot.videos.api import VideosAPI
from storage.base import Storage

log = logging.getLogger(__name__)


@dataclass
class Soracast:
    """The assembled core an adapter talks to."""

    settings: Settings
    storage: Storage
    videos: VideosAPI
    registry: CharacterRegistry
    generations: GenerationService

    async def aclose(self) -> None:
        """Stop tracking (jobs stay stored and resume next start), then close the API client and storage."""
        await self.generations.aclose()
        await self.videos.aclose()
        await self.storage.close()


def open_storage(settings: Settings) -> Storage:
    """The storage the database URL names; SQLite is the embedded default."""
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        from storage.sqlite import SQLiteStorage

        return SQLiteStorage(url.removeprefix("sqlite:///"))
    raise ConfigError(f"SORACAST_DATABASE_URL: unsupported database {url.split(':', 1)[0]!r}; use sqlite:///path")


def open_videos_api(settings: Settings) -> VideosAPI:
    """The real HTTP client when a key is set, otherwise the offline renderer (said once, in the log)."""
    if settings.use_offline:
        from bot.videos.offline import OfflineVideosAPI

        reason = "SORACAST_OFFLINE is set" if settings.offline else "no OPENAI_API_KEY is set"
        log.warning("%s: using the built-in offline renderer (videos are made locally)", reason)
        return OfflineVideosAPI.from_settings(settings)
    from bot.videos.client import HTTPVideosAPI

    return HTTPVideosAPI.from_settings(settings)


async def build_app(
    settings: Settings, *, videos: VideosAPI | None = None, storage: Storage | None = None
) -> Soracast:
    """Open storage (applying migrations), choose the Videos API and wire the core services."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.resolved_media_dir.mkdir(parents=True, exist_ok=True)
    store = storage or open_storage(settings)
    await store.open()
    api = videos or open_videos_api(settings)
    registry = CharacterRegistry(
        store, api, media.ClipLimits.from_settings(settings), settings.resolved_media_dir / "work"
    )
    generations = GenerationService(store, api, registry, settings)
    return Soracast(settings=settings, storage=store, videos=api, registry=registry, generations=generations)


def settle_after_start_up() -> None:
    """Call once an adapter is wired: what exists now (modules, the core, caches) lives as long as the process.

    Freezing it keeps every later full collection from walking ~100k start-up objects, which otherwise stalls
    a burst of chat acknowledgements by tens of milliseconds.
    """
    gc.collect()
    gc.freeze()

"""Assembling soracast in one place: `build_app(settings)` is what the CLI and the tests call."""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from bot.backends import open_backends
from bot.backends.base import VideoBackend
from bot.backends.catalog import ModelCatalog
from bot.backends.openai.api import VideosAPI
from bot.characters import media
from bot.characters.access import CharacterAccess
from bot.characters.access_requests import AccessRequests
from bot.characters.backfill import backfill_references
from bot.characters.character_videos import CharacterVideos
from bot.characters.owner_notices import OwnerNotices
from bot.characters.registry import CharacterRegistry
from bot.config import Settings
from bot.errors import ConfigError
from bot.videos.budgets import Budgets
from bot.videos.departures import Departures
from bot.videos.generations import GenerationService
from bot.videos.jobs import JobRunner
from storage.base import Storage

log = logging.getLogger(__name__)


@dataclass
class Soracast:
    """The assembled core an adapter talks to."""

    settings: Settings
    storage: Storage
    catalog: ModelCatalog
    registry: CharacterRegistry
    budgets: Budgets
    generations: GenerationService
    departures: Departures
    #: Who may use a character, asking its owner, and every video it appears in.
    access: CharacterAccess
    requests: AccessRequests
    character_videos: CharacterVideos

    @property
    def backend(self) -> VideoBackend:
        """The backend new videos go to."""
        return self.catalog.default_backend

    async def aclose(self) -> None:
        """Stop tracking (jobs stay stored and resume next start), then close the backends and storage."""
        await self.departures.aclose()
        await self.generations.aclose()
        for backend in self.catalog.backends():
            await backend.aclose()
        await self.storage.close()


def open_storage(settings: Settings) -> Storage:
    """The storage the database URL names: SQLite (the embedded default) or Postgres."""
    url, variable = settings.resolved_database_url, settings.database_url_variable
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        path = url.removeprefix("sqlite:///")
        if path == url or not path:
            raise ConfigError(f"{variable}: a SQLite URL is sqlite:///path/to/soracast.db")
        from storage.sqlite import SQLiteStorage

        return SQLiteStorage(path)
    if scheme in ("postgresql", "postgres"):
        from storage.postgres import PostgresStorage

        try:
            return PostgresStorage(url, max_connections=settings.database_pool_size, setting=variable)
        except ValueError as exc:
            raise ConfigError(f"{variable}: {exc}") from None
    raise ConfigError(
        f"{variable}: unsupported database {scheme or url!r}; use sqlite:///path or postgresql://user@host/db"
    )


async def migrate(settings: Settings) -> None:
    """Apply pending migrations and stop: `soracast migrate`, the Procfile's release step."""
    store = open_storage(settings)
    await store.open()
    await store.close()


def wrap_videos_api(api: VideosAPI, settings: Settings) -> dict[str, VideoBackend]:
    """An OpenAI-shape `VideosAPI` as the only backend (tests and benchmarks hand one in)."""
    from bot.backends.offline.renderer import OfflineVideosAPI
    from bot.backends.openai.backend import OpenAIBackend

    if isinstance(api, OfflineVideosAPI):
        return {"offline": OpenAIBackend(api, settings, name="offline", account_key="offline")}
    return {"openai": OpenAIBackend(api, settings)}


async def build_app(
    settings: Settings,
    *,
    videos: VideosAPI | None = None,
    backends: Mapping[str, VideoBackend] | None = None,
    default_backend: str | None = None,
    storage: Storage | None = None,
) -> Soracast:
    """Open storage (applying migrations), open the backends and wire the core services.

    `videos` (an OpenAI-shape API) or `backends` replace the configured backends, for tests and benchmarks.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.resolved_media_dir.mkdir(parents=True, exist_ok=True)
    if videos is not None:
        backends = wrap_videos_api(videos, settings)
    if backends is not None:
        opened, default = dict(backends), default_backend or next(iter(backends))
    else:
        opened, default = await open_backends(settings)
    try:
        catalog = ModelCatalog(opened, default, settings)
    except BaseException:
        for backend in opened.values():
            await backend.aclose()
        raise
    store = storage or open_storage(settings)
    await store.open()
    registry = CharacterRegistry(
        store,
        catalog,
        media.ClipLimits.from_settings(settings),
        settings.resolved_media_dir,
        max_characters=settings.max_characters_per_workspace,
    )
    budgets = Budgets(store, catalog, settings)
    runner = JobRunner(store, catalog, registry, budgets, settings)
    notices = OwnerNotices(
        store, runner.messenger, lambda: runner.platforms, timedelta(minutes=settings.owner_digest_minutes)
    )
    generations = GenerationService(store, catalog, registry, budgets, settings, runner, notices)
    await backfill_references(store, settings, registry.limits)
    return Soracast(
        settings=settings,
        storage=store,
        catalog=catalog,
        registry=registry,
        budgets=budgets,
        generations=generations,
        departures=Departures(store, settings, generations),
        access=CharacterAccess(store, registry),
        requests=AccessRequests(store, registry, runner.messenger),
        character_videos=CharacterVideos(store, registry),
    )


def settle_after_start_up() -> None:
    """Call once an adapter is wired: what exists now (modules, the core, caches) lives as long as the process.

    Freezing it keeps every later full collection from walking ~100k start-up objects, which otherwise stalls
    a burst of chat acknowledgements by tens of milliseconds.
    """
    gc.collect()
    gc.freeze()

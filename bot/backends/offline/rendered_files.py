"""Each completed job's files on disk (video, thumbnail, spritesheet), rendered once, on its first download.

A lock per render keeps concurrent downloads from rendering twice. In `full` mode each job is drawn on its own;
`shared` and `stub` renders live in a cache that every job of the same shape links (or copies) from.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.backends.offline.clips import link_all
from bot.backends.offline.drawing import SceneRenderer
from bot.backends.offline.job_table import JobRecord, scene_shape
from bot.backends.offline.spec import FILE_NAMES, RenderMode
from bot.backends.openai.schemas import ContentVariant


class RenderedFiles:
    """Where a job's files are, making them first (in a worker thread) when they are not there yet."""

    def __init__(self, root: Path, mode: RenderMode, renderer: SceneRenderer) -> None:
        """Files under `root`/videos (and `root`/cache for shared and stub renders)."""
        self.root = root
        self.mode = mode
        self.renderer = renderer
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(
        self, job: JobRecord, made: Callable[[JobRecord, Path], Awaitable[None]]
    ) -> dict[ContentVariant, Path]:
        """The job's files by variant; `made(job, video)` is awaited, under the lock, when they were just made."""
        folder = self.root / "videos" / job.id
        paths = {variant: folder / name for variant, name in FILE_NAMES.items()}
        if all(path.exists() for path in paths.values()):
            return paths
        key = self.cache_key(job)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if all(path.exists() for path in paths.values()):
                return paths
            if self.mode == "full":
                await asyncio.to_thread(self.renderer.render, job.scene, job.size, folder)
                await made(job, paths[ContentVariant.VIDEO])
                return paths
            # Shared and stub renders live in the cache; each job links (or copies) the cached files.
            cache = self.root / "cache" / key
            cached = {variant: cache / name for variant, name in FILE_NAMES.items()}
            if not all(path.exists() for path in cached.values()):
                if self.mode == "stub":
                    await asyncio.to_thread(self.renderer.render_stub, job.size, job.scene.total_seconds, cache)
                else:
                    await asyncio.to_thread(self.renderer.render, job.scene, job.size, cache)
            await asyncio.to_thread(link_all, cached, paths)
            await made(job, paths[ContentVariant.VIDEO])
        return paths

    def cache_key(self, job: JobRecord) -> str:
        """One render per job in `full` mode; per size, length and scene shape in the shared modes."""
        if self.mode == "full":
            return job.id
        if self.mode == "stub":
            return f"stub-{job.size}-{job.scene.total_seconds}"
        shape = scene_shape(job.scene)
        digest = hashlib.sha1(shape.encode()).hexdigest()[:16]
        return f"shared-{job.size}-{job.scene.total_seconds}-{digest}"

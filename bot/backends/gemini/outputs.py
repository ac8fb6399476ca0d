"""Finished videos until they are downloaded: one that came inline is written to a spool file as soon as a poll
finds it (one decoded at a time), so the download neither fetches the interaction again nor holds several videos
in memory; one sent as a Files API link is fetched when downloaded, once the file is ACTIVE, straight to disk.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from google import genai

from bot.backends.gemini.calls import call_files
from bot.errors import APIRequestRejected, APIUnavailable

#: How long a finished Files API output may take to become ACTIVE before we give up for this attempt.
FILE_READY_WAIT = 120.0
_FILE_ID = re.compile(r"files/([a-z0-9-]+)")


class FinishedVideos:
    """The finished jobs' videos this process holds (spooled files, or links to fetch), by job id."""

    def __init__(self, client: genai.Client, spool_dir: Path | None) -> None:
        self._client = client
        self._spool_root = spool_dir
        self._spool: Path | None = None
        #: Job id → what its finishing poll found: a spooled video file, or the Files API link to fetch.
        self._spooled: dict[str, Path] = {}
        self._links: dict[str, str] = {}
        #: One inline video decoded at a time, however many jobs finish together.
        self._decoding = asyncio.Semaphore(1)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._spooled or job_id in self._links

    async def keep(self, job_id: str, video: Any) -> None:
        """Remember a finished job's video: written to a spool file now when it came inline, else its link."""
        if video is None:
            return
        data = getattr(video, "data", None)
        if data:
            async with self._decoding:
                path = await asyncio.to_thread(self._spool_path, job_id)
                await asyncio.to_thread(_write_atomically, path, base64.b64decode(data))
            self._spooled[job_id] = path
            return
        uri = getattr(video, "uri", None)
        if uri:
            self._links[job_id] = str(uri)

    async def save(self, job_id: str, dest: Path) -> Path:
        """Put job `job_id`'s video at `dest`: its spooled file moved there, or its link downloaded."""
        spooled = self._spooled.pop(job_id, None)
        if spooled is not None:
            await asyncio.to_thread(_move_into, spooled, dest)
            return dest
        uri = self._links.pop(job_id, "")
        match = _FILE_ID.search(uri)
        if match is None:
            raise APIRequestRejected(
                "Gemini sent a video link soracast cannot fetch.", hint="Try again later.", log_detail=uri[:200]
            )
        await self._download(f"files/{match.group(1)}", dest)
        return dest

    async def aclose(self) -> None:
        """Remove the spool directory and forget what it held."""
        if self._spool is not None:
            await asyncio.to_thread(shutil.rmtree, self._spool, True)
            self._spool = None
        self._spooled.clear()

    def _spool_path(self, job_id: str) -> Path:
        if self._spool is None:
            root = self._spool_root or Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._spool = Path(tempfile.mkdtemp(prefix=".gemini-spool-", dir=root))
        return self._spool / (re.sub(r"[^A-Za-z0-9_-]", "_", job_id)[:120] + ".mp4")

    async def _download(self, name: str, dest: Path) -> None:
        """Wait for a Files API output to be ACTIVE, then stream it to `dest` (beside it, renamed into place)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FILE_READY_WAIT
        while True:
            info = await call_files(self._client.aio.files.get(name=name))
            state = str(getattr(info, "state", "") or "").upper()
            if state.endswith("ACTIVE") or not state:
                break
            if state.endswith("FAILED"):
                raise APIUnavailable("Gemini could not prepare the finished video for download.", hint="Try again.")
            if loop.time() > deadline:
                raise APIUnavailable("Gemini's finished video is not ready to download yet.", hint="Try again soon.")
            await asyncio.sleep(1.0)
        await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
        fd, tmp_name = await asyncio.to_thread(
            tempfile.mkstemp, prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            await call_files(self._client.aio.files.download(file=name, destination=str(tmp)))
            await asyncio.to_thread(os.replace, tmp, dest)
        except BaseException:
            _discard(tmp)
            raise


def _write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _move_into(source: Path, dest: Path) -> None:
    """Put a spooled file at `dest` (renamed where both share a file system, copied beside it otherwise)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, dest)
    except OSError:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        except BaseException:
            _discard(Path(tmp))
            raise
        _discard(source)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()

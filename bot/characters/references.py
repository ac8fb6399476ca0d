"""A character's references: made once from the registered clip, kept in storage, put on disk when a backend
needs files.

Storage holds the bytes, so a character moves with the database to another machine or process; the files on
this machine are a cache named by content hash (`<media>/references/<sha256>.mp4|.jpg`), written atomically
and re-made from storage whenever they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bot.characters import media
from bot.characters.stills import pick_stills
from bot.models import Character, CharacterReference, ReferenceBlob, ReferenceKind
from storage.base import Storage

#: How many stills a character keeps.
STILL_COUNT = 3


@dataclass(frozen=True)
class ReferenceFiles:
    """A character's references as files on this machine."""

    clip: Path | None
    stills: list[Path]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def make_references(
    clip: Path, limits: media.ClipLimits, work_dir: Path, *, start: float = 0.0
) -> list[ReferenceBlob]:
    """Cut the reference clip from `clip` (per `limits`, from `start`) and choose its stills.

    Raises what `media.prepare_character_clip` raises for a clip that cannot be used; nothing is stored here.
    """
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="refs-") as tmp:
        prepared = Path(tmp) / "character.mp4"
        info = await media.prepare_character_clip(clip, prepared, limits, start=start)
        stills = await asyncio.to_thread(pick_stills, prepared, STILL_COUNT)
        data = await asyncio.to_thread(prepared.read_bytes)
    blobs = [
        ReferenceBlob(
            reference=CharacterReference(
                kind=ReferenceKind.CLIP,
                mime_type="video/mp4",
                sha256=_sha256(data),
                size_bytes=len(data),
                width=info.width,
                height=info.height,
                seconds=round(info.duration, 3),
            ),
            data=data,
        )
    ]
    for position, still in enumerate(stills):
        blobs.append(
            ReferenceBlob(
                reference=CharacterReference(
                    kind=ReferenceKind.STILL,
                    position=position,
                    mime_type="image/jpeg",
                    sha256=_sha256(still.data),
                    size_bytes=len(still.data),
                    width=still.width,
                    height=still.height,
                ),
                data=still.data,
            )
        )
    return blobs


class ReferenceCache:
    """Puts stored references on this machine's disk, once per content hash."""

    def __init__(self, storage: Storage, cache_dir: Path) -> None:
        self._storage = storage
        self._dir = cache_dir
        self._locks: dict[str, asyncio.Lock] = {}

    def path_for(self, reference: CharacterReference) -> Path:
        return self._dir / f"{reference.sha256}{reference.suffix}"

    async def put(self, blob: ReferenceBlob) -> Path:
        """Write one reference (not stored yet) to the cache, e.g. to upload it before the character is saved."""
        if not await asyncio.to_thread(self._cached, blob.reference):
            await asyncio.to_thread(self._write, blob)
        return self.path_for(blob.reference)

    async def files(self, character: Character) -> ReferenceFiles:
        """The character's clip and stills on disk (read from storage only for what is not cached yet)."""
        wanted = [r for r in character.references if not await asyncio.to_thread(self._cached, r)]
        if wanted:
            # One reader per character: two prompts using it at once must not both write the same files.
            async with self._locks.setdefault(character.id, asyncio.Lock()):
                missing = {r.sha256 for r in wanted if not await asyncio.to_thread(self._cached, r)}
                if missing:
                    for blob in await self._storage.load_references(character.id):
                        if blob.reference.sha256 in missing:
                            await asyncio.to_thread(self._write, blob)
        clip = character.clip
        return ReferenceFiles(
            clip=self.path_for(clip) if clip is not None else None,
            stills=[self.path_for(s) for s in character.stills],
        )

    def _cached(self, reference: CharacterReference) -> bool:
        path = self.path_for(reference)
        try:
            return path.stat().st_size == reference.size_bytes
        except FileNotFoundError:
            return False

    def _write(self, blob: ReferenceBlob) -> None:
        dest = self.path_for(blob.reference)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob.data)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

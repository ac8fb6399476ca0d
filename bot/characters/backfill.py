"""The data half of migration 002: characters registered before soracast kept references get them now.

Before, a character was only an id at the Videos API; its prepared clip was uploaded and thrown away. Where
that clip still exists on this machine — the offline renderer and the emulator keep every character clip they
were given, and a character cut from a generated video still has that video — the references are made from it
and stored, so the character works on every backend. Where nothing is left, the character keeps working on the
endpoint that made it, and `/character info` says how to give it a clip.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bot.characters import media
from bot.characters.references import make_references
from bot.config import Settings
from bot.errors import SoracastError
from bot.models import Character, CharacterSource
from storage.base import Storage

log = logging.getLogger(__name__)

#: Where the account key `legacy` ids may have come from on this machine, below the data directory.
_OFFLINE_CLIP_DIRS = ("offline-videos/characters", "emulator/characters")


async def _old_clip(character: Character, storage: Storage, settings: Settings) -> Path | None:
    legacy = character.native_ids.get("legacy")
    if legacy:
        for folder in _OFFLINE_CLIP_DIRS:
            candidate = settings.data_dir / folder / f"{legacy}.mp4"
            if candidate.is_file():
                return candidate
    if character.source is CharacterSource.GENERATION and character.source_ref:
        generation = await storage.get_generation(character.source_ref)
        if generation is not None and generation.video_path is not None and generation.video_path.is_file():
            return generation.video_path
    return None


async def backfill_references(storage: Storage, settings: Settings, limits: media.ClipLimits) -> int:
    """Give every character without references the ones its old clip allows; returns how many got them."""
    mended = 0
    for character in await storage.all_characters():
        if character.references:
            continue
        clip = await _old_clip(character, storage, settings)
        if clip is None:
            log.info("@%s in %s has no clip left: it keeps its Videos API id only", character.handle,
                     character.scope.key)
            continue
        try:
            references = await make_references(clip, limits, settings.resolved_media_dir / "work")
        except SoracastError as exc:
            log.warning("could not make references for @%s from %s: %s", character.handle, clip.name, exc.code)
            continue
        await storage.replace_references(character.id, references)
        mended += 1
        log.info("made references for @%s in %s from its stored clip", character.handle, character.scope.key)
    return mended

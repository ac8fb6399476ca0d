"""Clips people attach: checked against the core's limits before a byte is downloaded, then saved to a temp dir."""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import discord

from bot.characters import media

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def check_attachment(attachment: discord.Attachment, limits: media.ClipLimits) -> None:
    """Refuse a file that is not a usable clip using only what Discord says about it (name, type, size)."""
    media.check_upload(attachment.filename, attachment.content_type, attachment.size, limits)


def is_video(attachment: discord.Attachment) -> bool:
    """Whether an attachment looks like a video, to pick one from a message with several files."""
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    return kind.startswith("video/") or attachment.filename.lower().endswith((".mp4", ".mov", ".m4v"))


class ClipDownloads:
    """Downloads attachments into a private temp folder that is removed when the caller is done."""

    def __init__(self, limits: media.ClipLimits, work_dir: Path) -> None:
        self._limits = limits
        self._work_dir = work_dir

    @asynccontextmanager
    async def fetch(self, attachment: discord.Attachment) -> AsyncIterator[Path]:
        """Check, then download; yields the local path."""
        check_attachment(attachment, self._limits)
        self._work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._work_dir, prefix="discord-") as tmp:
            # The name is the user's; keep it readable (it becomes the character's source) but path-safe.
            name = _UNSAFE.sub("_", Path(attachment.filename).name).strip("._") or "clip.mp4"
            path = Path(tmp) / name
            await attachment.save(path)
            yield path

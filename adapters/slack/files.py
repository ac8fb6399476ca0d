"""Slack files in: describe them from payloads, check them with the core, then download with the bot token."""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from adapters.slack.webapi import slack_error
from adapters.slack.workspaces import Workspace, WorkspaceClients
from bot.characters import media
from bot.errors import SoracastError
from bot.models import Character

log = logging.getLogger(__name__)

_VIDEO_TYPES = {"mp4", "mov", "m4v", "quicktime"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SlackFileUnavailable(SoracastError):
    """Slack would not hand over a file (no access, deleted, or an unexpected answer)."""

    code = "slack_file_unavailable"


@dataclass(frozen=True)
class SlackFile:
    """A file as Slack describes it: enough to check it before downloading anything."""

    id: str
    name: str
    mimetype: str = ""
    size: int | None = None
    url: str | None = None
    filetype: str = ""

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> SlackFile:
        size = data.get("size")
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name") or data.get("title") or "clip.mp4"),
            mimetype=str(data.get("mimetype") or ""),
            size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
            url=data.get("url_private_download") or data.get("url_private"),
            filetype=str(data.get("filetype") or ""),
        )

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> SlackFile:
        return cls(**{k: data.get(k) for k in ("id", "name", "mimetype", "size", "url", "filetype") if k in data})

    def to_metadata(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def looks_like_video(self) -> bool:
        return self.mimetype.startswith("video/") or self.filetype.lower() in _VIDEO_TYPES

    @property
    def complete(self) -> bool:
        return bool(self.url) and self.size is not None and bool(self.mimetype)


def first_video(files: Iterable[dict[str, Any]] | None) -> SlackFile | None:
    """The first video among a message's files (a user's upload or a posted result)."""
    for data in files or ():
        candidate = SlackFile.from_payload(data)
        if candidate.looks_like_video:
            return candidate
    return None


class FileFetcher:
    """Checks a Slack file with `bot.characters.media.check_upload`, then streams it to a temp file under a size
    cap, with the token of the workspace the file was shared in."""

    def __init__(self, clients: WorkspaceClients, limits: media.ClipLimits, work_dir: Path) -> None:
        self._clients = clients
        self._limits = limits
        self._work_dir = work_dir

    def check(self, file: SlackFile) -> None:
        """The core's verdict on name, type and size, from the description alone (nothing downloaded)."""
        media.check_upload(file.name, file.mimetype or None, file.size, self._limits)

    async def describe(self, workspace: Workspace, file: SlackFile) -> SlackFile:
        """Fill in what a payload left out (URL, size, type) with `files.info`."""
        if file.complete:
            return file
        client = await self._clients.client(workspace)
        try:
            response = await client.files_info(file=file.id)
        except SlackApiError as exc:
            raise SlackFileUnavailable(
                "Slack would not tell soracast about that file.",
                hint="Share it in a channel soracast is in, or upload it again.",
                log_detail=slack_error(exc),
            ) from None
        return SlackFile.from_payload(response.get("file") or {})

    @contextlib.asynccontextmanager
    async def fetched(self, workspace: Workspace, file: SlackFile) -> AsyncIterator[Path]:
        """Describe, check, then download `file`; the temp copy is removed when the block ends."""
        file = await self.describe(workspace, file)
        self.check(file)
        self._work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._work_dir, prefix="slack-") as tmp:
            dest = Path(tmp) / (_UNSAFE.sub("_", file.name).strip("._") or "clip.mp4")
            await self._download(workspace, file, dest)
            yield dest

    async def _download(self, workspace: Workspace, file: SlackFile, dest: Path) -> None:
        if not file.url:
            raise SlackFileUnavailable("Slack gave no download link for that file.", hint="Upload it again.")
        client = await self._clients.client(workspace)
        headers = {"Authorization": f"Bearer {client.token}"}
        received = 0
        timeout = aiohttp.ClientTimeout(total=300, sock_read=60)
        # aiohttp drops the Authorization header if Slack redirects to another host, so the token stays at Slack.
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(file.url, headers=headers) as resp:
            content_type = resp.headers.get("Content-Type", "")
            if resp.status != 200 or content_type.startswith("text/html"):
                # Slack answers a fetch it does not authorise with its sign-in page.
                raise SlackFileUnavailable(
                    "Slack did not hand over that file.",
                    hint="Check that soracast was installed with the files:read scope, then try again.",
                    log_detail=f"status {resp.status}, {content_type}",
                )
            with dest.open("wb") as out:
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    received += len(chunk)
                    if received > self._limits.max_bytes:
                        # The description under-stated the size: the core words the refusal.
                        self.check(SlackFile(id=file.id, name=file.name, mimetype=file.mimetype, size=received))
                        raise SlackFileUnavailable("That file is larger than Slack said.", hint="Upload it again.")
                    out.write(chunk)
        log.info("downloaded Slack file %s (%d bytes)", file.id, received)


class StillUploads:
    """A character's stills as private Slack files the bot can show in image blocks, uploaded once each.

    Files uploaded with no channel stay private to the bot; a message the bot posts may show them through
    `slack_file` image blocks. They are remembered by workspace and content hash for the life of the process
    (a file belongs to the workspace it was uploaded to).
    """

    def __init__(self, clients: WorkspaceClients) -> None:
        self._clients = clients
        self._ids: dict[tuple[Workspace, str], str] = {}

    async def file_ids(self, workspace: Workspace, character: Character, paths: list[Path]) -> list[str]:
        """Slack file ids of the character's stills (best first), uploading those not sent before."""
        found: list[str] = []
        for index, (reference, path) in enumerate(zip(character.stills, paths, strict=False), 1):
            known = self._ids.get((workspace, reference.sha256))
            if known is None:
                client = await self._clients.client(workspace)
                try:
                    upload = await client.files_upload_v2(
                        file=str(path), filename=f"{character.handle}-still-{index}.jpg", title=f"@{character.handle}"
                    )
                except SlackApiError as exc:
                    log.warning("could not upload a still of @%s: %s", character.handle, slack_error(exc))
                    break
                known = str((upload.get("file") or {}).get("id") or "")
                if not known:
                    break
                self._ids[(workspace, reference.sha256)] = known
            found.append(known)
        return found

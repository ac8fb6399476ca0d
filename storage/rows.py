"""Rows to models, shared by both engines: pydantic reads SQLite's ISO text and Postgres's datetimes alike."""

from __future__ import annotations

import json
from typing import Any, Protocol

from bot.models import (
    AccessRequest,
    Character,
    CharacterReference,
    Generation,
    OwnerNotice,
    Platform,
    RetiredScope,
    Scope,
    StoredInstallation,
    WaitingSpot,
)


class Row(Protocol):
    """A row that answers by column name (`aiosqlite.Row`, `asyncpg.Record`)."""

    def __getitem__(self, key: str) -> Any: ...


def character_from_row(
    row: Row, references: list[CharacterReference], native_ids: dict[str, str], approved: list[str]
) -> Character:
    """A `characters` row with its references, per-account native ids and the people its owner approved."""
    return Character(
        id=row["id"],
        scope=Scope.from_key(row["scope"]),
        handle=row["handle"],
        name=row["name"],
        owner_id=row["owner_id"],
        source=row["source"],
        source_ref=row["source_ref"],
        created_at=row["created_at"],
        references=references,
        native_ids=native_ids,
        sharing=row["sharing"],
        approved=approved,
        instructions=row["instructions"],
        notify_owner=bool(row["notify_owner"]),
        rights_confirmed_by=row["rights_confirmed_by"],
        rights_confirmed_at=row["rights_confirmed_at"],
    )


def access_request_from_row(row: Row) -> AccessRequest:
    """An `access_requests` row."""
    return AccessRequest(
        id=row["id"],
        scope=Scope.from_key(row["scope"]),
        character_id=row["character_id"],
        requester_id=row["requester_id"],
        status=row["status"],
        created_at=row["created_at"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        owner_told=bool(row["owner_told"]),
    )


def owner_notice_from_row(row: Row) -> OwnerNotice:
    """An `owner_notices` row."""
    return OwnerNotice(
        generation_id=row["generation_id"],
        owner_id=row["owner_id"],
        scope=Scope.from_key(row["scope"]),
        created_at=row["created_at"],
        state=row["state"],
        sent_at=row["sent_at"],
    )


def reference_from_row(row: Row) -> CharacterReference:
    """A `character_references` row, without its bytes."""
    return CharacterReference(
        kind=row["kind"],
        position=row["position"],
        mime_type=row["mime_type"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        width=row["width"],
        height=row["height"],
        seconds=row["seconds"],
    )


def generation_from_row(row: Row) -> Generation:
    """A generation from its `body, delivered_at, target` columns."""
    fields = json.loads(row["body"])
    fields["target"] = json.loads(row["target"])
    fields["delivered_at"] = row["delivered_at"]
    return Generation.model_validate(fields)


def waiting_spot_from_row(row: Row) -> WaitingSpot:
    """A waiting generation from its `id, scope, requester, created_at, line_position` columns."""
    return WaitingSpot(
        id=row["id"],
        scope=Scope.from_key(row["scope"]),
        requester_id=row["requester"],
        created_at=row["created_at"],
        line_position=row["line_position"],
    )


def installation_from_row(row: Row) -> StoredInstallation:
    """An `installations` row."""
    return StoredInstallation(
        platform=Platform(row["platform"]),
        org_id=row["org_id"],
        workspace_id=row["workspace_id"],
        sealed=row["sealed"],
        installed_at=row["installed_at"],
        updated_at=row["updated_at"],
    )


def retired_from_row(row: Row) -> RetiredScope:
    """A `retired_scopes` row."""
    return RetiredScope(
        scope=Scope.from_key(row["scope"]),
        reason=row["reason"],
        retired_at=row["retired_at"],
        purge_after=row["purge_after"],
    )

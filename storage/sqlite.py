"""SQLite storage on aiosqlite: WAL, numbered migrations applied at start-up, parameterised SQL only."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import aiosqlite

from bot.errors import HandleTaken, UnknownHandle
from bot.models import (
    AccessRequest,
    AccessRequestStatus,
    Character,
    CharacterReference,
    DeliveryTarget,
    Generation,
    GenerationStatus,
    HostedReference,
    NoticeState,
    OwnerNotice,
    PlaceInLine,
    Platform,
    PurgedScope,
    ReferenceBlob,
    RetiredScope,
    Scope,
    ScopeSettings,
    SpendEntry,
    SpendState,
    SpendTotals,
    StoredInstallation,
    UsageRow,
    WaitingSpot,
    utcnow,
)
from storage.base import LeaseHolder
from storage.rows import (
    access_request_from_row,
    character_from_row,
    generation_from_row,
    installation_from_row,
    owner_notice_from_row,
    reference_from_row,
    retired_from_row,
    waiting_spot_from_row,
)
from storage.schema import migrations
from storage.turns import ask_turn

#: A generation whose create went out (or may have) and whose job id is not known yet.
_UNSENT = (GenerationStatus.SUBMITTING, GenerationStatus.ACCEPTED)

log = logging.getLogger(__name__)

_FINISHED = tuple(s.value for s in GenerationStatus if s.finished)
_AT_BACKEND = tuple(s.value for s in GenerationStatus if s.at_backend)
#: Rows that belong to a character and go with it (Postgres removes them by foreign key).
_CHARACTER_TABLES = (
    "character_references",
    "character_native_ids",
    "character_access",
    "access_requests",
    "character_appearances",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


_BUSY_TIMEOUT_MS = 5_000
_MIGRATION_WAIT_MS = 120_000


def _statements(sql: str) -> list[str]:
    """Split a migration file into complete statements (sqlite3 knows where each one ends)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


class SQLiteStorage:
    """The embedded default store: one file, safe for one process's many coroutines."""

    shared_between_machines = False

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._db: aiosqlite.Connection | None = None
        # One connection, so writes that read-then-write (claims) are serialised here, not by retry loops.
        self._write_lock = asyncio.Lock()
        self._listeners: list[Callable[[str], None]] = []

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("storage is not open")
        return self._db

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        await self._use_wal()
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self.migrate()

    async def _use_wal(self) -> None:
        # Turning a new file to WAL needs it alone for a moment. Where another process is opening it too,
        # SQLite answers "database is locked" at once instead of waiting (waiting could deadlock), so the
        # waiting is done here, for as long as the busy timeout would have.
        deadline = asyncio.get_running_loop().time() + _BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                await self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one write transaction; returns the names applied.

        `BEGIN IMMEDIATE` takes the database's write lock before reading what is applied, so two processes
        starting together apply each migration once: the second waits, then finds nothing left to do.
        """
        db = self.db
        applied: list[str] = []
        async with self._write_lock:
            # A long migration in another process may hold the lock for a while: wait for it rather than fail.
            await db.execute(f"PRAGMA busy_timeout={_MIGRATION_WAIT_MS}")
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    await db.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations"
                        " (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)"
                    )
                    async with db.execute("SELECT version FROM schema_migrations") as cursor:
                        done = {row[0] async for row in cursor}
                    for migration in migrations("sqlite"):
                        if migration.version in done:
                            continue
                        log.info("applying migration %s", migration.name)
                        for statement in _statements(migration.sql):
                            await db.execute(statement)
                        await db.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                            (migration.version, migration.name, utcnow().isoformat()),
                        )
                        applied.append(migration.name)
                except BaseException:
                    # DDL is transactional in SQLite: a failed migration leaves no half-applied schema.
                    await db.rollback()
                    raise
                await db.commit()
            finally:
                await db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        return applied

    # --- characters ---------------------------------------------------------------------------------------

    async def add_character(self, character: Character, references: Sequence[ReferenceBlob] = ()) -> None:
        try:
            async with self._write_lock:
                await self.db.execute("BEGIN")
                try:
                    await self.db.execute(
                        "INSERT INTO characters (id, scope, handle, name, api_character_id, owner_id, source,"
                        " source_ref, created_at, sharing, instructions, notify_owner, rights_confirmed_by,"
                        " rights_confirmed_at) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            character.id,
                            character.scope.key,
                            character.handle,
                            character.name,
                            character.owner_id,
                            character.source.value,
                            character.source_ref,
                            character.created_at.isoformat(),
                            character.sharing.value,
                            character.instructions,
                            int(character.notify_owner),
                            character.rights_confirmed_by,
                            _iso(character.rights_confirmed_at),
                        ),
                    )
                    await self._insert_references(character.id, references)
                    for account, native_id in character.native_ids.items():
                        await self._insert_native_id(character.id, account, native_id)
                    for person in character.approved:
                        await self.db.execute(
                            "INSERT OR IGNORE INTO character_access (character_id, person_id, added_by, added_at)"
                            " VALUES (?, ?, ?, ?)",
                            (character.id, person, character.owner_id, character.created_at.isoformat()),
                        )
                except BaseException:
                    await self.db.rollback()
                    raise
                await self.db.commit()
        except sqlite3.IntegrityError:
            raise HandleTaken(
                f"@{character.handle} is already registered in this workspace.", hint="Pick another handle."
            ) from None

    async def get_character(self, scope: Scope, handle: str) -> Character | None:
        found = await self._characters("scope = ? AND handle = ?", (scope.key, handle))
        return found[0] if found else None

    async def get_character_by_id(self, character_id: str) -> Character | None:
        found = await self._characters("id = ?", (character_id,))
        return found[0] if found else None

    async def list_characters(self, scope: Scope) -> list[Character]:
        return await self._characters("scope = ?", (scope.key,))

    async def all_characters(self) -> list[Character]:
        return await self._characters("1 = 1", ())

    async def rename_character(self, scope: Scope, handle: str, new_handle: str) -> Character:
        try:
            async with self._write_lock:
                cursor = await self.db.execute(
                    "UPDATE characters SET handle = ? WHERE scope = ? AND handle = ?", (new_handle, scope.key, handle)
                )
                await self.db.commit()
        except sqlite3.IntegrityError:
            raise HandleTaken(f"@{new_handle} is already registered in this workspace.", hint="Pick another.") from None
        if cursor.rowcount == 0:
            raise UnknownHandle(handle, [])
        renamed = await self.get_character(scope, new_handle)
        assert renamed is not None
        return renamed

    async def remove_character(self, scope: Scope, handle: str) -> bool:
        async with self._write_lock:
            await self.db.execute("BEGIN")
            try:
                async with self.db.execute(
                    "SELECT id FROM characters WHERE scope = ? AND handle = ?", (scope.key, handle)
                ) as cursor:
                    row = await cursor.fetchone()
                if row is not None:
                    for table in _CHARACTER_TABLES:
                        await self.db.execute(f"DELETE FROM {table} WHERE character_id = ?", (row[0],))
                    await self.db.execute("DELETE FROM characters WHERE id = ?", (row[0],))
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return row is not None

    async def load_references(self, character_id: str) -> list[ReferenceBlob]:
        async with self.db.execute(
            "SELECT * FROM character_references WHERE character_id = ? ORDER BY kind, position", (character_id,)
        ) as cursor:
            return [ReferenceBlob(reference=reference_from_row(row), data=bytes(row["data"])) async for row in cursor]

    async def replace_references(self, character_id: str, references: Sequence[ReferenceBlob]) -> None:
        async with self._write_lock:
            await self.db.execute("BEGIN")
            try:
                # A character removed meanwhile keeps no orphaned references (Postgres refuses them by key).
                if await self._exists(character_id):
                    await self.db.execute("DELETE FROM character_references WHERE character_id = ?", (character_id,))
                    await self._insert_references(character_id, references)
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()

    async def save_native_id(self, character_id: str, account: str, native_id: str) -> None:
        async with self._write_lock:
            if await self._exists(character_id):
                await self._insert_native_id(character_id, account, native_id)
                await self.db.commit()

    async def _exists(self, character_id: str) -> bool:
        async with self.db.execute("SELECT 1 FROM characters WHERE id = ?", (character_id,)) as cursor:
            return await cursor.fetchone() is not None

    async def hosted_references(self, account: str, sha256s: Sequence[str]) -> dict[str, HostedReference]:
        wanted = list(dict.fromkeys(sha256s))
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        async with self.db.execute(
            f"SELECT sha256, url, expires_at FROM hosted_references WHERE account = ? AND sha256 IN ({marks})",
            (account, *wanted),
        ) as cursor:
            rows = await cursor.fetchall()
        return {
            row["sha256"]: HostedReference(
                account=account,
                sha256=row["sha256"],
                url=row["url"],
                expires_at=datetime.fromisoformat(row["expires_at"]),
            )
            for row in rows
        }

    async def save_hosted_reference(self, hosted: HostedReference) -> None:
        now = utcnow()
        async with self._write_lock:
            await self.db.execute("DELETE FROM hosted_references WHERE expires_at < ?", (now.isoformat(),))
            await self.db.execute(
                "INSERT INTO hosted_references (account, sha256, url, expires_at, created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (account, sha256) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at,"
                " created_at = excluded.created_at",
                (hosted.account, hosted.sha256, hosted.url, hosted.expires_at.isoformat(), now.isoformat()),
            )
            await self.db.commit()

    async def _insert_native_id(self, character_id: str, account: str, native_id: str) -> None:
        await self.db.execute(
            "INSERT INTO character_native_ids (character_id, account, native_id, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (character_id, account) DO UPDATE SET native_id = excluded.native_id,"
            " created_at = excluded.created_at",
            (character_id, account, native_id, utcnow().isoformat()),
        )

    async def _insert_references(self, character_id: str, references: Sequence[ReferenceBlob]) -> None:
        for blob in references:
            ref = blob.reference
            await self.db.execute(
                "INSERT INTO character_references (character_id, kind, position, mime_type, sha256, size_bytes,"
                " width, height, seconds, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    character_id,
                    ref.kind.value,
                    ref.position,
                    ref.mime_type,
                    ref.sha256,
                    ref.size_bytes,
                    ref.width,
                    ref.height,
                    ref.seconds,
                    blob.data,
                ),
            )

    async def _characters(self, where: str, params: tuple[str, ...]) -> list[Character]:
        # `where` is one of the fixed clauses above, never user text; values are always bound parameters.
        async with self.db.execute(f"SELECT * FROM characters WHERE {where} ORDER BY handle", params) as cursor:
            rows = [row async for row in cursor]
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        marks = ",".join("?" * len(ids))
        references: dict[str, list[CharacterReference]] = {i: [] for i in ids}
        async with self.db.execute(
            "SELECT character_id, kind, position, mime_type, sha256, size_bytes, width, height, seconds"
            f" FROM character_references WHERE character_id IN ({marks}) ORDER BY kind, position",
            ids,
        ) as cursor:
            async for row in cursor:
                references[row["character_id"]].append(reference_from_row(row))
        native: dict[str, dict[str, str]] = {i: {} for i in ids}
        async with self.db.execute(
            f"SELECT character_id, account, native_id FROM character_native_ids WHERE character_id IN ({marks})", ids
        ) as cursor:
            async for row in cursor:
                native[row["character_id"]][row["account"]] = row["native_id"]
        approved: dict[str, list[str]] = {i: [] for i in ids}
        async with self.db.execute(
            f"SELECT character_id, person_id FROM character_access WHERE character_id IN ({marks})"
            " ORDER BY added_at, person_id",
            ids,
        ) as cursor:
            async for row in cursor:
                approved[row["character_id"]].append(row["person_id"])
        return [
            character_from_row(row, references[row["id"]], native[row["id"]], approved[row["id"]]) for row in rows
        ]

    # --- who may use a character, and requests to use it -------------------------------------------------

    async def save_character_options(self, character: Character) -> None:
        async with self._write_lock:
            await self.db.execute(
                "UPDATE characters SET sharing = ?, instructions = ?, notify_owner = ? WHERE id = ?",
                (character.sharing.value, character.instructions, int(character.notify_owner), character.id),
            )
            await self.db.commit()

    async def grant_access(self, character_id: str, person_id: str, by: str, at: datetime) -> bool:
        async with self._write_lock:
            if not await self._exists(character_id):
                return False
            cursor = await self.db.execute(
                "INSERT OR IGNORE INTO character_access (character_id, person_id, added_by, added_at)"
                " VALUES (?, ?, ?, ?)",
                (character_id, person_id, by, at.isoformat()),
            )
            await self.db.commit()
        return cursor.rowcount == 1

    async def revoke_access(self, character_id: str, person_id: str) -> bool:
        async with self._write_lock:
            cursor = await self.db.execute(
                "DELETE FROM character_access WHERE character_id = ? AND person_id = ?", (character_id, person_id)
            )
            await self.db.commit()
        return cursor.rowcount == 1

    async def clear_access(self, character_id: str) -> None:
        async with self._write_lock:
            await self.db.execute("DELETE FROM character_access WHERE character_id = ?", (character_id,))
            await self.db.commit()

    async def add_access_request(self, request: AccessRequest) -> AccessRequest:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                existing = await self._open_request(request.character_id, request.requester_id)
                if existing is None:
                    await self.db.execute(
                        "INSERT INTO access_requests (id, scope, character_id, requester_id, status, created_at,"
                        " decided_by, decided_at, owner_told) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                        (
                            request.id,
                            request.scope.key,
                            request.character_id,
                            request.requester_id,
                            AccessRequestStatus.PENDING.value,
                            request.created_at.isoformat(),
                            int(request.owner_told),
                        ),
                    )
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return existing or request

    async def _open_request(self, character_id: str, requester_id: str) -> AccessRequest | None:
        async with self.db.execute(
            "SELECT * FROM access_requests WHERE character_id = ? AND requester_id = ? AND status = ?",
            (character_id, requester_id, AccessRequestStatus.PENDING.value),
        ) as cursor:
            row = await cursor.fetchone()
        return access_request_from_row(row) if row else None

    async def get_access_request(self, request_id: str) -> AccessRequest | None:
        async with self.db.execute("SELECT * FROM access_requests WHERE id = ?", (request_id,)) as cursor:
            row = await cursor.fetchone()
        return access_request_from_row(row) if row else None

    async def latest_access_request(self, character_id: str, requester_id: str) -> AccessRequest | None:
        async with self.db.execute(
            "SELECT * FROM access_requests WHERE character_id = ? AND requester_id = ?"
            " ORDER BY created_at DESC LIMIT 1",
            (character_id, requester_id),
        ) as cursor:
            row = await cursor.fetchone()
        return access_request_from_row(row) if row else None

    async def decide_access_request(
        self, request_id: str, status: AccessRequestStatus, by: str, at: datetime
    ) -> AccessRequest | None:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                cursor = await self.db.execute(
                    "UPDATE access_requests SET status = ?, decided_by = ?, decided_at = ? WHERE id = ? AND status = ?",
                    (status.value, by, at.isoformat(), request_id, AccessRequestStatus.PENDING.value),
                )
                decided = cursor.rowcount == 1
                if decided and status is AccessRequestStatus.APPROVED:
                    await self.db.execute(
                        "INSERT OR IGNORE INTO character_access (character_id, person_id, added_by, added_at)"
                        " SELECT character_id, requester_id, ?, ? FROM access_requests WHERE id = ?",
                        (by, at.isoformat(), request_id),
                    )
                # Read back inside the transaction: a read of this connection left open while another coroutine
                # begins the next write would hold a stale snapshot, which SQLite refuses at once ("locked").
                result = await self.get_access_request(request_id) if decided else None
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return result

    async def mark_owner_told(self, request_id: str, told: bool) -> None:
        async with self._write_lock:
            await self.db.execute("UPDATE access_requests SET owner_told = ? WHERE id = ?", (int(told), request_id))
            await self.db.commit()

    async def pending_access_requests(self, scope: Scope) -> list[AccessRequest]:
        async with self.db.execute(
            "SELECT * FROM access_requests WHERE scope = ? AND status = ? ORDER BY created_at, id",
            (scope.key, AccessRequestStatus.PENDING.value),
        ) as cursor:
            return [access_request_from_row(row) async for row in cursor]

    # --- appearances and owner notices ---------------------------------------------------------------------

    async def add_appearances(self, generation_id: str, character_ids: Sequence[str]) -> None:
        if not character_ids:
            return
        async with self._write_lock:
            await self.db.executemany(
                "INSERT OR IGNORE INTO character_appearances (character_id, generation_id) VALUES (?, ?)",
                [(character_id, generation_id) for character_id in character_ids],
            )
            await self.db.commit()

    async def videos_with(self, character_id: str) -> list[Generation]:
        async with self.db.execute(
            "SELECT g.body, g.delivered_at, g.target FROM character_appearances AS a"
            " JOIN generations AS g ON g.id = a.generation_id WHERE a.character_id = ?"
            " ORDER BY g.created_at DESC, g.id",
            (character_id,),
        ) as cursor:
            return [generation_from_row(row) async for row in cursor]

    async def add_owner_notices(self, notices: Sequence[OwnerNotice], platform: Platform) -> None:
        if not notices:
            return
        async with self._write_lock:
            await self.db.executemany(
                "INSERT OR IGNORE INTO owner_notices (generation_id, owner_id, scope, platform, created_at, state,"
                " sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        n.generation_id,
                        n.owner_id,
                        n.scope.key,
                        platform.value,
                        n.created_at.isoformat(),
                        n.state.value,
                        _iso(n.sent_at),
                    )
                    for n in notices
                ],
            )
            await self.db.commit()

    async def waiting_owner_notices(self, platforms: Sequence[Platform]) -> list[OwnerNotice]:
        if not platforms:
            return []
        marks = ",".join("?" * len(platforms))
        async with self.db.execute(
            f"SELECT * FROM owner_notices WHERE state = ? AND platform IN ({marks}) ORDER BY created_at",
            (NoticeState.WAITING.value, *(p.value for p in platforms)),
        ) as cursor:
            return [owner_notice_from_row(row) async for row in cursor]

    async def settle_owner_notices(
        self, scope: Scope, owner_id: str, generation_ids: Sequence[str], state: NoticeState, at: datetime
    ) -> list[str]:
        if not generation_ids:
            return []
        marks = ",".join("?" * len(generation_ids))
        async with self._write_lock:
            async with self.db.execute(
                f"UPDATE owner_notices SET state = ?, sent_at = ? WHERE scope = ? AND owner_id = ? AND state = ?"
                f" AND generation_id IN ({marks}) RETURNING generation_id",
                (state.value, at.isoformat(), scope.key, owner_id, NoticeState.WAITING.value, *generation_ids),
            ) as cursor:
                moved = [row[0] async for row in cursor]
            await self.db.commit()
        return moved

    async def reopen_owner_notices(self, scope: Scope, owner_id: str, generation_ids: Sequence[str]) -> None:
        if not generation_ids:
            return
        marks = ",".join("?" * len(generation_ids))
        async with self._write_lock:
            await self.db.execute(
                f"UPDATE owner_notices SET state = ?, sent_at = NULL WHERE scope = ? AND owner_id = ?"
                f" AND generation_id IN ({marks})",
                (NoticeState.WAITING.value, scope.key, owner_id, *generation_ids),
            )
            await self.db.commit()

    async def take_undelivered_notices(self, scope: Scope, owner_id: str, at: datetime) -> list[str]:
        async with self._write_lock:
            async with self.db.execute(
                "UPDATE owner_notices SET state = ?, sent_at = ? WHERE scope = ? AND owner_id = ? AND state = ?"
                " RETURNING generation_id",
                (NoticeState.SENT.value, at.isoformat(), scope.key, owner_id, NoticeState.UNDELIVERED.value),
            ) as cursor:
                taken = [row[0] async for row in cursor]
            await self.db.commit()
        return taken

    async def last_owner_message(self, scope: Scope, owner_id: str) -> datetime | None:
        async with self.db.execute(
            "SELECT max(sent_at) FROM owner_notices WHERE scope = ? AND owner_id = ? AND state IN (?, ?)",
            (scope.key, owner_id, NoticeState.SENT.value, NoticeState.UNDELIVERED.value),
        ) as cursor:
            row = await cursor.fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    # --- generations --------------------------------------------------------------------------------------

    async def save_generation(self, generation: Generation) -> None:
        async with self._write_lock:
            # delivered_at, delivering_at and target are owned by their own methods: never overwritten here.
            await self.db.execute(
                "INSERT INTO generations (id, scope, platform, status, api_video_id, created_at, target, body,"
                " backend, requester) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status, api_video_id = excluded.api_video_id,"
                " body = excluded.body",
                (
                    generation.id,
                    generation.scope.key,
                    generation.platform.value,
                    generation.status.value,
                    generation.api_video_id,
                    generation.created_at.isoformat(),
                    generation.target.model_dump_json(),
                    generation.model_dump_json(exclude={"delivered_at", "target"}),
                    generation.backend,
                    generation.requester_id,
                ),
            )
            await self.db.commit()

    async def get_generation(self, generation_id: str) -> Generation | None:
        async with self.db.execute(
            "SELECT body, delivered_at, target FROM generations WHERE id = ?", (generation_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return generation_from_row(row) if row else None

    async def delete_generation(self, generation_id: str) -> None:
        async with self._write_lock:
            for table in ("character_appearances", "owner_notices"):
                await self.db.execute(f"DELETE FROM {table} WHERE generation_id = ?", (generation_id,))
            await self.db.execute("DELETE FROM generations WHERE id = ?", (generation_id,))
            await self.db.commit()

    async def find_generation_by_video(self, api_video_id: str) -> Generation | None:
        async with self.db.execute(
            "SELECT body, delivered_at, target FROM generations WHERE api_video_id = ?", (api_video_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return generation_from_row(row) if row else None

    async def unfinished_generations(self, platform: Platform | None = None) -> list[Generation]:
        sql = "SELECT body, delivered_at, target FROM generations WHERE delivered_at IS NULL AND status != ?"
        params: list[str] = [GenerationStatus.DELETED.value]
        if platform is not None:
            sql += " AND platform = ?"
            params.append(platform.value)
        async with self.db.execute(sql + " ORDER BY created_at", params) as cursor:
            return [generation_from_row(row) async for row in cursor]

    async def claim_delivery(self, generation_id: str, claimed_at: datetime, owner: str | None = None) -> bool:
        # With an owner, the lease decides: its holder may deliver again after a crash (the adapters make a
        # repeated delivery land on the same message); without one, the first claim wins.
        lease = " AND lease_owner = ?" if owner is not None else " AND delivering_at IS NULL"
        params: tuple[str, ...] = (claimed_at.isoformat(), generation_id) + ((owner,) if owner is not None else ())
        async with self._write_lock:
            cursor = await self.db.execute(
                "UPDATE generations SET delivering_at = ? WHERE id = ? AND delivered_at IS NULL" + lease, params
            )
            await self.db.commit()
        return cursor.rowcount == 1

    async def release_delivery(self, generation_id: str) -> None:
        async with self._write_lock:
            await self.db.execute(
                "UPDATE generations SET delivering_at = NULL WHERE id = ? AND delivered_at IS NULL", (generation_id,)
            )
            await self.db.commit()

    async def mark_delivered(self, generation_id: str, delivered_at: datetime, message_id: str | None) -> None:
        async with self._write_lock:
            await self.db.execute(
                "UPDATE generations SET delivered_at = ? WHERE id = ?", (delivered_at.isoformat(), generation_id)
            )
            await self.db.commit()
        if message_id:
            generation = await self.get_generation(generation_id)
            if generation is not None and generation.target.message_id != message_id:
                await self.update_target(generation_id, generation.target.model_copy(update={"message_id": message_id}))

    async def update_target(self, generation_id: str, target: DeliveryTarget) -> None:
        async with self._write_lock:
            await self.db.execute(
                "UPDATE generations SET target = ? WHERE id = ?", (target.model_dump_json(), generation_id)
            )
            await self.db.commit()

    async def recent_generations(self, scope: Scope, limit: int = 20) -> Sequence[Generation]:
        async with self.db.execute(
            "SELECT body, delivered_at, target FROM generations WHERE scope = ? ORDER BY created_at DESC LIMIT ?",
            (scope.key, limit),
        ) as cursor:
            return [generation_from_row(row) async for row in cursor]

    # --- the line and leases -------------------------------------------------------------------------------

    async def waiting_generations(self, backend: str) -> list[Generation]:
        async with self.db.execute(
            "SELECT body, delivered_at, target FROM generations WHERE backend = ? AND status = ? ORDER BY created_at",
            (backend, GenerationStatus.WAITING.value),
        ) as cursor:
            return [generation_from_row(row) async for row in cursor]

    async def waiting_line(self, backend: str) -> list[WaitingSpot]:
        async with self.db.execute(
            "SELECT id, scope, requester, created_at, json_extract(body, '$.line_position') AS line_position"
            " FROM generations WHERE backend = ? AND status = ? ORDER BY created_at",
            (backend, GenerationStatus.WAITING.value),
        ) as cursor:
            return [waiting_spot_from_row(row) async for row in cursor]

    async def count_waiting(self, scope: Scope, requester: str) -> int:
        async with self.db.execute(
            "SELECT count(*) FROM generations WHERE scope = ? AND requester = ? AND status = ?",
            (scope.key, requester, GenerationStatus.WAITING.value),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def in_flight_by_person(self, backend: str) -> dict[tuple[str, str], int]:
        statuses = [s.value for s in GenerationStatus if s.at_backend]
        async with self.db.execute(
            "SELECT scope, requester, count(*) FROM generations WHERE backend = ?"
            f" AND status IN ({','.join('?' * len(statuses))}) GROUP BY scope, requester",
            (backend, *statuses),
        ) as cursor:
            return {(row[0], row[1]): int(row[2]) async for row in cursor}

    async def claim_for_submit(self, generation_id: str, owner: str, until: datetime) -> Generation | None:
        def claim(generation: Generation) -> None:
            generation.status = GenerationStatus.SUBMITTING
            generation.line_position = generation.line_eta = None

        return await self._change_if_waiting(
            generation_id, claim, {"lease_owner": owner, "lease_until": until.isoformat()}
        )

    async def cancel_waiting(self, generation_id: str) -> bool:
        def cancel(generation: Generation) -> None:
            generation.status = GenerationStatus.CANCELLED
            generation.line_position = generation.line_eta = None
            generation.updated_at = utcnow()

        return await self._change_if_waiting(generation_id, cancel) is not None

    async def place_in_line(self, generation_id: str, position: int, eta_seconds: float) -> bool:
        def place(generation: Generation) -> None:
            generation.line_position, generation.line_eta = position, eta_seconds

        return await self._change_if_waiting(generation_id, place) is not None

    async def places_in_line(self, places: Sequence[PlaceInLine]) -> set[str]:
        if not places:
            return set()
        written: set[str] = set()
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for place in places:
                    # Only the two fields change, in place: the status condition keeps a claim or a cancel made
                    # since the line was read.
                    cursor = await self.db.execute(
                        "UPDATE generations SET body = json_set(body, '$.line_position', ?, '$.line_eta', ?)"
                        " WHERE id = ? AND status = ?",
                        (place.position, place.eta_seconds, place.generation_id, GenerationStatus.WAITING.value),
                    )
                    if cursor.rowcount == 1:
                        written.add(place.generation_id)
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return written

    async def adopt_job(self, generation_id: str, api_video_id: str) -> bool:
        def adopt(generation: Generation) -> None:
            generation.api_video_id = api_video_id
            generation.updated_at = utcnow()

        try:
            changed = await self._change_if(generation_id, _UNSENT, adopt, {"api_video_id": api_video_id}, unsent=True)
        except sqlite3.IntegrityError:
            return False  # another generation owns that job
        return changed is not None

    async def stamp_resend(self, generation_id: str, at: datetime | None) -> Generation | None:
        def stamp(generation: Generation) -> None:
            generation.submitted_at = at
            if at is not None:
                generation.submit_attempts += 1

        return await self._change_if(generation_id, _UNSENT, stamp, unsent=True)

    async def _change_if_waiting(
        self, generation_id: str, change: Callable[[Generation], None], columns: dict[str, str] | None = None
    ) -> Generation | None:
        """Read a generation, change it and write it back in one transaction, only while it is still waiting:
        the claim, the cancel and the place in line can never undo one another."""
        return await self._change_if(generation_id, (GenerationStatus.WAITING,), change, columns)

    async def _change_if(
        self,
        generation_id: str,
        statuses: Sequence[GenerationStatus],
        change: Callable[[Generation], None],
        columns: dict[str, str] | None = None,
        *,
        unsent: bool = False,
    ) -> Generation | None:
        """Read a generation in one of `statuses` (and, with `unsent`, without a job id yet), change it and write
        it back in one transaction; None (nothing written) when it is not in that state any more."""
        extra = columns or {}
        marks = ",".join("?" * len(statuses))
        unsent_clause = " AND api_video_id IS NULL" if unsent else ""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                async with self.db.execute(
                    "SELECT body, delivered_at, target FROM generations"
                    f" WHERE id = ? AND status IN ({marks}){unsent_clause}",
                    (generation_id, *(s.value for s in statuses)),
                ) as cursor:
                    row = await cursor.fetchone()
                if row is None:
                    await self.db.rollback()
                    return None
                generation = generation_from_row(row)
                change(generation)
                # Column names come from the fixed keys above, never from input; values are bound.
                sets = "".join(f", {name} = ?" for name in extra)
                await self.db.execute(
                    f"UPDATE generations SET status = ?, body = ?{sets} WHERE id = ?",
                    (
                        generation.status.value,
                        generation.model_dump_json(exclude={"delivered_at", "target"}),
                        *extra.values(),
                        generation_id,
                    ),
                )
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return generation

    async def count_in_flight(self, backend: str) -> int:
        statuses = [s.value for s in GenerationStatus if s.at_backend]
        async with self.db.execute(
            f"SELECT count(*) FROM generations WHERE backend = ? AND status IN ({','.join('?' * len(statuses))})",
            (backend, *statuses),
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def lease_generations(
        self,
        owner: str,
        platforms: Sequence[Platform],
        now: datetime,
        until: datetime,
        limit: int = 500,
        *,
        dead: Sequence[str] = (),
    ) -> list[Generation]:
        if not platforms:
            return []
        marks = ",".join("?" * len(platforms))
        dead_marks = ",".join("?" * len(dead))
        from_dead = f" OR lease_owner IN ({dead_marks})" if dead else ""
        open_statuses = [GenerationStatus.WAITING.value, GenerationStatus.DELETED.value]
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                async with self.db.execute(
                    "SELECT id FROM generations WHERE delivered_at IS NULL AND status NOT IN (?, ?)"
                    f" AND platform IN ({marks}) AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?"
                    f"{from_dead}) ORDER BY created_at LIMIT ?",
                    (*open_statuses, *(p.value for p in platforms), owner, now.isoformat(), *dead, limit),
                ) as cursor:
                    ids = [row[0] async for row in cursor]
                for generation_id in ids:
                    await self.db.execute(
                        "UPDATE generations SET lease_owner = ?, lease_until = ? WHERE id = ?",
                        (owner, until.isoformat(), generation_id),
                    )
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        found = [await self.get_generation(generation_id) for generation_id in ids]
        return [g for g in found if g is not None]

    async def lease_holder(self, generation_id: str) -> LeaseHolder | None:
        async with self.db.execute(
            "SELECT lease_owner, lease_until FROM generations WHERE id = ? AND lease_owner IS NOT NULL",
            (generation_id,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None or row[1] is None:
            return None
        return LeaseHolder(owner=row[0], until=datetime.fromisoformat(row[1]))

    async def take_over(
        self, generation_id: str, owner: str, holder: str | None, now: datetime, until: datetime
    ) -> Generation | None:
        async with self._write_lock:
            cursor = await self.db.execute(
                "UPDATE generations SET lease_owner = ?, lease_until = ? WHERE id = ? AND delivered_at IS NULL"
                " AND status NOT IN (?, ?) AND (lease_owner IS ? OR lease_owner IS NULL OR lease_until < ?)",
                (owner, until.isoformat(), generation_id, GenerationStatus.WAITING.value,
                 GenerationStatus.DELETED.value, holder, now.isoformat()),
            )
            await self.db.commit()
        if cursor.rowcount != 1:
            return None
        return await self.get_generation(generation_id)

    async def renew_leases(self, owner: str, generation_ids: Sequence[str], until: datetime) -> set[str]:
        if not generation_ids:
            return set()
        marks = ",".join("?" * len(generation_ids))
        async with self._write_lock:
            await self.db.execute(
                f"UPDATE generations SET lease_until = ? WHERE lease_owner = ? AND id IN ({marks})",
                (until.isoformat(), owner, *generation_ids),
            )
            await self.db.commit()
        async with self.db.execute(
            f"SELECT id FROM generations WHERE lease_owner = ? AND id IN ({marks})", (owner, *generation_ids)
        ) as cursor:
            return {row[0] async for row in cursor}

    async def release_lease(self, owner: str, generation_id: str) -> None:
        async with self._write_lock:
            await self.db.execute(
                "UPDATE generations SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
                (generation_id, owner),
            )
            await self.db.commit()

    # --- processes sharing this storage -----------------------------------------------------------------------

    async def beat(self, owner: str, at: datetime, every: float) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO processes (owner, started_at, beat_at, beat_seconds) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at,"
                " beat_seconds = excluded.beat_seconds",
                (owner, at.isoformat(), at.isoformat(), every),
            )
            await self.db.commit()

    async def end_process(self, owner: str, at: datetime) -> None:
        async with self._write_lock:
            await self.db.execute("UPDATE processes SET ended_at = ? WHERE owner = ?", (at.isoformat(), owner))
            await self.db.commit()

    async def dead_processes(self, now: datetime) -> set[str]:
        async with self._write_lock:
            await self.db.execute(
                "DELETE FROM processes WHERE beat_at < ?", ((now - timedelta(days=1)).isoformat(),)
            )
            await self.db.commit()
        dead: set[str] = set()
        async with self.db.execute("SELECT owner, beat_at, beat_seconds, ended_at FROM processes") as cursor:
            async for row in cursor:
                missed = now - datetime.fromisoformat(row[1]) > timedelta(seconds=3 * row[2])
                if row[3] is not None or missed:
                    dead.add(row[0])
        return dead

    # --- one create rate per backend account ----------------------------------------------------------------

    async def take_submit_turn(self, account: str, now: datetime, every: float, burst: int = 1) -> float:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                async with self.db.execute(
                    "SELECT next_at, held_until FROM submit_turns WHERE account = ?", (account,)
                ) as cursor:
                    row = await cursor.fetchone()
                next_at = datetime.fromisoformat(row[0]) if row else None
                held = datetime.fromisoformat(row[1]) if row and row[1] else None
                turn = ask_turn(next_at, held, now, every, burst)
                if turn.next_at is not None:
                    await self.db.execute(
                        "INSERT INTO submit_turns (account, next_at) VALUES (?, ?)"
                        " ON CONFLICT (account) DO UPDATE SET next_at = excluded.next_at",
                        (account, turn.next_at.isoformat()),
                    )
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return turn.wait

    async def hold_submits(self, account: str, until: datetime) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO submit_turns (account, next_at, held_until) VALUES (?, ?, ?)"
                " ON CONFLICT (account) DO UPDATE SET held_until = max(coalesce(held_until, ''),"
                " excluded.held_until)",
                (account, until.isoformat(), until.isoformat()),
            )
            await self.db.commit()

    # --- spending ---------------------------------------------------------------------------------------------

    async def reserve_spend(
        self, entry: SpendEntry, *, monthly_usd: float | None, daily_seconds: float | None
    ) -> SpendTotals | None:
        counting = [s.value for s in SpendState if s.counts]
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                totals = await self._totals(entry.scope, entry.person, entry.month, entry.day, counting)
                over_month = monthly_usd is not None and totals.month_usd + (entry.usd or 0.0) > monthly_usd + 1e-9
                over_day = daily_seconds is not None and totals.person_day_seconds + entry.seconds > daily_seconds
                if over_month or over_day:
                    await self.db.rollback()
                    return totals
                await self.db.execute(
                    "INSERT INTO spend (generation_id, scope, person, backend, model, seconds, usd, state, month, day,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.generation_id,
                        entry.scope.key,
                        entry.person,
                        entry.backend,
                        entry.model,
                        entry.seconds,
                        entry.usd,
                        entry.state.value,
                        entry.month,
                        entry.day,
                        entry.created_at.isoformat(),
                    ),
                )
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return None

    async def set_spend_state(self, generation_id: str, state: SpendState) -> None:
        async with self._write_lock:
            await self.db.execute("UPDATE spend SET state = ? WHERE generation_id = ?", (state.value, generation_id))
            await self.db.commit()

    async def spend_totals(self, scope: Scope, person: str, month: str, day: str) -> SpendTotals:
        return await self._totals(scope, person, month, day, [s.value for s in SpendState if s.counts])

    async def _totals(self, scope: Scope, person: str, month: str, day: str, states: list[str]) -> SpendTotals:
        marks = ",".join("?" * len(states))
        async with self.db.execute(
            f"SELECT coalesce(sum(usd), 0) FROM spend WHERE scope = ? AND month = ? AND state IN ({marks})",
            (scope.key, month, *states),
        ) as cursor:
            month_row = await cursor.fetchone()
        async with self.db.execute(
            "SELECT coalesce(sum(seconds), 0) FROM spend WHERE scope = ? AND person = ? AND day = ?"
            f" AND state IN ({marks})",
            (scope.key, person, day, *states),
        ) as cursor:
            day_row = await cursor.fetchone()
        return SpendTotals(
            month_usd=float(month_row[0]) if month_row else 0.0,
            person_day_seconds=int(day_row[0]) if day_row else 0,
        )

    async def usage(self, scope: Scope, month: str) -> list[UsageRow]:
        async with self.db.execute(
            "SELECT person, model, count(*), sum(seconds), sum(usd), count(usd) FROM spend"
            " WHERE scope = ? AND month = ? AND state = ? GROUP BY person, model ORDER BY sum(usd) DESC, person",
            (scope.key, month, SpendState.SPENT.value),
        ) as cursor:
            return [
                UsageRow(
                    person=row[0],
                    model=row[1],
                    videos=int(row[2]),
                    seconds=int(row[3] or 0),
                    usd=float(row[4]) if row[5] else None,
                )
                async for row in cursor
            ]

    # --- wake-ups -------------------------------------------------------------------------------------------

    async def notify(self, message: str) -> None:
        # Processes on one SQLite file have no channel to each other: they find out at their next poll.
        for callback in self._listeners:
            callback(message)

    async def listen(self, callback: Callable[[str], None]) -> None:
        self._listeners.append(callback)

    # --- webhooks and settings -----------------------------------------------------------------------------

    async def remember_webhook(self, webhook_id: str) -> bool:
        async with self._write_lock:
            cursor = await self.db.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (webhook_id, received_at) VALUES (?, ?)",
                (webhook_id, utcnow().isoformat()),
            )
            await self.db.commit()
        return cursor.rowcount == 1

    async def put_pending_form(self, key: str, body: str, expires_at: datetime) -> None:
        async with self._write_lock:
            await self.db.execute("DELETE FROM pending_forms WHERE expires_at < ?", (utcnow().isoformat(),))
            await self.db.execute(
                "INSERT INTO pending_forms (key, body, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at",
                (key, body, expires_at.isoformat()),
            )
            await self.db.commit()

    async def take_pending_form(self, key: str, now: datetime) -> str | None:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                async with self.db.execute(
                    "SELECT body FROM pending_forms WHERE key = ? AND expires_at >= ?", (key, now.isoformat())
                ) as cursor:
                    row = await cursor.fetchone()
                await self.db.execute(
                    "DELETE FROM pending_forms WHERE key = ? OR expires_at < ?", (key, now.isoformat())
                )
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return str(row[0]) if row else None

    async def get_scope_settings(self, scope: Scope) -> ScopeSettings:
        async with self.db.execute("SELECT body FROM scope_settings WHERE scope = ?", (scope.key,)) as cursor:
            row = await cursor.fetchone()
        return ScopeSettings.model_validate_json(row[0]) if row else ScopeSettings(scope=scope)

    async def save_scope_settings(self, settings: ScopeSettings) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO scope_settings (scope, body) VALUES (?, ?)"
                " ON CONFLICT (scope) DO UPDATE SET body = excluded.body",
                (settings.scope.key, settings.model_dump_json()),
            )
            await self.db.commit()

    # --- installations ------------------------------------------------------------------------------------

    async def save_installation(self, installation: StoredInstallation) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO installations (platform, org_id, workspace_id, sealed, installed_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, org_id, workspace_id) DO UPDATE SET"
                " sealed = excluded.sealed, installed_at = excluded.installed_at, updated_at = excluded.updated_at",
                (
                    installation.platform.value,
                    installation.org_id,
                    installation.workspace_id,
                    installation.sealed,
                    installation.installed_at.isoformat(),
                    installation.updated_at.isoformat(),
                ),
            )
            await self.db.commit()

    async def find_installation(self, platform: Platform, org_id: str, workspace_id: str) -> StoredInstallation | None:
        async with self.db.execute(
            "SELECT * FROM installations WHERE platform = ? AND org_id = ? AND workspace_id = ?",
            (platform.value, org_id, workspace_id),
        ) as cursor:
            row = await cursor.fetchone()
        return installation_from_row(row) if row else None

    async def delete_installation(self, platform: Platform, org_id: str, workspace_id: str) -> bool:
        async with self._write_lock:
            cursor = await self.db.execute(
                "DELETE FROM installations WHERE platform = ? AND org_id = ? AND workspace_id = ?",
                (platform.value, org_id, workspace_id),
            )
            await self.db.commit()
        return cursor.rowcount > 0

    async def installations(self, platform: Platform) -> list[StoredInstallation]:
        async with self.db.execute(
            "SELECT * FROM installations WHERE platform = ? ORDER BY org_id, workspace_id", (platform.value,)
        ) as cursor:
            return [installation_from_row(row) async for row in cursor]

    async def link_org_workspace(self, platform: Platform, org_id: str, workspace_id: str) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO org_workspaces (platform, workspace_id, org_id, seen_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (platform, workspace_id) DO UPDATE SET org_id = excluded.org_id,"
                " seen_at = excluded.seen_at",
                (platform.value, workspace_id, org_id, utcnow().isoformat()),
            )
            await self.db.commit()

    async def org_workspaces(self, platform: Platform, org_id: str) -> list[str]:
        async with self.db.execute(
            "SELECT workspace_id FROM org_workspaces WHERE platform = ? AND org_id = ? ORDER BY workspace_id",
            (platform.value, org_id),
        ) as cursor:
            return [row[0] async for row in cursor]

    # --- workspaces that removed soracast -------------------------------------------------------------------

    async def retire_scope(self, retired: RetiredScope) -> RetiredScope:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO retired_scopes (scope, reason, retired_at, purge_after) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope) DO NOTHING",
                (
                    retired.scope.key,
                    retired.reason,
                    retired.retired_at.isoformat(),
                    retired.purge_after.isoformat(),
                ),
            )
            await self.db.commit()
        stored = await self.get_retired_scope(retired.scope)
        return stored or retired

    async def get_retired_scope(self, scope: Scope) -> RetiredScope | None:
        async with self.db.execute("SELECT * FROM retired_scopes WHERE scope = ?", (scope.key,)) as cursor:
            row = await cursor.fetchone()
        return retired_from_row(row) if row else None

    async def reinstate_scope(self, scope: Scope) -> bool:
        async with self._write_lock:
            cursor = await self.db.execute("DELETE FROM retired_scopes WHERE scope = ?", (scope.key,))
            await self.db.commit()
        return cursor.rowcount > 0

    async def retired_scopes(self, due_by: datetime | None = None) -> list[RetiredScope]:
        # ISO text of UTC times sorts as the times do.
        due = due_by.isoformat() if due_by is not None else "9999"
        async with self.db.execute(
            "SELECT * FROM retired_scopes WHERE purge_after <= ? ORDER BY retired_at, scope", (due,)
        ) as cursor:
            return [retired_from_row(row) async for row in cursor]

    async def purge_scope(self, scope: Scope) -> PurgedScope:
        key, marks = scope.key, ",".join("?" * len(_AT_BACKEND))
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                owned = "SELECT id FROM characters WHERE scope = ?"
                for table in _CHARACTER_TABLES:
                    await self.db.execute(f"DELETE FROM {table} WHERE character_id IN ({owned})", (key,))
                characters = (await self.db.execute("DELETE FROM characters WHERE scope = ?", (key,))).rowcount
                await self.db.execute("DELETE FROM owner_notices WHERE scope = ?", (key,))
                async with self.db.execute(
                    "SELECT body, delivered_at, target FROM generations"
                    f" WHERE scope = ? AND status NOT IN ({marks}) ORDER BY created_at",
                    (key, *_AT_BACKEND),
                ) as cursor:
                    generations = [generation_from_row(row) async for row in cursor]
                await self.db.execute(
                    f"DELETE FROM generations WHERE scope = ? AND status NOT IN ({marks})", (key, *_AT_BACKEND)
                )
                async with self.db.execute("SELECT count(*) FROM generations WHERE scope = ?", (key,)) as cursor:
                    row = await cursor.fetchone()
                still_running = int(row[0]) if row else 0
                await self.db.execute("DELETE FROM spend WHERE scope = ?", (key,))
                await self.db.execute("DELETE FROM scope_settings WHERE scope = ?", (key,))
                await self.db.execute(
                    "DELETE FROM org_workspaces WHERE platform = ? AND workspace_id = ?",
                    (scope.platform.value, scope.id),
                )
                if not still_running:
                    await self.db.execute("DELETE FROM retired_scopes WHERE scope = ?", (key,))
            except BaseException:
                await self.db.rollback()
                raise
            await self.db.commit()
        return PurgedScope(scope=scope, characters=characters, generations=generations, still_running=still_running)

"""Postgres storage on asyncpg: one pool per process, migrations under an advisory lock, parameterised SQL only.

Every process of a deployment (web, worker, more machines) shares the one database, so everything that must
happen once — applying a migration, claiming a delivery — is decided by Postgres, not by a lock in Python.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import asyncpg

from bot.errors import ConfigError, HandleTaken, StorageUnavailable, UnknownHandle
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

SCHEMES = ("postgresql", "postgres")

#: The advisory lock every soracast process takes to migrate: a fixed 64-bit number, the same in all of them.
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"soracast/migrations").digest()[:8], "big", signed=True)
#: The NOTIFY channel soracast processes wake each other on.
WAKE_CHANNEL = "soracast_wake"
#: The first half of the two-key advisory lock that serialises one workspace's budget check and reservation.
SPEND_LOCK_KEY = int.from_bytes(hashlib.sha256(b"soracast/spend").digest()[:4], "big", signed=True)
#: The first half of the two-key advisory lock each live process holds (the second is its `lock_key`); kept
#: positive, so it reads the same in `pg_locks`, where lock keys are shown as unsigned.
PROCESS_LOCK_KEY = int.from_bytes(hashlib.sha256(b"soracast/process").digest()[:4], "big") & 0x7FFFFFFF

_AT_BACKEND = [s.value for s in GenerationStatus if s.at_backend]

_CHARACTER_COLUMNS = (
    "id, scope, handle, name, owner_id, source, source_ref, created_at, sharing, instructions, notify_owner,"
    " rights_confirmed_by, rights_confirmed_at"
)
_REFERENCE_COLUMNS = "character_id, kind, position, mime_type, sha256, size_bytes, width, height, seconds"
#: Byte order, as SQLite sorts: the database's own collation would order handles differently per locale.
_BY_HANDLE = 'handle COLLATE "C"'
_BY_REFERENCE = 'kind COLLATE "C", position'
_BY_RETIREMENT = 'retired_at, scope COLLATE "C"'


def check_url(url: str) -> None:
    """Raise ValueError saying what is wrong with a `postgresql://` URL (before any connection is tried)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme {parts.scheme!r}; use postgresql://user@host:5432/database")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None


def describe_url(url: str) -> str:
    """Where a URL points, without its password: `user@host:port/database`."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


def _count(status: str) -> int:
    """Rows a command touched, from its status tag (`UPDATE 1`, `INSERT 0 1`)."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStorage:
    """The shared store for deployments that outgrow one machine: every process opens its own pool."""

    def __init__(self, url: str, *, max_connections: int = 10, setting: str = "the database URL") -> None:
        check_url(url)
        self._url = url
        #: What the URL is called where the operator set it, for messages about it.
        self._setting = setting
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._callbacks: list[Callable[[str], None]] = []
        #: Per process (lease owner) beating through this storage: the connection holding its advisory lock.
        self._process_locks: dict[str, tuple[asyncpg.Connection, int]] = {}

    shared_between_machines = True

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("storage is not open")
        return self._pool

    async def open(self) -> None:
        try:
            # One connection kept warm; the rest are opened when a burst needs them and closed when idle.
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=self._max_connections, max_inactive_connection_lifetime=300
            )
        except asyncpg.ClientConfigurationError as exc:
            raise ConfigError(f"{self._setting}: {exc}") from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reason = exc.args[0] if isinstance(exc, asyncpg.PostgresError) and exc.args else type(exc).__name__
            raise StorageUnavailable(
                f"The database at {describe_url(self._url)} cannot be reached ({reason}).",
                hint=f"Check {self._setting}, and that Postgres is running and accepts connections from here.",
            ) from None
        try:
            await self.migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for connection, _key in self._process_locks.values():
            with contextlib.suppress(Exception):
                await connection.close()
        self._process_locks.clear()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            self._callbacks.clear()
            with contextlib.suppress(Exception):
                await listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction under an advisory lock; returns the names applied.

        The lock is held until the transaction ends, so a second process starting at the same moment waits,
        then finds every migration recorded and applies nothing.
        """
        applied: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations("postgres"):
                if migration.version in done:
                    continue
                log.info("applying migration %s", migration.name)
                # No arguments: asyncpg sends the file as one simple query, every statement in order.
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version, migration.name, utcnow(),
                )
                applied.append(migration.name)
        return applied

    # --- characters ---------------------------------------------------------------------------------------

    async def add_character(self, character: Character, references: Sequence[ReferenceBlob] = ()) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO characters (id, scope, handle, name, api_character_id, owner_id, source,"
                    " source_ref, created_at, sharing, instructions, notify_owner, rights_confirmed_by,"
                    " rights_confirmed_at) VALUES ($1, $2, $3, $4, '', $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    character.id,
                    character.scope.key,
                    character.handle,
                    character.name,
                    character.owner_id,
                    character.source.value,
                    character.source_ref,
                    character.created_at,
                    character.sharing.value,
                    character.instructions,
                    character.notify_owner,
                    character.rights_confirmed_by,
                    character.rights_confirmed_at,
                )
                await _insert_references(conn, character.id, references)
                for account, native_id in character.native_ids.items():
                    await _upsert_native_id(conn, character.id, account, native_id)
                for person in character.approved:
                    await conn.execute(
                        "INSERT INTO character_access (character_id, person_id, added_by, added_at)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        character.id,
                        person,
                        character.owner_id,
                        character.created_at,
                    )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "characters_scope_handle":
                raise
            raise HandleTaken(
                f"@{character.handle} is already registered in this workspace.", hint="Pick another handle."
            ) from None

    async def get_character(self, scope: Scope, handle: str) -> Character | None:
        found = await self._characters("scope = $1 AND handle = $2", scope.key, handle)
        return found[0] if found else None

    async def get_character_by_id(self, character_id: str) -> Character | None:
        found = await self._characters("id = $1", character_id)
        return found[0] if found else None

    async def list_characters(self, scope: Scope) -> list[Character]:
        return await self._characters("scope = $1", scope.key)

    async def all_characters(self) -> list[Character]:
        return await self._characters("TRUE")

    async def hosted_references(self, account: str, sha256s: Sequence[str]) -> dict[str, HostedReference]:
        wanted = list(dict.fromkeys(sha256s))
        if not wanted:
            return {}
        rows = await self.pool.fetch(
            "SELECT sha256, url, expires_at FROM hosted_references WHERE account = $1 AND sha256 = ANY($2::text[])",
            account,
            wanted,
        )
        return {
            row["sha256"]: HostedReference(
                account=account, sha256=row["sha256"], url=row["url"], expires_at=row["expires_at"]
            )
            for row in rows
        }

    async def save_hosted_reference(self, hosted: HostedReference) -> None:
        now = utcnow()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM hosted_references WHERE expires_at < $1", now)
            await conn.execute(
                "INSERT INTO hosted_references (account, sha256, url, expires_at, created_at)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (account, sha256) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at,"
                " created_at = excluded.created_at",
                hosted.account,
                hosted.sha256,
                hosted.url,
                hosted.expires_at,
                now,
            )

    async def rename_character(self, scope: Scope, handle: str, new_handle: str) -> Character:
        try:
            status = await self.pool.execute(
                "UPDATE characters SET handle = $1 WHERE scope = $2 AND handle = $3", new_handle, scope.key, handle
            )
        except asyncpg.UniqueViolationError:
            raise HandleTaken(f"@{new_handle} is already registered in this workspace.", hint="Pick another.") from None
        if _count(status) == 0:
            raise UnknownHandle(handle, [])
        renamed = await self.get_character(scope, new_handle)
        assert renamed is not None
        return renamed

    async def remove_character(self, scope: Scope, handle: str) -> bool:
        # References and native ids go with it: their foreign keys cascade.
        status = await self.pool.execute("DELETE FROM characters WHERE scope = $1 AND handle = $2", scope.key, handle)
        return _count(status) == 1

    async def load_references(self, character_id: str) -> list[ReferenceBlob]:
        rows = await self.pool.fetch(
            f"SELECT {_REFERENCE_COLUMNS}, data FROM character_references WHERE character_id = $1"
            f" ORDER BY {_BY_REFERENCE}",
            character_id,
        )
        return [ReferenceBlob(reference=reference_from_row(row), data=bytes(row["data"])) for row in rows]

    async def replace_references(self, character_id: str, references: Sequence[ReferenceBlob]) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("DELETE FROM character_references WHERE character_id = $1", character_id)
                await _insert_references(conn, character_id, references)
        except asyncpg.ForeignKeyViolationError:
            # The character was removed meanwhile (by any process): there is nothing left to keep them for.
            log.info("references for removed character %s not stored", character_id)

    async def save_native_id(self, character_id: str, account: str, native_id: str) -> None:
        try:
            async with self.pool.acquire() as conn:
                await _upsert_native_id(conn, character_id, account, native_id)
        except asyncpg.ForeignKeyViolationError:
            log.info("native id for removed character %s not stored", character_id)

    async def _characters(self, where: str, *params: object) -> list[Character]:
        # `where` is one of the fixed clauses above, never user text; values are always bound parameters.
        # One snapshot for the three reads, so a character never comes back with another moment's references.
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(
                f"SELECT {_CHARACTER_COLUMNS} FROM characters WHERE {where} ORDER BY {_BY_HANDLE}", *params
            )
            if not rows:
                return []
            ids = [row["id"] for row in rows]
            reference_rows = await conn.fetch(
                f"SELECT {_REFERENCE_COLUMNS} FROM character_references WHERE character_id = ANY($1::text[])"
                f" ORDER BY {_BY_REFERENCE}",
                ids,
            )
            native_rows = await conn.fetch(
                "SELECT character_id, account, native_id FROM character_native_ids"
                " WHERE character_id = ANY($1::text[])",
                ids,
            )
            access_rows = await conn.fetch(
                "SELECT character_id, person_id FROM character_access WHERE character_id = ANY($1::text[])"
                ' ORDER BY added_at, person_id COLLATE "C"',
                ids,
            )
        references: dict[str, list[CharacterReference]] = {i: [] for i in ids}
        for row in reference_rows:
            references[row["character_id"]].append(reference_from_row(row))
        native: dict[str, dict[str, str]] = {i: {} for i in ids}
        for row in native_rows:
            native[row["character_id"]][row["account"]] = row["native_id"]
        approved: dict[str, list[str]] = {i: [] for i in ids}
        for row in access_rows:
            approved[row["character_id"]].append(row["person_id"])
        return [
            character_from_row(row, references[row["id"]], native[row["id"]], approved[row["id"]]) for row in rows
        ]

    # --- who may use a character, and requests to use it -------------------------------------------------

    async def save_character_options(self, character: Character) -> None:
        await self.pool.execute(
            "UPDATE characters SET sharing = $1, instructions = $2, notify_owner = $3 WHERE id = $4",
            character.sharing.value,
            character.instructions,
            character.notify_owner,
            character.id,
        )

    async def grant_access(self, character_id: str, person_id: str, by: str, at: datetime) -> bool:
        try:
            status = await self.pool.execute(
                "INSERT INTO character_access (character_id, person_id, added_by, added_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                character_id,
                person_id,
                by,
                at,
            )
        except asyncpg.ForeignKeyViolationError:
            return False  # the character was removed meanwhile
        return _count(status) == 1

    async def revoke_access(self, character_id: str, person_id: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM character_access WHERE character_id = $1 AND person_id = $2", character_id, person_id
        )
        return _count(status) == 1

    async def clear_access(self, character_id: str) -> None:
        await self.pool.execute("DELETE FROM character_access WHERE character_id = $1", character_id)

    async def add_access_request(self, request: AccessRequest) -> AccessRequest:
        # The partial unique index keeps one pending request per person and character, whoever inserts first.
        row = await self.pool.fetchrow(
            "INSERT INTO access_requests (id, scope, character_id, requester_id, status, created_at, owner_told)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (character_id, requester_id) WHERE status = 'pending'"
            " DO NOTHING RETURNING *",
            request.id,
            request.scope.key,
            request.character_id,
            request.requester_id,
            AccessRequestStatus.PENDING.value,
            request.created_at,
            request.owner_told,
        )
        if row is not None:
            return access_request_from_row(row)
        existing = await self.pool.fetchrow(
            "SELECT * FROM access_requests WHERE character_id = $1 AND requester_id = $2 AND status = $3",
            request.character_id,
            request.requester_id,
            AccessRequestStatus.PENDING.value,
        )
        # Decided between the two statements: there is no pending one to return, so store this one after all.
        return access_request_from_row(existing) if existing else await self.add_access_request(request)

    async def get_access_request(self, request_id: str) -> AccessRequest | None:
        row = await self.pool.fetchrow("SELECT * FROM access_requests WHERE id = $1", request_id)
        return access_request_from_row(row) if row else None

    async def latest_access_request(self, character_id: str, requester_id: str) -> AccessRequest | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM access_requests WHERE character_id = $1 AND requester_id = $2"
            " ORDER BY created_at DESC LIMIT 1",
            character_id,
            requester_id,
        )
        return access_request_from_row(row) if row else None

    async def decide_access_request(
        self, request_id: str, status: AccessRequestStatus, by: str, at: datetime
    ) -> AccessRequest | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3"
                " WHERE id = $4 AND status = $5 RETURNING *",
                status.value,
                by,
                at,
                request_id,
                AccessRequestStatus.PENDING.value,
            )
            if row is not None and status is AccessRequestStatus.APPROVED:
                await conn.execute(
                    "INSERT INTO character_access (character_id, person_id, added_by, added_at)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    row["character_id"],
                    row["requester_id"],
                    by,
                    at,
                )
        return access_request_from_row(row) if row else None

    async def mark_owner_told(self, request_id: str, told: bool) -> None:
        await self.pool.execute("UPDATE access_requests SET owner_told = $1 WHERE id = $2", told, request_id)

    async def pending_access_requests(self, scope: Scope) -> list[AccessRequest]:
        rows = await self.pool.fetch(
            'SELECT * FROM access_requests WHERE scope = $1 AND status = $2 ORDER BY created_at, id COLLATE "C"',
            scope.key,
            AccessRequestStatus.PENDING.value,
        )
        return [access_request_from_row(row) for row in rows]

    # --- appearances and owner notices ---------------------------------------------------------------------

    async def add_appearances(self, generation_id: str, character_ids: Sequence[str]) -> None:
        if not character_ids:
            return
        # Only characters that still exist: one removed meanwhile has nobody left to list its videos to.
        await self.pool.execute(
            "INSERT INTO character_appearances (character_id, generation_id)"
            " SELECT id, $2 FROM characters WHERE id = ANY($1::text[]) ON CONFLICT DO NOTHING",
            list(character_ids),
            generation_id,
        )

    async def videos_with(self, character_id: str) -> list[Generation]:
        rows = await self.pool.fetch(
            "SELECT g.body, g.delivered_at, g.target FROM character_appearances AS a"
            " JOIN generations AS g ON g.id = a.generation_id WHERE a.character_id = $1"
            ' ORDER BY g.created_at DESC, g.id COLLATE "C"',
            character_id,
        )
        return [generation_from_row(row) for row in rows]

    async def add_owner_notices(self, notices: Sequence[OwnerNotice], platform: Platform) -> None:
        if not notices:
            return
        await self.pool.executemany(
            "INSERT INTO owner_notices (generation_id, owner_id, scope, platform, created_at, state, sent_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [
                (n.generation_id, n.owner_id, n.scope.key, platform.value, n.created_at, n.state.value, n.sent_at)
                for n in notices
            ],
        )

    async def waiting_owner_notices(self, platforms: Sequence[Platform]) -> list[OwnerNotice]:
        rows = await self.pool.fetch(
            "SELECT * FROM owner_notices WHERE state = $1 AND platform = ANY($2::text[]) ORDER BY created_at",
            NoticeState.WAITING.value,
            [p.value for p in platforms],
        )
        return [owner_notice_from_row(row) for row in rows]

    async def settle_owner_notices(
        self, scope: Scope, owner_id: str, generation_ids: Sequence[str], state: NoticeState, at: datetime
    ) -> list[str]:
        rows = await self.pool.fetch(
            "UPDATE owner_notices SET state = $1, sent_at = $2 WHERE scope = $3 AND owner_id = $4 AND state = $5"
            " AND generation_id = ANY($6::text[]) RETURNING generation_id",
            state.value,
            at,
            scope.key,
            owner_id,
            NoticeState.WAITING.value,
            list(generation_ids),
        )
        return [row["generation_id"] for row in rows]

    async def reopen_owner_notices(self, scope: Scope, owner_id: str, generation_ids: Sequence[str]) -> None:
        await self.pool.execute(
            "UPDATE owner_notices SET state = $1, sent_at = NULL WHERE scope = $2 AND owner_id = $3"
            " AND generation_id = ANY($4::text[])",
            NoticeState.WAITING.value,
            scope.key,
            owner_id,
            list(generation_ids),
        )

    async def take_undelivered_notices(self, scope: Scope, owner_id: str, at: datetime) -> list[str]:
        rows = await self.pool.fetch(
            "UPDATE owner_notices SET state = $1, sent_at = $2 WHERE scope = $3 AND owner_id = $4 AND state = $5"
            " RETURNING generation_id",
            NoticeState.SENT.value,
            at,
            scope.key,
            owner_id,
            NoticeState.UNDELIVERED.value,
        )
        return [row["generation_id"] for row in rows]

    async def last_owner_message(self, scope: Scope, owner_id: str) -> datetime | None:
        value = await self.pool.fetchval(
            "SELECT max(sent_at) FROM owner_notices WHERE scope = $1 AND owner_id = $2 AND state = ANY($3::text[])",
            scope.key,
            owner_id,
            [NoticeState.SENT.value, NoticeState.UNDELIVERED.value],
        )
        return value if isinstance(value, datetime) else None

    # --- generations --------------------------------------------------------------------------------------

    async def save_generation(self, generation: Generation) -> None:
        # delivered_at, delivering_at and target are owned by their own methods: never overwritten here.
        await self.pool.execute(
            "INSERT INTO generations (id, scope, platform, status, api_video_id, created_at, target, body,"
            " backend, requester) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, api_video_id = excluded.api_video_id,"
            " body = excluded.body",
            generation.id,
            generation.scope.key,
            generation.platform.value,
            generation.status.value,
            generation.api_video_id,
            generation.created_at,
            generation.target.model_dump_json(),
            _body(generation),
            generation.backend,
            generation.requester_id,
        )

    async def get_generation(self, generation_id: str) -> Generation | None:
        row = await self.pool.fetchrow(
            "SELECT body, delivered_at, target FROM generations WHERE id = $1", generation_id
        )
        return generation_from_row(row) if row else None

    async def delete_generation(self, generation_id: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for table in ("character_appearances", "owner_notices"):
                await conn.execute(f"DELETE FROM {table} WHERE generation_id = $1", generation_id)
            await conn.execute("DELETE FROM generations WHERE id = $1", generation_id)

    async def find_generation_by_video(self, api_video_id: str) -> Generation | None:
        row = await self.pool.fetchrow(
            "SELECT body, delivered_at, target FROM generations WHERE api_video_id = $1", api_video_id
        )
        return generation_from_row(row) if row else None

    async def unfinished_generations(self, platform: Platform | None = None) -> list[Generation]:
        sql = "SELECT body, delivered_at, target FROM generations WHERE delivered_at IS NULL AND status <> $1"
        params: list[str] = [GenerationStatus.DELETED.value]
        if platform is not None:
            sql += " AND platform = $2"
            params.append(platform.value)
        rows = await self.pool.fetch(sql + " ORDER BY created_at", *params)
        return [generation_from_row(row) for row in rows]

    async def claim_delivery(self, generation_id: str, claimed_at: datetime, owner: str | None = None) -> bool:
        # One statement: Postgres re-checks the conditions on the locked row, so of two processes only one wins.
        # With an owner the lease decides (its holder may deliver again after a crash).
        if owner is not None:
            status = await self.pool.execute(
                "UPDATE generations SET delivering_at = $1 WHERE id = $2 AND delivered_at IS NULL"
                " AND lease_owner = $3",
                claimed_at,
                generation_id,
                owner,
            )
        else:
            status = await self.pool.execute(
                "UPDATE generations SET delivering_at = $1 WHERE id = $2 AND delivered_at IS NULL"
                " AND delivering_at IS NULL",
                claimed_at,
                generation_id,
            )
        return _count(status) == 1

    async def release_delivery(self, generation_id: str) -> None:
        await self.pool.execute(
            "UPDATE generations SET delivering_at = NULL WHERE id = $1 AND delivered_at IS NULL", generation_id
        )

    async def mark_delivered(self, generation_id: str, delivered_at: datetime, message_id: str | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # The UPDATE locks the row, so recording the message id cannot lose a concurrent target change.
            row = await conn.fetchrow(
                "UPDATE generations SET delivered_at = $1 WHERE id = $2 RETURNING target", delivered_at, generation_id
            )
            if row is None or not message_id:
                return
            target = DeliveryTarget.model_validate_json(row["target"])
            if target.message_id != message_id:
                await conn.execute(
                    "UPDATE generations SET target = $1 WHERE id = $2",
                    target.model_copy(update={"message_id": message_id}).model_dump_json(),
                    generation_id,
                )

    async def update_target(self, generation_id: str, target: DeliveryTarget) -> None:
        await self.pool.execute(
            "UPDATE generations SET target = $1 WHERE id = $2", target.model_dump_json(), generation_id
        )

    async def recent_generations(self, scope: Scope, limit: int = 20) -> Sequence[Generation]:
        rows = await self.pool.fetch(
            "SELECT body, delivered_at, target FROM generations WHERE scope = $1 ORDER BY created_at DESC LIMIT $2",
            scope.key,
            limit,
        )
        return [generation_from_row(row) for row in rows]

    # --- the line and leases -------------------------------------------------------------------------------

    async def waiting_generations(self, backend: str) -> list[Generation]:
        rows = await self.pool.fetch(
            "SELECT body, delivered_at, target FROM generations WHERE backend = $1 AND status = $2"
            " ORDER BY created_at",
            backend,
            GenerationStatus.WAITING.value,
        )
        return [generation_from_row(row) for row in rows]

    async def waiting_line(self, backend: str) -> list[WaitingSpot]:
        # `::json` (not jsonb) only checks the body and walks to one key: the line reads this after every round.
        rows = await self.pool.fetch(
            "SELECT id, scope, requester, created_at, (body::json ->> 'line_position')::int AS line_position"
            " FROM generations WHERE backend = $1 AND status = $2 ORDER BY created_at",
            backend,
            GenerationStatus.WAITING.value,
        )
        return [waiting_spot_from_row(row) for row in rows]

    async def count_waiting(self, scope: Scope, requester: str) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM generations WHERE scope = $1 AND requester = $2 AND status = $3",
                scope.key,
                requester,
                GenerationStatus.WAITING.value,
            )
        )

    async def in_flight_by_person(self, backend: str) -> dict[tuple[str, str], int]:
        rows = await self.pool.fetch(
            "SELECT scope, requester, count(*) AS n FROM generations WHERE backend = $1 AND status = ANY($2::text[])"
            " GROUP BY scope, requester",
            backend,
            _AT_BACKEND,
        )
        return {(row["scope"], row["requester"]): int(row["n"]) for row in rows}

    async def count_in_flight(self, backend: str) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM generations WHERE backend = $1 AND status = ANY($2::text[])",
                backend,
                _AT_BACKEND,
            )
        )

    async def claim_for_submit(self, generation_id: str, owner: str, until: datetime) -> Generation | None:
        def claim(generation: Generation) -> None:
            generation.status = GenerationStatus.SUBMITTING
            generation.line_position = generation.line_eta = None

        return await self._change_if_waiting(generation_id, claim, {"lease_owner": owner, "lease_until": until})

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
        ids = [place.generation_id for place in places]
        async with self.pool.acquire() as conn, conn.transaction():
            # Rows are locked in id order first, so two processes placing the same line never deadlock.
            await conn.execute(
                "SELECT id FROM generations WHERE id = ANY($1::text[]) AND status = $2 ORDER BY id FOR UPDATE",
                ids,
                GenerationStatus.WAITING.value,
            )
            # Only the two fields change, and only where the generation still waits: a claim or a cancel made
            # since the line was read is never undone.
            rows = await conn.fetch(
                "UPDATE generations AS g SET body = (g.body::jsonb"
                " || jsonb_build_object('line_position', p.position, 'line_eta', p.eta))::text"
                " FROM unnest($1::text[], $2::int[], $3::float8[]) AS p(id, position, eta)"
                " WHERE g.id = p.id AND g.status = $4 RETURNING g.id",
                ids,
                [place.position for place in places],
                [place.eta_seconds for place in places],
                GenerationStatus.WAITING.value,
            )
        return {row["id"] for row in rows}

    async def adopt_job(self, generation_id: str, api_video_id: str) -> bool:
        def adopt(generation: Generation) -> None:
            generation.api_video_id = api_video_id
            generation.updated_at = utcnow()

        try:
            changed = await self._change_if(generation_id, _UNSENT, adopt, {"api_video_id": api_video_id}, unsent=True)
        except asyncpg.UniqueViolationError:
            return False  # another generation owns that job
        return changed is not None

    async def stamp_resend(self, generation_id: str, at: datetime | None) -> Generation | None:
        def stamp(generation: Generation) -> None:
            generation.submitted_at = at
            if at is not None:
                generation.submit_attempts += 1

        return await self._change_if(generation_id, _UNSENT, stamp, unsent=True)

    async def _change_if_waiting(
        self, generation_id: str, change: Callable[[Generation], None], columns: dict[str, object] | None = None
    ) -> Generation | None:
        """Read a generation, change it and write it back in one transaction, only while it is still waiting:
        the row lock makes the claim, the cancel and the place in line atomic across processes."""
        return await self._change_if(generation_id, (GenerationStatus.WAITING,), change, columns)

    async def _change_if(
        self,
        generation_id: str,
        statuses: Sequence[GenerationStatus],
        change: Callable[[Generation], None],
        columns: dict[str, object] | None = None,
        *,
        unsent: bool = False,
    ) -> Generation | None:
        """Read a generation in one of `statuses` (and, with `unsent`, without a job id yet) under a row lock,
        change it and write it back; None (nothing written) when it is not in that state any more."""
        extra = columns or {}
        unsent_clause = " AND api_video_id IS NULL" if unsent else ""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT body, delivered_at, target FROM generations"
                f" WHERE id = $1 AND status = ANY($2::text[]){unsent_clause} FOR UPDATE",
                generation_id,
                [s.value for s in statuses],
            )
            if row is None:
                return None
            generation = generation_from_row(row)
            change(generation)
            # Column names come from the fixed keys above, never from input; values are bound.
            sets = "".join(f", {name} = ${index}" for index, name in enumerate(extra, start=4))
            await conn.execute(
                f"UPDATE generations SET status = $1, body = $2{sets} WHERE id = $3",
                generation.status.value,
                _body(generation),
                generation_id,
                *extra.values(),
            )
        return generation

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
        # SKIP LOCKED: processes leasing at the same moment each take different rows and never wait on each other.
        rows = await self.pool.fetch(
            "UPDATE generations SET lease_owner = $1, lease_until = $2 WHERE id IN ("
            " SELECT id FROM generations WHERE delivered_at IS NULL AND status <> ALL($3::text[])"
            " AND platform = ANY($4::text[]) AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $5"
            " OR lease_owner = ANY($7::text[])) ORDER BY created_at LIMIT $6 FOR UPDATE SKIP LOCKED"
            ") RETURNING body, delivered_at, target",
            owner,
            until,
            [GenerationStatus.WAITING.value, GenerationStatus.DELETED.value],
            [p.value for p in platforms],
            now,
            limit,
            list(dead),
        )
        return [generation_from_row(row) for row in rows]

    async def lease_holder(self, generation_id: str) -> LeaseHolder | None:
        row = await self.pool.fetchrow(
            "SELECT lease_owner, lease_until FROM generations WHERE id = $1 AND lease_owner IS NOT NULL",
            generation_id,
        )
        if row is None or row["lease_until"] is None:
            return None
        return LeaseHolder(owner=row["lease_owner"], until=row["lease_until"])

    async def take_over(
        self, generation_id: str, owner: str, holder: str | None, now: datetime, until: datetime
    ) -> Generation | None:
        # One statement: the row is re-checked under its lock, so of two processes taking over only one wins.
        row = await self.pool.fetchrow(
            "UPDATE generations SET lease_owner = $2, lease_until = $3 WHERE id = $1 AND delivered_at IS NULL"
            " AND status <> ALL($6::text[])"
            " AND (lease_owner IS NOT DISTINCT FROM $4 OR lease_owner IS NULL OR lease_until < $5)"
            " RETURNING body, delivered_at, target",
            generation_id,
            owner,
            until,
            holder,
            now,
            [GenerationStatus.WAITING.value, GenerationStatus.DELETED.value],
        )
        return generation_from_row(row) if row else None

    async def renew_leases(self, owner: str, generation_ids: Sequence[str], until: datetime) -> set[str]:
        if not generation_ids:
            return set()
        rows = await self.pool.fetch(
            "UPDATE generations SET lease_until = $1 WHERE lease_owner = $2 AND id = ANY($3::text[]) RETURNING id",
            until,
            owner,
            list(generation_ids),
        )
        return {row["id"] for row in rows}

    async def release_lease(self, owner: str, generation_id: str) -> None:
        await self.pool.execute(
            "UPDATE generations SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
            generation_id,
            owner,
        )

    # --- processes sharing this storage -----------------------------------------------------------------------

    async def beat(self, owner: str, at: datetime, every: float) -> None:
        held = self._process_locks.get(owner)
        if held is None or held[0].is_closed():
            # The lock lives as long as this connection: a process that dies (or loses the database) lets it go
            # at once, and the others can tell without waiting for its beats to go stale.
            key = secrets.randbelow(0x7FFFFFFE) + 1
            connection = await asyncpg.connect(self._url)
            try:
                await connection.execute("SELECT pg_advisory_lock($1, $2)", PROCESS_LOCK_KEY, key)
            except BaseException:
                await connection.close()
                raise
            held = self._process_locks[owner] = (connection, key)
        await self.pool.execute(
            "INSERT INTO processes (owner, started_at, beat_at, beat_seconds, lock_key) VALUES ($1, $2, $2, $3, $4)"
            " ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at, beat_seconds = excluded.beat_seconds,"
            " lock_key = excluded.lock_key",
            owner,
            at,
            every,
            held[1],
        )

    async def end_process(self, owner: str, at: datetime) -> None:
        await self.pool.execute("UPDATE processes SET ended_at = $1 WHERE owner = $2", at, owner)
        held = self._process_locks.pop(owner, None)
        if held is not None:
            with contextlib.suppress(Exception):
                await held[0].close()

    async def dead_processes(self, now: datetime) -> set[str]:
        await self.pool.execute("DELETE FROM processes WHERE beat_at < $1", now - timedelta(days=1))
        rows = await self.pool.fetch(
            "SELECT p.owner, p.beat_at, p.beat_seconds, p.ended_at, p.lock_key IS NOT NULL AND NOT EXISTS ("
            "  SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
            "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            "  AND l.classid::bigint = $1 AND l.objid::bigint = p.lock_key"
            " ) AS lock_gone FROM processes p",
            PROCESS_LOCK_KEY,
        )
        dead: set[str] = set()
        for row in rows:
            silent = (now - row["beat_at"]).total_seconds() / row["beat_seconds"]
            # A lost lock alone could be a dropped connection the process is about to open again: it also has to
            # have missed a beat by half an interval.
            if row["ended_at"] is not None or silent > 3 or (row["lock_gone"] and silent > 1.5):
                dead.add(row["owner"])
        return dead

    # --- one create rate per backend account ----------------------------------------------------------------

    async def take_submit_turn(self, account: str, now: datetime, every: float, burst: int = 1) -> float:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO submit_turns (account, next_at) VALUES ($1, $2) ON CONFLICT DO NOTHING", account, now
            )
            row = await conn.fetchrow(
                "SELECT next_at, held_until FROM submit_turns WHERE account = $1 FOR UPDATE", account
            )
            turn = ask_turn(row["next_at"], row["held_until"], now, every, burst)
            if turn.next_at is not None:
                await conn.execute("UPDATE submit_turns SET next_at = $1 WHERE account = $2", turn.next_at, account)
        return turn.wait

    async def hold_submits(self, account: str, until: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO submit_turns (account, next_at, held_until) VALUES ($1, $2, $2) ON CONFLICT (account)"
            " DO UPDATE SET held_until = greatest(submit_turns.held_until, excluded.held_until)",
            account,
            until,
        )

    # --- spending ---------------------------------------------------------------------------------------------

    async def reserve_spend(
        self, entry: SpendEntry, *, monthly_usd: float | None, daily_seconds: float | None
    ) -> SpendTotals | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # One workspace's check-and-reserve at a time, across every process (the lock ends with the transaction).
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", SPEND_LOCK_KEY, entry.scope.key)
            totals = await _totals(conn, entry.scope, entry.person, entry.month, entry.day)
            over_month = monthly_usd is not None and totals.month_usd + (entry.usd or 0.0) > monthly_usd + 1e-9
            over_day = daily_seconds is not None and totals.person_day_seconds + entry.seconds > daily_seconds
            if over_month or over_day:
                return totals
            await conn.execute(
                "INSERT INTO spend (generation_id, scope, person, backend, model, seconds, usd, state, month, day,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
                entry.created_at,
            )
        return None

    async def set_spend_state(self, generation_id: str, state: SpendState) -> None:
        await self.pool.execute("UPDATE spend SET state = $1 WHERE generation_id = $2", state.value, generation_id)

    async def spend_totals(self, scope: Scope, person: str, month: str, day: str) -> SpendTotals:
        async with self.pool.acquire() as conn:
            return await _totals(conn, scope, person, month, day)

    async def usage(self, scope: Scope, month: str) -> list[UsageRow]:
        rows = await self.pool.fetch(
            "SELECT person, model, count(*) AS videos, sum(seconds) AS seconds, sum(usd) AS usd, count(usd) AS priced"
            " FROM spend WHERE scope = $1 AND month = $2 AND state = $3 GROUP BY person, model"
            " ORDER BY sum(usd) DESC NULLS LAST, person",
            scope.key,
            month,
            SpendState.SPENT.value,
        )
        return [
            UsageRow(
                person=row["person"],
                model=row["model"],
                videos=int(row["videos"]),
                seconds=int(row["seconds"] or 0),
                usd=float(row["usd"]) if row["priced"] else None,
            )
            for row in rows
        ]

    # --- wake-ups -------------------------------------------------------------------------------------------

    async def notify(self, message: str) -> None:
        await self.pool.execute("SELECT pg_notify($1, $2)", WAKE_CHANNEL, message[:7000])

    async def listen(self, callback: Callable[[str], None]) -> None:
        """LISTEN on a connection of its own (a pooled one would be handed to others and lose the listener)."""
        if self._listener is None:
            self._listener = await asyncpg.connect(self._url)
            await self._listener.add_listener(WAKE_CHANNEL, self._dispatch_notification)
        self._callbacks.append(callback)

    def _dispatch_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for callback in self._callbacks:
            try:
                callback(payload)
            except Exception:  # one bad listener must not silence the others
                log.exception("a wake-up listener failed")

    # --- webhooks and settings -----------------------------------------------------------------------------

    async def remember_webhook(self, webhook_id: str) -> bool:
        status = await self.pool.execute(
            "INSERT INTO webhook_deliveries (webhook_id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            webhook_id,
            utcnow(),
        )
        return _count(status) == 1

    async def put_pending_form(self, key: str, body: str, expires_at: datetime) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM pending_forms WHERE expires_at < $1", utcnow())
            await conn.execute(
                "INSERT INTO pending_forms (key, body, expires_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (key) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at",
                key,
                body,
                expires_at,
            )

    async def take_pending_form(self, key: str, now: datetime) -> str | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # DELETE … RETURNING takes it in one step: of two processes submitting the same form, one gets it.
            body = await conn.fetchval(
                "DELETE FROM pending_forms WHERE key = $1 RETURNING CASE WHEN expires_at >= $2 THEN body END",
                key,
                now,
            )
            await conn.execute("DELETE FROM pending_forms WHERE expires_at < $1", now)
        return str(body) if body is not None else None

    async def get_scope_settings(self, scope: Scope) -> ScopeSettings:
        body = await self.pool.fetchval("SELECT body FROM scope_settings WHERE scope = $1", scope.key)
        return ScopeSettings.model_validate_json(body) if body else ScopeSettings(scope=scope)

    async def save_scope_settings(self, settings: ScopeSettings) -> None:
        await self.pool.execute(
            "INSERT INTO scope_settings (scope, body) VALUES ($1, $2)"
            " ON CONFLICT (scope) DO UPDATE SET body = excluded.body",
            settings.scope.key,
            settings.model_dump_json(),
        )


    # --- installations ------------------------------------------------------------------------------------

    async def save_installation(self, installation: StoredInstallation) -> None:
        await self.pool.execute(
            "INSERT INTO installations (platform, org_id, workspace_id, sealed, installed_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (platform, org_id, workspace_id) DO UPDATE SET"
            " sealed = excluded.sealed, installed_at = excluded.installed_at, updated_at = excluded.updated_at",
            installation.platform.value,
            installation.org_id,
            installation.workspace_id,
            installation.sealed,
            installation.installed_at,
            installation.updated_at,
        )

    async def find_installation(self, platform: Platform, org_id: str, workspace_id: str) -> StoredInstallation | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM installations WHERE platform = $1 AND org_id = $2 AND workspace_id = $3",
            platform.value,
            org_id,
            workspace_id,
        )
        return installation_from_row(row) if row else None

    async def delete_installation(self, platform: Platform, org_id: str, workspace_id: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM installations WHERE platform = $1 AND org_id = $2 AND workspace_id = $3",
            platform.value,
            org_id,
            workspace_id,
        )
        return _count(status) > 0

    async def installations(self, platform: Platform) -> list[StoredInstallation]:
        rows = await self.pool.fetch(
            'SELECT * FROM installations WHERE platform = $1 ORDER BY org_id COLLATE "C", workspace_id COLLATE "C"',
            platform.value,
        )
        return [installation_from_row(row) for row in rows]

    async def link_org_workspace(self, platform: Platform, org_id: str, workspace_id: str) -> None:
        await self.pool.execute(
            "INSERT INTO org_workspaces (platform, workspace_id, org_id, seen_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (platform, workspace_id) DO UPDATE SET org_id = excluded.org_id, seen_at = excluded.seen_at",
            platform.value,
            workspace_id,
            org_id,
            utcnow(),
        )

    async def org_workspaces(self, platform: Platform, org_id: str) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT workspace_id FROM org_workspaces WHERE platform = $1 AND org_id = $2"
            ' ORDER BY workspace_id COLLATE "C"',
            platform.value,
            org_id,
        )
        return [row[0] for row in rows]

    # --- workspaces that removed soracast -------------------------------------------------------------------

    async def retire_scope(self, retired: RetiredScope) -> RetiredScope:
        await self.pool.execute(
            "INSERT INTO retired_scopes (scope, reason, retired_at, purge_after) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (scope) DO NOTHING",
            retired.scope.key,
            retired.reason,
            retired.retired_at,
            retired.purge_after,
        )
        return await self.get_retired_scope(retired.scope) or retired

    async def get_retired_scope(self, scope: Scope) -> RetiredScope | None:
        row = await self.pool.fetchrow("SELECT * FROM retired_scopes WHERE scope = $1", scope.key)
        return retired_from_row(row) if row else None

    async def reinstate_scope(self, scope: Scope) -> bool:
        status = await self.pool.execute("DELETE FROM retired_scopes WHERE scope = $1", scope.key)
        return _count(status) > 0

    async def retired_scopes(self, due_by: datetime | None = None) -> list[RetiredScope]:
        if due_by is None:
            rows = await self.pool.fetch(f"SELECT * FROM retired_scopes ORDER BY {_BY_RETIREMENT}")
        else:
            rows = await self.pool.fetch(
                f"SELECT * FROM retired_scopes WHERE purge_after <= $1 ORDER BY {_BY_RETIREMENT}", due_by
            )
        return [retired_from_row(row) for row in rows]

    async def purge_scope(self, scope: Scope) -> PurgedScope:
        key = scope.key
        async with self.pool.acquire() as conn, conn.transaction():
            # References, native ids, sharing, requests and appearances go with their characters (foreign keys
            # cascade); the owners' notes are the workspace's.
            characters = _count(await conn.execute("DELETE FROM characters WHERE scope = $1", key))
            await conn.execute("DELETE FROM owner_notices WHERE scope = $1", key)
            rows = await conn.fetch(
                "DELETE FROM generations WHERE scope = $1 AND NOT (status = ANY($2::text[]))"
                " RETURNING body, delivered_at, target, created_at",
                key,
                _AT_BACKEND,
            )
            still_running = int(await conn.fetchval("SELECT count(*) FROM generations WHERE scope = $1", key))
            await conn.execute("DELETE FROM spend WHERE scope = $1", key)
            await conn.execute("DELETE FROM scope_settings WHERE scope = $1", key)
            await conn.execute(
                "DELETE FROM org_workspaces WHERE platform = $1 AND workspace_id = $2", scope.platform.value, scope.id
            )
            if not still_running:
                await conn.execute("DELETE FROM retired_scopes WHERE scope = $1", key)
        generations = [generation_from_row(row) for row in sorted(rows, key=lambda r: r["created_at"])]
        return PurgedScope(scope=scope, characters=characters, generations=generations, still_running=still_running)


async def _insert_references(
    conn: asyncpg.Connection, character_id: str, references: Sequence[ReferenceBlob]
) -> None:
    if not references:
        return
    await conn.executemany(
        "INSERT INTO character_references (character_id, kind, position, mime_type, sha256, size_bytes,"
        " width, height, seconds, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            (
                character_id,
                blob.reference.kind.value,
                blob.reference.position,
                blob.reference.mime_type,
                blob.reference.sha256,
                blob.reference.size_bytes,
                blob.reference.width,
                blob.reference.height,
                blob.reference.seconds,
                blob.data,
            )
            for blob in references
        ],
    )


async def _upsert_native_id(conn: asyncpg.Connection, character_id: str, account: str, native_id: str) -> None:
    await conn.execute(
        "INSERT INTO character_native_ids (character_id, account, native_id, created_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (character_id, account) DO UPDATE SET native_id = excluded.native_id,"
        " created_at = excluded.created_at",
        character_id,
        account,
        native_id,
        utcnow(),
    )




def _body(generation: Generation) -> str:
    return generation.model_dump_json(exclude={"delivered_at", "target"})


async def _totals(conn: asyncpg.Connection, scope: Scope, person: str, month: str, day: str) -> SpendTotals:
    counting = [s.value for s in SpendState if s.counts]
    month_usd = await conn.fetchval(
        "SELECT coalesce(sum(usd), 0) FROM spend WHERE scope = $1 AND month = $2 AND state = ANY($3::text[])",
        scope.key,
        month,
        counting,
    )
    day_seconds = await conn.fetchval(
        "SELECT coalesce(sum(seconds), 0) FROM spend WHERE scope = $1 AND person = $2 AND day = $3"
        " AND state = ANY($4::text[])",
        scope.key,
        person,
        day,
        counting,
    )
    return SpendTotals(month_usd=float(month_usd or 0), person_day_seconds=int(day_seconds or 0))

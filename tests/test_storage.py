"""The storage contract, run against SQLite and a real Postgres: migrations, workspace isolation, characters
with their references and native ids, generations and exactly-once delivery claims."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from bot.app import open_storage
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
    ReferenceBlob,
    ReferenceKind,
    RetiredScope,
    Scope,
    ScopeSettings,
    Sharing,
    SpendEntry,
    SpendState,
    StoredInstallation,
    utcnow,
)
from storage.base import Storage
from storage.postgres import MIGRATION_LOCK_KEY, PostgresStorage
from storage.schema import migrations
from storage.sqlite import SQLiteStorage
from tests.fixtures.core import fast_settings
from tests.fixtures.postgres import with_url_parts

GUILD = Scope(platform=Platform.DISCORD, id="1")
OTHER_GUILD = Scope(platform=Platform.DISCORD, id="2")
TEAM = Scope(platform=Platform.SLACK, id="1")

StorageFactory = Callable[[], Storage]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of the engine under test: a new SQLite file, or a new Postgres schema."""
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'soracast.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def new_storage(database_url: str, tmp_path: Path) -> StorageFactory:
    """Makes another, unopened storage on the same database, as a second process would (chosen by URL)."""
    settings = fast_settings(tmp_path / "data", database_url=database_url)
    return lambda: open_storage(settings)


@pytest.fixture
async def store(new_storage: StorageFactory) -> AsyncIterator[Storage]:
    storage = new_storage()
    await storage.open()
    yield storage
    await storage.close()


def _character(scope: Scope, handle: str = "mascot", **fields: object) -> Character:
    return Character(scope=scope, handle=handle, name="Mascot", owner_id="u1", **fields)  # type: ignore[arg-type]


def _blob(kind: ReferenceKind, position: int = 0, payload: bytes = b"") -> ReferenceBlob:
    # Every byte value, so an engine that stored the bytes as text would be caught.
    data = bytes(range(256)) + payload + kind.value.encode() + bytes([position])
    return ReferenceBlob(
        reference=CharacterReference(
            kind=kind,
            position=position,
            mime_type="video/mp4" if kind is ReferenceKind.CLIP else "image/jpeg",
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            width=1280,
            height=720,
            seconds=2.5 if kind is ReferenceKind.CLIP else None,
        ),
        data=data,
    )


def _with_references(
    scope: Scope, handle: str = "mascot", payload: bytes = b""
) -> tuple[Character, list[ReferenceBlob]]:
    # Stills given out of order: storage returns the clip first, then stills by position.
    blobs = [_blob(ReferenceKind.STILL, 1, payload), _blob(ReferenceKind.CLIP, 0, payload),
             _blob(ReferenceKind.STILL, 0, payload)]
    character = _character(scope, handle, references=[b.reference for b in blobs], native_ids={"openai:abc": "char_1"})
    return character, blobs


def _in_stored_order(blobs: list[ReferenceBlob]) -> list[ReferenceBlob]:
    return sorted(blobs, key=lambda b: (b.reference.kind.value, b.reference.position))


def _generation(scope: Scope = GUILD, **fields: object) -> Generation:
    base: dict[str, object] = dict(
        scope=scope, requester_id="u1", prompt="p", api_prompt="p", model="sora-2", seconds="4", size="1280x720",
        target=DeliveryTarget(channel_id="c1"),
    )
    base.update(fields)
    return Generation(**base)  # type: ignore[arg-type]


async def _applied_versions(storage: Storage) -> list[int]:
    if isinstance(storage, SQLiteStorage):
        async with storage.db.execute("SELECT version FROM schema_migrations ORDER BY version") as cursor:
            return [row[0] async for row in cursor]
    assert isinstance(storage, PostgresStorage)
    return [row[0] for row in await storage.pool.fetch("SELECT version FROM schema_migrations ORDER BY version")]


# --- migrations ----------------------------------------------------------------------------------------------


async def test_migrations_are_applied_once_across_restarts(engine: str, new_storage: StorageFactory) -> None:
    expected = [m.version for m in migrations(engine)]
    for _ in range(2):
        storage = new_storage()
        await storage.open()
        try:
            assert await _applied_versions(storage) == expected
            assert await storage.migrate() == []
        finally:
            await storage.close()


async def test_processes_starting_together_apply_one_set_of_migrations(
    engine: str, new_storage: StorageFactory
) -> None:
    first, second, *more = [new_storage() for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in (first, second, *more)))
        # Each opened; between them every migration was applied exactly once.
        assert await _applied_versions(first) == [m.version for m in migrations(engine)]
        await first.add_character(_character(GUILD))
        assert await second.get_character(GUILD, "mascot") is not None
    finally:
        await asyncio.gather(*(s.close() for s in (first, second, *more)))


@asynccontextmanager
async def _migration_lock_held(engine: str, database_url: str) -> AsyncIterator[None]:
    """Another process in the middle of migrating: it holds the lock every process migrates under."""
    if engine == "sqlite":
        path = Path(database_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(path) as db:
            await db.execute("PRAGMA journal_mode=WAL")
            # The bookkeeping table exists but records nothing yet: whoever reads it before taking the lock
            # would think every migration is still to do.
            await db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
            await db.commit()
            await db.execute("BEGIN IMMEDIATE")
            yield
            await db.rollback()
        return
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        yield
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def test_processes_starting_while_another_migrates_wait_then_apply_nothing_twice(
    engine: str, database_url: str, new_storage: StorageFactory
) -> None:
    storages = [new_storage() for _ in range(3)]
    try:
        async with _migration_lock_held(engine, database_url):
            opening = asyncio.gather(*(s.open() for s in storages), return_exceptions=True)
            await asyncio.sleep(0.3)  # time for each to reach the lock
            waited = not opening.done()
        assert await opening == [None, None, None]
        assert waited, "a storage finished opening while another process held the migration lock"
        assert await _applied_versions(storages[0]) == [m.version for m in migrations(engine)]
    finally:
        await asyncio.gather(*(s.close() for s in storages))


def test_both_engines_ship_the_same_migration_numbers() -> None:
    sqlite, postgres = migrations("sqlite"), migrations("postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]


async def test_the_sqlite_database_uses_wal(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "wal.db")
    await storage.open()
    try:
        async with storage.db.execute("PRAGMA journal_mode") as cursor:
            assert (await cursor.fetchone())[0] == "wal"
    finally:
        await storage.close()


# --- characters ----------------------------------------------------------------------------------------------


async def test_a_handle_is_unique_per_workspace_only(store: Storage) -> None:
    await store.add_character(_character(GUILD))
    with pytest.raises(HandleTaken):
        await store.add_character(_character(GUILD))
    await store.add_character(_character(OTHER_GUILD))
    await store.add_character(_character(TEAM))
    assert [c.scope for c in await store.list_characters(GUILD)] == [GUILD]
    assert await store.get_character(OTHER_GUILD, "mascot") is not None


async def test_one_workspace_never_sees_anothers_characters(store: Storage) -> None:
    secret, blobs = _with_references(GUILD, "secret")
    await store.add_character(secret, blobs)
    assert await store.get_character(OTHER_GUILD, "secret") is None
    assert await store.list_characters(TEAM) == []
    assert not await store.remove_character(OTHER_GUILD, "secret")
    with pytest.raises(UnknownHandle):
        await store.rename_character(OTHER_GUILD, "secret", "mine")
    kept = await store.get_character(GUILD, "secret")
    assert kept is not None and kept.id == secret.id and kept.native_ids == secret.native_ids
    assert await store.load_references(secret.id) == _in_stored_order(blobs)


async def test_a_character_comes_back_with_its_references_and_native_ids(store: Storage) -> None:
    character, blobs = _with_references(GUILD)
    await store.add_character(character, blobs)
    stored = await store.get_character(GUILD, "mascot")
    assert stored is not None
    assert [r.kind for r in stored.references] == [ReferenceKind.CLIP, ReferenceKind.STILL, ReferenceKind.STILL]
    assert stored.references == [b.reference for b in _in_stored_order(blobs)]
    assert stored.native_ids == {"openai:abc": "char_1"}
    assert stored.model_copy(update={"references": character.references}) == character
    assert await store.get_character_by_id(character.id) == stored
    assert await store.load_references(character.id) == _in_stored_order(blobs)


async def test_a_character_is_found_by_id_in_any_workspace_and_only_by_its_own(store: Storage) -> None:
    mine, theirs = _character(GUILD), _character(TEAM)
    await store.add_character(mine)
    await store.add_character(theirs)
    assert await store.get_character_by_id(theirs.id) == theirs
    assert await store.get_character_by_id("c000000000000") is None


async def test_every_workspaces_characters_are_listed_for_maintenance(store: Storage) -> None:
    for scope, handle in ((GUILD, "b"), (TEAM, "a_b"), (OTHER_GUILD, "ab"), (GUILD, "a1")):
        await store.add_character(_character(scope, handle))
    everyone = await store.all_characters()
    # Byte order, whatever the database's locale: digits, then `_`, then letters.
    assert [c.handle for c in everyone] == ["a1", "a_b", "ab", "b"]
    assert {c.scope for c in everyone} == {GUILD, TEAM, OTHER_GUILD}
    assert [c.handle for c in await store.list_characters(GUILD)] == ["a1", "b"]


async def test_a_refused_character_stores_none_of_its_references(store: Storage) -> None:
    first, blobs = _with_references(GUILD)
    await store.add_character(first, blobs)
    second, other_blobs = _with_references(GUILD, payload=b"second")
    with pytest.raises(HandleTaken):
        await store.add_character(second, other_blobs)
    assert await store.load_references(second.id) == []
    assert await store.get_character_by_id(second.id) is None
    assert await store.load_references(first.id) == _in_stored_order(blobs)


async def test_references_are_replaced_whole_and_only_for_that_character(store: Storage) -> None:
    character, blobs = _with_references(GUILD)
    neighbour, neighbour_blobs = _with_references(GUILD, "neighbour", payload=b"n")
    await store.add_character(character, blobs)
    await store.add_character(neighbour, neighbour_blobs)

    fresh = [_blob(ReferenceKind.CLIP, 0, b"new"), _blob(ReferenceKind.STILL, 0, b"new")]
    await store.replace_references(character.id, fresh)
    assert await store.load_references(character.id) == fresh
    stored = await store.get_character_by_id(character.id)
    assert stored is not None and stored.references == [b.reference for b in fresh]
    assert await store.load_references(neighbour.id) == _in_stored_order(neighbour_blobs)

    await store.replace_references(character.id, [])
    assert await store.load_references(character.id) == []
    assert (await store.get_character(GUILD, "mascot")).has_references is False  # type: ignore[union-attr]


async def test_a_native_id_is_remembered_per_account_and_replaced(store: Storage) -> None:
    character = _character(GUILD)
    await store.add_character(character)
    await store.save_native_id(character.id, "openai:abc", "char_1")
    await store.save_native_id(character.id, "offline", "char_off")
    await store.save_native_id(character.id, "openai:abc", "char_2")
    stored = await store.get_character_by_id(character.id)
    assert stored is not None and stored.native_ids == {"openai:abc": "char_2", "offline": "char_off"}


async def test_a_hosted_reference_is_remembered_per_account_and_content_and_replaced(store: Storage) -> None:
    soon = utcnow() + timedelta(days=7)
    first = HostedReference(account="fal-cdn@a#1", sha256="s1", url="https://cdn/1.jpg", expires_at=soon)
    await store.save_hosted_reference(first)
    await store.save_hosted_reference(first.model_copy(update={"account": "fal-cdn@b#2", "url": "https://cdn/b.jpg"}))
    renewed = first.model_copy(update={"url": "https://cdn/1-again.jpg", "expires_at": soon + timedelta(days=1)})
    await store.save_hosted_reference(renewed)

    found = await store.hosted_references("fal-cdn@a#1", ["s1", "s2", "s1"])

    assert list(found) == ["s1"] and found["s1"].url == "https://cdn/1-again.jpg"
    assert found["s1"].expires_at == renewed.expires_at and found["s1"].account == "fal-cdn@a#1"
    assert (await store.hosted_references("fal-cdn@b#2", ["s1"]))["s1"].url == "https://cdn/b.jpg"
    assert await store.hosted_references("fal-cdn@a#1", []) == {}


async def test_expired_hosted_references_are_dropped_when_another_is_saved(store: Storage) -> None:
    gone = HostedReference(account="acct", sha256="old", url="https://cdn/old.jpg", expires_at=utcnow() - timedelta(1))
    await store.save_hosted_reference(gone)
    assert "old" in await store.hosted_references("acct", ["old"]), "an expired one is still reported until pruned"

    await store.save_hosted_reference(gone.model_copy(update={"sha256": "new", "expires_at": utcnow() + timedelta(1)}))

    assert list(await store.hosted_references("acct", ["old", "new"])) == ["new"]


async def test_rename_refuses_a_taken_handle_and_an_unknown_one(store: Storage) -> None:
    one, blobs = _with_references(GUILD, "one")
    await store.add_character(one, blobs)
    await store.add_character(_character(GUILD, "two"))
    with pytest.raises(HandleTaken):
        await store.rename_character(GUILD, "one", "two")
    with pytest.raises(UnknownHandle):
        await store.rename_character(GUILD, "nope", "three")
    renamed = await store.rename_character(GUILD, "one", "uno")
    assert renamed.handle == "uno" and await store.get_character(GUILD, "one") is None
    # The id, references and native ids stay with the character through a rename.
    assert renamed.id == one.id and renamed.native_ids == one.native_ids
    assert await store.load_references(one.id) == _in_stored_order(blobs)


async def test_removing_a_character_takes_its_references_and_native_ids_with_it(store: Storage) -> None:
    character, blobs = _with_references(GUILD)
    await store.add_character(character, blobs)
    assert await store.remove_character(GUILD, "mascot")
    assert not await store.remove_character(GUILD, "mascot")
    assert await store.get_character(GUILD, "mascot") is None
    assert await store.get_character_by_id(character.id) is None
    assert await store.load_references(character.id) == []

    # Late writes for the removed character (a backend answering after the removal) keep nothing...
    await store.save_native_id(character.id, "openai:abc", "char_late")
    await store.replace_references(character.id, blobs)
    assert await store.load_references(character.id) == []
    # ...and the handle registered again starts clean.
    again = _character(GUILD)
    await store.add_character(again)
    stored = await store.get_character(GUILD, "mascot")
    assert stored is not None and stored.id == again.id
    assert stored.references == [] and stored.native_ids == {}


# --- generations ---------------------------------------------------------------------------------------------


async def test_a_generation_round_trips_with_its_target(store: Storage) -> None:
    generation = _generation(target=DeliveryTarget(channel_id="c9", thread_id="t1", extra={"app_id": "42"}),
                             prompt="a \u0000 cat 🐈", api_video_id="video_1")
    await store.save_generation(generation)
    assert await store.get_generation(generation.id) == generation
    assert await store.find_generation_by_video("video_1") == generation
    assert await store.find_generation_by_video("video_2") is None
    assert await store.get_generation("gnope") is None


async def test_saving_a_generation_again_updates_it_but_keeps_its_target(store: Storage) -> None:
    generation = _generation()
    await store.save_generation(generation)
    await store.update_target(generation.id, DeliveryTarget(channel_id="c1", message_id="m1"))
    await store.save_generation(generation.model_copy(update={"status": GenerationStatus.IN_PROGRESS, "progress": 40}))
    loaded = await store.get_generation(generation.id)
    assert loaded is not None
    assert (loaded.status, loaded.progress, loaded.target.message_id) == (GenerationStatus.IN_PROGRESS, 40, "m1")


async def test_a_deleted_generation_is_forgotten(store: Storage) -> None:
    generation = _generation()
    await store.save_generation(generation)
    await store.delete_generation(generation.id)
    assert await store.get_generation(generation.id) is None
    assert await store.recent_generations(GUILD) == []


async def test_recent_generations_are_the_workspaces_newest_first(store: Storage) -> None:
    start = utcnow()
    mine = [_generation(created_at=start + timedelta(seconds=i)) for i in range(4)]
    for generation in [*mine, _generation(scope=OTHER_GUILD)]:
        await store.save_generation(generation)
    recent = await store.recent_generations(GUILD, limit=3)
    assert [g.id for g in recent] == [g.id for g in reversed(mine)][:3]


async def test_a_delivery_can_be_claimed_once(store: Storage) -> None:
    generation = _generation(status=GenerationStatus.COMPLETED)
    await store.save_generation(generation)
    assert await store.claim_delivery(generation.id, utcnow())
    assert not await store.claim_delivery(generation.id, utcnow())
    await store.release_delivery(generation.id)
    assert await store.claim_delivery(generation.id, utcnow())
    await store.mark_delivered(generation.id, utcnow(), "m1")
    await store.release_delivery(generation.id)
    assert not await store.claim_delivery(generation.id, utcnow())
    loaded = await store.get_generation(generation.id)
    assert loaded is not None and loaded.delivered_at is not None and loaded.target.message_id == "m1"
    # Saving the row again (a later status write) must not wipe the delivery mark.
    await store.save_generation(loaded.model_copy(update={"delivered_at": None}))
    assert (await store.get_generation(generation.id)).delivered_at is not None  # type: ignore[union-attr]


async def test_of_many_claims_at_once_from_two_processes_exactly_one_wins(
    store: Storage, new_storage: StorageFactory
) -> None:
    other = new_storage()
    await other.open()
    try:
        generation = _generation(status=GenerationStatus.COMPLETED)
        await store.save_generation(generation)
        claims = [s.claim_delivery(generation.id, utcnow()) for _ in range(10) for s in (store, other)]
        assert sorted(await asyncio.gather(*claims)) == [False] * 19 + [True]
    finally:
        await other.close()


async def test_a_claim_on_an_unknown_generation_fails(store: Storage) -> None:
    assert not await store.claim_delivery("gnope", utcnow())


async def test_unfinished_generations_are_those_not_delivered(store: Storage) -> None:
    running = _generation(status=GenerationStatus.IN_PROGRESS)
    done = _generation(status=GenerationStatus.COMPLETED)
    deleted = _generation(status=GenerationStatus.DELETED)
    slack = _generation(scope=TEAM)
    for g in (running, done, deleted, slack):
        await store.save_generation(g)
    await store.mark_delivered(done.id, utcnow(), None)
    assert {g.id for g in await store.unfinished_generations(Platform.DISCORD)} == {running.id}
    assert {g.id for g in await store.unfinished_generations()} == {running.id, slack.id}


# --- the line, leases and spending -----------------------------------------------------------------------------


async def test_waiting_generations_are_counted_per_person_and_in_flight_per_backend(store: Storage) -> None:
    alice_waits = [_generation(requester_id="alice", status=GenerationStatus.WAITING) for _ in range(2)]
    bob_sent = _generation(requester_id="bob", status=GenerationStatus.QUEUED)
    other_backend = _generation(requester_id="bob", status=GenerationStatus.IN_PROGRESS, backend="gemini")
    for g in (*alice_waits, bob_sent, other_backend):
        await store.save_generation(g)
    assert [g.id for g in await store.waiting_generations("openai")] == [g.id for g in alice_waits]
    assert await store.count_waiting(GUILD, "alice") == 2 and await store.count_waiting(GUILD, "bob") == 0
    assert await store.count_in_flight("openai") == 1
    assert await store.in_flight_by_person("gemini") == {(GUILD.key, "bob"): 1}


async def test_of_many_processes_claiming_a_waiting_generation_exactly_one_sends_it(
    store: Storage, new_storage: StorageFactory
) -> None:
    other = new_storage()
    await other.open()
    try:
        generation = _generation(status=GenerationStatus.WAITING)
        await store.save_generation(generation)
        until = utcnow() + timedelta(minutes=1)
        claims = [s.claim_for_submit(generation.id, f"p{i}", until) for i in range(6) for s in (store, other)]
        won = [c for c in await asyncio.gather(*claims) if c is not None]
        assert len(won) == 1 and won[0].status is GenerationStatus.SUBMITTING
        assert not await store.cancel_waiting(generation.id), "a claimed generation is no longer waiting"
        assert not await store.place_in_line(generation.id, 1, 60.0), "its place is not written over the claim"
        assert (await store.get_generation(generation.id)).status is GenerationStatus.SUBMITTING  # type: ignore[union-attr]
    finally:
        await other.close()


async def test_a_waiting_generation_can_be_cancelled_once_and_then_never_claimed(store: Storage) -> None:
    generation = _generation(status=GenerationStatus.WAITING)
    await store.save_generation(generation)
    assert await store.cancel_waiting(generation.id) and not await store.cancel_waiting(generation.id)
    assert await store.claim_for_submit(generation.id, "p1", utcnow() + timedelta(minutes=1)) is None
    assert (await store.get_generation(generation.id)).status is GenerationStatus.CANCELLED  # type: ignore[union-attr]


async def test_leases_are_taken_by_one_process_renewed_and_taken_over_when_they_expire(
    store: Storage, new_storage: StorageFactory
) -> None:
    other = new_storage()
    await other.open()
    try:
        running = [_generation(status=GenerationStatus.IN_PROGRESS) for _ in range(20)]
        waiting = _generation(status=GenerationStatus.WAITING)
        slack = _generation(scope=TEAM, status=GenerationStatus.IN_PROGRESS)
        for g in (*running, waiting, slack):
            await store.save_generation(g)
        now = utcnow()
        soon = now + timedelta(seconds=30)
        first, second = await asyncio.gather(
            store.lease_generations("one", [Platform.DISCORD], now, soon),
            other.lease_generations("two", [Platform.DISCORD], now, soon),
        )
        # Every running Discord generation is held by exactly one of them; waiting ones are the line's.
        ids_one, ids_two = {g.id for g in first}, {g.id for g in second}
        assert not ids_one & ids_two and ids_one | ids_two == {g.id for g in running}
        holder, held = ("one", ids_one) if ids_one else ("two", ids_two)
        assert await store.renew_leases(holder, sorted(held), soon + timedelta(seconds=30)) == held
        assert await store.renew_leases("intruder", sorted(held), soon) == set()
        # Nothing is free before the leases expire; after, another process takes them over.
        assert await store.lease_generations("three", [Platform.DISCORD], now, soon) == []
        later = soon + timedelta(minutes=5)
        taken = await store.lease_generations("three", [Platform.DISCORD], later, later + timedelta(seconds=30))
        assert {g.id for g in taken} == {g.id for g in running}
        assert await store.renew_leases(holder, sorted(held), later) == set(), "the old holder lost them"
        # A released lease is free at once; only its holder can release it.
        target = running[0].id
        await store.release_lease("nobody", target)
        assert await store.lease_generations("four", [Platform.DISCORD], later, later) == []
        await store.release_lease("three", target)
        assert [g.id for g in await store.lease_generations("four", [Platform.DISCORD], later, later)] == [target]
        # Delivery under the lease: only the holder may claim it.
        assert not await store.claim_delivery(target, utcnow(), "three")
        assert await store.claim_delivery(target, utcnow(), "four")
    finally:
        await other.close()


async def test_spending_is_reserved_within_the_limits_only_and_follows_the_video(store: Storage) -> None:
    def entry(generation_id: str, person: str, usd: float | None, seconds: int = 8) -> SpendEntry:
        return SpendEntry(
            generation_id=generation_id, scope=GUILD, person=person, backend="openai", model="sora-2",
            seconds=seconds, usd=usd,
        )

    first = entry("g1", "alice", 1.0)
    assert await store.reserve_spend(first, monthly_usd=2.0, daily_seconds=None) is None
    assert await store.reserve_spend(entry("g2", "bob", 0.8), monthly_usd=2.0, daily_seconds=None) is None
    over = await store.reserve_spend(entry("g3", "bob", 0.5), monthly_usd=2.0, daily_seconds=None)
    assert over is not None and over.month_usd == pytest.approx(1.8)
    await store.set_spend_state("g2", SpendState.REFUNDED)
    assert await store.reserve_spend(entry("g3", "bob", 0.5), monthly_usd=2.0, daily_seconds=None) is None
    day_over = await store.reserve_spend(entry("g4", "alice", None, 4), monthly_usd=None, daily_seconds=10)
    assert day_over is not None and day_over.person_day_seconds == 8
    totals = await store.spend_totals(GUILD, "alice", first.month, first.day)
    assert (totals.month_usd, totals.person_day_seconds) == (pytest.approx(1.5), 8)
    await store.set_spend_state("g1", SpendState.SPENT)
    await store.set_spend_state("g3", SpendState.SPENT)
    usage = {(r.person, r.model): (r.videos, r.seconds, r.usd) for r in await store.usage(GUILD, first.month)}
    assert usage == {("alice", "sora-2"): (1, 8, pytest.approx(1.0)), ("bob", "sora-2"): (1, 8, pytest.approx(0.5))}
    assert await store.usage(OTHER_GUILD, first.month) == []


async def test_of_many_reservations_at_once_from_two_processes_none_overspends(
    store: Storage, new_storage: StorageFactory
) -> None:
    other = new_storage()
    await other.open()
    try:
        attempts = [
            s.reserve_spend(
                SpendEntry(generation_id=f"g{i}-{n}", scope=GUILD, person="p", backend="openai", model="m",
                           seconds=1, usd=1.0),
                monthly_usd=5.0,
                daily_seconds=None,
            )
            for i in range(6)
            for n, s in enumerate((store, other))
        ]
        results = await asyncio.gather(*attempts)
        assert sum(r is None for r in results) == 5
    finally:
        await other.close()


# --- webhooks and settings -----------------------------------------------------------------------------------


async def test_webhook_ids_are_remembered(store: Storage) -> None:
    assert await store.remember_webhook("msg_1")
    assert not await store.remember_webhook("msg_1")
    assert await store.remember_webhook("msg_2")


async def test_scope_settings_are_kept_per_workspace(store: Storage) -> None:
    assert await store.get_scope_settings(GUILD) == ScopeSettings(scope=GUILD)
    await store.save_scope_settings(ScopeSettings(scope=GUILD, register_role_id="r1"))
    await store.save_scope_settings(ScopeSettings(scope=GUILD, register_role_id="r2"))
    assert (await store.get_scope_settings(GUILD)).register_role_id == "r2"
    assert (await store.get_scope_settings(OTHER_GUILD)).register_role_id is None


# --- Postgres only -------------------------------------------------------------------------------------------


async def test_a_postgres_storage_stays_within_its_pool_and_closes_every_connection(postgres_url: str) -> None:
    name = f"soracast-pool-test-{id(postgres_url)}"
    storage = PostgresStorage(with_url_parts(postgres_url, application_name=name), max_connections=3)
    watcher = await asyncpg.connect(postgres_url)

    async def connections() -> int:
        return int(await watcher.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name))

    try:
        await storage.open()
        generation = _generation()
        await storage.save_generation(generation)
        # A burst of 30 reads opens the pool's three connections and no more; they stay for the next burst.
        await asyncio.gather(*(storage.get_generation(generation.id) for _ in range(30)))
        assert await connections() == 3
        await storage.close()
        assert await connections() == 0
    finally:
        await storage.close()
        await watcher.close()


async def test_a_place_in_line_is_written_only_while_the_generation_waits(store: Storage) -> None:
    waiting, cancelled = _generation(), _generation()
    for generation in (waiting, cancelled):
        await store.save_generation(generation)
    assert await store.cancel_waiting(cancelled.id)

    assert await store.place_in_line(waiting.id, 2, 120.0)
    assert not await store.place_in_line(cancelled.id, 1, 60.0)

    placed = await store.get_generation(waiting.id)
    assert placed is not None and (placed.status, placed.line_position, placed.line_eta) == (
        GenerationStatus.WAITING, 2, 120.0
    )
    assert (await store.get_generation(cancelled.id)).status is GenerationStatus.CANCELLED  # type: ignore[union-attr]


async def test_the_waiting_line_is_read_lightly_with_who_asked_when_and_the_place_recorded(store: Storage) -> None:
    start = utcnow()
    first = _generation(requester_id="alice", created_at=start)
    second = _generation(OTHER_GUILD, requester_id="bob", created_at=start + timedelta(seconds=1))
    sent = _generation(requester_id="carol", status=GenerationStatus.QUEUED, created_at=start - timedelta(seconds=1))
    elsewhere = _generation(requester_id="dave", backend="gemini")
    for generation in (second, first, sent, elsewhere):
        await store.save_generation(generation)
    assert await store.place_in_line(second.id, 4, 240.0)

    spots = await store.waiting_line("openai")

    assert [(s.id, s.scope, s.requester_id, s.line_position) for s in spots] == [
        (first.id, GUILD, "alice", None),
        (second.id, OTHER_GUILD, "bob", 4),
    ]
    assert [s.created_at for s in spots] == [first.created_at, second.created_at]
    assert [s.id for s in spots] == [g.id for g in await store.waiting_generations("openai")]


async def test_places_are_written_together_only_where_the_generation_still_waits(store: Storage) -> None:
    waiting, cancelled, claimed = _generation(cost_usd=0.4), _generation(), _generation()
    for generation in (waiting, cancelled, claimed):
        await store.save_generation(generation)
    assert await store.cancel_waiting(cancelled.id)
    assert await store.claim_for_submit(claimed.id, "p1", utcnow() + timedelta(minutes=1)) is not None

    written = await store.places_in_line([
        PlaceInLine(generation_id=waiting.id, position=2, eta_seconds=120.0),
        PlaceInLine(generation_id=cancelled.id, position=1, eta_seconds=60.0),
        PlaceInLine(generation_id=claimed.id, position=3, eta_seconds=180.5),
        PlaceInLine(generation_id="g-unknown", position=4, eta_seconds=240.0),
    ])

    assert written == {waiting.id}
    placed = await store.get_generation(waiting.id)
    assert placed is not None
    assert (placed.status, placed.line_position, placed.line_eta) == (GenerationStatus.WAITING, 2, 120.0)
    # The rest of the row is what was saved: only the place changed.
    assert placed.model_dump(exclude={"line_position", "line_eta"}) == waiting.model_dump(
        exclude={"line_position", "line_eta"}
    )
    assert [s.line_position for s in await store.waiting_line("openai")] == [2]
    left = [await store.get_generation(g.id) for g in (cancelled, claimed)]
    assert [(g.status, g.line_position) for g in left if g is not None] == [
        (GenerationStatus.CANCELLED, None), (GenerationStatus.SUBMITTING, None)
    ]
    assert await store.places_in_line([]) == set()


async def test_places_written_by_two_processes_at_once_all_land(store: Storage, new_storage: StorageFactory) -> None:
    other = new_storage()
    await other.open()
    try:
        line = [_generation(requester_id=f"p{i}") for i in range(40)]
        for generation in line:
            await store.save_generation(generation)
        # Two dispatchers place the same line in opposite orders at the same moment.
        forward = [PlaceInLine(generation_id=g.id, position=i + 1, eta_seconds=60.0) for i, g in enumerate(line)]
        backward = list(reversed(forward))
        results = await asyncio.gather(*(
            storage.places_in_line(places) for storage, places in ((store, forward), (other, backward)) * 3
        ))
        assert all(written == {g.id for g in line} for written in results)
        assert [s.line_position for s in await store.waiting_line("openai")] == list(range(1, 41))
    finally:
        await other.close()


async def test_a_pending_form_is_taken_once_and_not_after_it_expired(store: Storage) -> None:
    now = utcnow()
    await store.put_pending_form("form:1", '{"a": 1}', now + timedelta(minutes=15))
    await store.put_pending_form("form:1", '{"a": 2}', now + timedelta(minutes=15))  # the same key: replaced
    await store.put_pending_form("form:2", "{}", now + timedelta(minutes=15))

    assert await store.take_pending_form("form:1", now) == '{"a": 2}'
    assert await store.take_pending_form("form:1", now) is None
    assert await store.take_pending_form("form:2", now + timedelta(minutes=16)) is None
    assert await store.take_pending_form("unknown", now) is None


# --- installations and workspaces that removed soracast ---------------------------------------------------------

WORKSPACE = Scope(platform=Platform.SLACK, id="T0ONE")
NEIGHBOUR = Scope(platform=Platform.SLACK, id="T0ONE2")  # its id starts with the other's: no prefix matching


def _installation(org: str = "", workspace: str = "T0ONE", sealed: str = "gAAAA-sealed") -> StoredInstallation:
    return StoredInstallation(platform=Platform.SLACK, org_id=org, workspace_id=workspace, sealed=sealed)


async def test_an_installation_is_kept_per_organisation_and_workspace_and_replaced_whole(store: Storage) -> None:
    await store.save_installation(_installation(sealed="first"))
    await store.save_installation(_installation(org="E1", workspace="", sealed="org-wide"))
    await store.save_installation(_installation(org="E1", workspace="T0ONE", sealed="inside-the-org"))
    await store.save_installation(_installation(sealed="again"))

    found = await store.find_installation(Platform.SLACK, "", "T0ONE")
    assert found is not None and found.sealed == "again"
    assert (await store.find_installation(Platform.SLACK, "E1", "")).sealed == "org-wide"  # type: ignore[union-attr]
    assert (await store.find_installation(Platform.SLACK, "E1", "T0ONE")).sealed == "inside-the-org"  # type: ignore[union-attr]
    assert await store.find_installation(Platform.DISCORD, "", "T0ONE") is None
    assert [(i.org_id, i.workspace_id) for i in await store.installations(Platform.SLACK)] == [
        ("", "T0ONE"), ("E1", ""), ("E1", "T0ONE")
    ]

    assert await store.delete_installation(Platform.SLACK, "E1", "")
    assert not await store.delete_installation(Platform.SLACK, "E1", "")
    assert await store.find_installation(Platform.SLACK, "E1", "") is None
    assert await store.find_installation(Platform.SLACK, "E1", "T0ONE") is not None


async def test_workspaces_seen_through_an_organisation_are_remembered_once_each(store: Storage) -> None:
    await store.link_org_workspace(Platform.SLACK, "E1", "T2")
    await store.link_org_workspace(Platform.SLACK, "E1", "T1")
    await store.link_org_workspace(Platform.SLACK, "E1", "T1")
    await store.link_org_workspace(Platform.SLACK, "E2", "T3")
    assert await store.org_workspaces(Platform.SLACK, "E1") == ["T1", "T2"]
    assert await store.org_workspaces(Platform.SLACK, "E2") == ["T3"]
    assert await store.org_workspaces(Platform.DISCORD, "E1") == []


async def test_a_retired_workspace_keeps_its_first_date_and_comes_back_when_reinstated(store: Storage) -> None:
    now = utcnow()
    month = now + timedelta(days=30)
    first = RetiredScope(scope=WORKSPACE, reason="app_uninstalled", retired_at=now, purge_after=month)
    assert (await store.retire_scope(first)).purge_after == first.purge_after
    later = RetiredScope(scope=WORKSPACE, reason="tokens_revoked", retired_at=now + timedelta(hours=1),
                         purge_after=now + timedelta(days=31))
    kept = await store.retire_scope(later)
    assert kept.reason == "app_uninstalled" and kept.purge_after == first.purge_after
    assert await store.get_retired_scope(NEIGHBOUR) is None

    soon = RetiredScope(scope=NEIGHBOUR, reason="operator", retired_at=now, purge_after=now + timedelta(days=1))
    await store.retire_scope(soon)
    assert [r.scope for r in await store.retired_scopes()] == [WORKSPACE, NEIGHBOUR]
    assert [r.scope for r in await store.retired_scopes(due_by=now + timedelta(days=2))] == [NEIGHBOUR]
    assert await store.retired_scopes(due_by=now) == []

    assert await store.reinstate_scope(WORKSPACE)
    assert not await store.reinstate_scope(WORKSPACE)
    assert [r.scope for r in await store.retired_scopes()] == [NEIGHBOUR]


async def _fill_workspace(store: Storage, scope: Scope) -> dict[str, Generation]:
    """Everything soracast keeps for a workspace: a character with references, videos in each state, spending,
    settings and its organisation link."""
    character, blobs = _with_references(scope)
    await store.add_character(character, blobs)
    generations = {
        "done": _generation(scope, status=GenerationStatus.COMPLETED, delivered_at=utcnow()),
        "waiting": _generation(scope, status=GenerationStatus.WAITING),
        "cancelled": _generation(scope, status=GenerationStatus.CANCELLED),
        "rendering": _generation(scope, status=GenerationStatus.IN_PROGRESS, api_video_id=f"video-{scope.id}"),
    }
    for generation in generations.values():
        await store.save_generation(generation)
    await store.reserve_spend(
        SpendEntry(generation_id=generations["done"].id, scope=scope, person="u1", backend="openai", model="sora-2",
                   seconds=4, usd=0.4),
        monthly_usd=None, daily_seconds=None,
    )
    await store.save_scope_settings(ScopeSettings(scope=scope, register_role_id="r1"))
    await store.link_org_workspace(scope.platform, "E1", scope.id)
    # Who may use the character, someone asking to, the videos it is in and its owner's notes (migration 007).
    await store.grant_access(character.id, "u2", "u1", utcnow())
    await store.add_access_request(AccessRequest(scope=scope, character_id=character.id, requester_id="u3"))
    await store.add_appearances(generations["done"].id, [character.id])
    await store.add_owner_notices(
        [OwnerNotice(generation_id=generations["done"].id, owner_id="u1", scope=scope)], scope.platform
    )
    return generations


async def test_purging_a_workspace_deletes_all_of_its_data_and_nothing_of_anothers(store: Storage) -> None:
    mine = await _fill_workspace(store, WORKSPACE)
    theirs = await _fill_workspace(store, NEIGHBOUR)
    await store.save_installation(_installation(workspace=NEIGHBOUR.id))
    now = utcnow()
    await store.retire_scope(RetiredScope(scope=WORKSPACE, reason="app_uninstalled", retired_at=now, purge_after=now))
    await store.retire_scope(RetiredScope(scope=NEIGHBOUR, reason="app_uninstalled", retired_at=now,
                                          purge_after=now + timedelta(days=30)))
    neighbour_before = (
        await store.list_characters(NEIGHBOUR),
        [await store.get_generation(g.id) for g in theirs.values()],
        await store.usage(NEIGHBOUR, now.strftime("%Y-%m")),
        await store.get_scope_settings(NEIGHBOUR),
    )
    [their_character] = neighbour_before[0]
    [character_of_mine] = await store.list_characters(WORKSPACE)
    their_requests = await store.pending_access_requests(NEIGHBOUR)
    their_videos = await store.videos_with(their_character.id)

    purged = await store.purge_scope(WORKSPACE)

    assert purged.characters == 1
    assert {g.id for g in purged.generations} == {mine[k].id for k in ("done", "waiting", "cancelled")}
    assert purged.still_running == 1  # a tracker may still write the one rendering: the next sweep takes it
    assert await store.list_characters(WORKSPACE) == []
    assert await store.get_generation(mine["done"].id) is None
    assert await store.get_generation(mine["rendering"].id) is not None
    assert await store.usage(WORKSPACE, now.strftime("%Y-%m")) == []
    assert await store.get_scope_settings(WORKSPACE) == ScopeSettings(scope=WORKSPACE)
    assert await store.org_workspaces(Platform.SLACK, "E1") == [NEIGHBOUR.id]
    assert await store.get_retired_scope(WORKSPACE) is not None  # kept until nothing is left
    assert await store.pending_access_requests(WORKSPACE) == []
    assert await store.videos_with(character_of_mine.id) == []
    assert [n.scope for n in await store.waiting_owner_notices([Platform.SLACK])] == [NEIGHBOUR]

    # The other workspace — whose id merely starts with this one's — is exactly as it was.
    assert (
        await store.list_characters(NEIGHBOUR),
        [await store.get_generation(g.id) for g in theirs.values()],
        await store.usage(NEIGHBOUR, now.strftime("%Y-%m")),
        await store.get_scope_settings(NEIGHBOUR),
    ) == neighbour_before
    assert _in_stored_order(await store.load_references(their_character.id)) == _in_stored_order(
        _with_references(NEIGHBOUR)[1]
    )
    assert await store.find_installation(Platform.SLACK, "", NEIGHBOUR.id) is not None
    assert await store.get_retired_scope(NEIGHBOUR) is not None
    assert len(their_requests) == 1 and await store.pending_access_requests(NEIGHBOUR) == their_requests
    assert len(their_videos) == 1 and await store.videos_with(their_character.id) == their_videos

    # Once its last job has ended, the next purge takes the rest and the retirement mark with it.
    rendering = mine["rendering"]
    rendering.status = GenerationStatus.COMPLETED
    await store.save_generation(rendering)
    again = await store.purge_scope(WORKSPACE)
    assert [g.id for g in again.generations] == [rendering.id] and again.still_running == 0
    assert await store.get_retired_scope(WORKSPACE) is None
    assert len(await store.list_characters(NEIGHBOUR)) == 1


async def test_a_job_announced_for_a_lost_create_is_adopted_once_and_never_over_a_resend(store: Storage) -> None:
    lost = _generation(status=GenerationStatus.SUBMITTING, submitted_at=utcnow(), submit_attempts=1)
    other = _generation(status=GenerationStatus.SUBMITTING, api_video_id="v1_taken")
    await store.save_generation(lost)
    await store.save_generation(other)
    # A job another generation owns is never given to this one; an unknown one is, once.
    assert not await store.adopt_job(lost.id, "v1_taken")
    assert await store.adopt_job(lost.id, "v1_announced")
    assert not await store.adopt_job(lost.id, "v1_later")
    adopted = await store.get_generation(lost.id)
    assert adopted is not None and adopted.api_video_id == "v1_announced"
    assert (await store.find_generation_by_video("v1_announced")).id == lost.id  # type: ignore[union-attr]
    # Once it has a job, a resend is not stamped (the tracker takes up the job instead).
    assert await store.stamp_resend(lost.id, utcnow()) is None
    assert (await store.get_generation(lost.id)).submit_attempts == 1  # type: ignore[union-attr]


async def test_a_resend_is_stamped_only_while_the_create_has_no_job(
    store: Storage, new_storage: StorageFactory
) -> None:
    generation = _generation(status=GenerationStatus.SUBMITTING, submitted_at=utcnow(), submit_attempts=1)
    await store.save_generation(generation)
    again = utcnow()
    stamped = await store.stamp_resend(generation.id, again)
    assert stamped is not None and stamped.submit_attempts == 2 and stamped.submitted_at == again
    unsent = await store.stamp_resend(generation.id, None)
    assert unsent is not None and unsent.submitted_at is None and unsent.submit_attempts == 2
    # Two processes adopting at once: one wins, and a waiting or finished generation is never adopted.
    second = new_storage()
    await second.open()
    try:
        results = await asyncio.gather(
            *(s.adopt_job(generation.id, f"v1_job{i}") for i in range(4) for s in (store, second))
        )
        assert sum(results) == 1
    finally:
        await second.close()
    waiting = _generation(status=GenerationStatus.WAITING)
    await store.save_generation(waiting)
    assert not await store.adopt_job(waiting.id, "v1_other")
    assert await store.stamp_resend(waiting.id, utcnow()) is None


# --- a character belongs to someone (migration 007) ----------------------------------------------------------


async def _database_before(engine: str, database_url: str, version: int) -> None:
    """A database as an older soracast left it: the migrations before `version` only."""
    older = [m for m in migrations(engine) if m.version < version]
    if engine == "sqlite":
        path = Path(database_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(path) as db:
            for migration in older:
                await db.executescript(migration.sql)
            await db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
            for migration in older:
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (migration.version, migration.name, "2026-11-01")
                )
            await db.commit()
        return
    conn = await asyncpg.connect(database_url)
    try:
        for migration in older:
            await conn.execute(migration.sql)
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL)"
        )
        for migration in older:
            await conn.execute(
                "INSERT INTO schema_migrations VALUES ($1, $2, now())", migration.version, migration.name
            )
    finally:
        await conn.close()


async def _insert_old(engine: str, database_url: str, sql: str, *values: object) -> None:
    """One row written the way the older schema took it (`?` placeholders, numbered for Postgres)."""
    if engine == "sqlite":
        async with aiosqlite.connect(Path(database_url.removeprefix("sqlite:///"))) as db:
            await db.execute(sql, values)
            await db.commit()
        return
    numbered = sql
    for index in range(1, len(values) + 1):
        numbered = numbered.replace("?", f"${index}", 1)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(numbered, *values)
    finally:
        await conn.close()


async def test_existing_characters_become_everyones_with_no_instructions_and_keep_their_videos(
    engine: str, database_url: str, new_storage: StorageFactory
) -> None:
    await _database_before(engine, database_url, 7)
    created = utcnow() if engine == "postgres" else utcnow().isoformat()
    await _insert_old(
        engine,
        database_url,
        "INSERT INTO characters (id, scope, handle, name, api_character_id, owner_id, source, source_ref, created_at)"
        " VALUES (?, ?, ?, ?, '', ?, 'upload', 'm.mp4', ?)",
        "c0ld0ld0ld0ld", GUILD.key, "mascot", "Mascot", "u1", created,
    )
    old_video = _generation(characters=[{"handle": "mascot", "name": "Mascot", "character_id": "c0ld0ld0ld0ld"}])
    gone_video = _generation(characters=[{"handle": "gone", "name": "Gone", "character_id": "cremovedlong"}])
    for generation in (old_video, gone_video):
        await _insert_old(
            engine,
            database_url,
            "INSERT INTO generations (id, scope, platform, status, created_at, target, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            generation.id, GUILD.key, "discord", "completed", created, generation.target.model_dump_json(),
            generation.model_dump_json(exclude={"delivered_at", "target"}),
        )

    storage = new_storage()
    await storage.open()
    try:
        character = await storage.get_character(GUILD, "mascot")
        assert character is not None
        assert (character.sharing, character.approved, character.instructions) == (Sharing.EVERYONE, [], "")
        assert character.notify_owner
        assert character.rights_confirmed_by is None and character.rights_confirmed_at is None
        # Videos made before the migration are listed under the character they feature.
        assert [g.id for g in await storage.videos_with(character.id)] == [old_video.id]
    finally:
        await storage.close()


async def test_a_characters_sharing_instructions_and_rights_round_trip(store: Storage) -> None:
    confirmed = utcnow()
    character = _character(GUILD, rights_confirmed_by="u1", rights_confirmed_at=confirmed, approved=["u7"])
    await store.add_character(character)
    character.sharing, character.instructions, character.notify_owner = Sharing.APPROVED, "always red 🧣", False
    await store.save_character_options(character)

    loaded = await store.get_character(GUILD, "mascot")
    assert loaded is not None
    assert (loaded.sharing, loaded.instructions, loaded.notify_owner) == (Sharing.APPROVED, "always red 🧣", False)
    assert loaded.rights_confirmed_by == "u1" and loaded.rights_confirmed_at == confirmed
    assert loaded.approved == ["u7"]


async def test_approved_people_are_added_once_removed_and_cleared_per_character(store: Storage) -> None:
    mascot, other = _character(GUILD), _character(GUILD, "other")
    for character in (mascot, other):
        await store.add_character(character)
    now = utcnow()
    assert await store.grant_access(mascot.id, "u2", "u1", now)
    assert not await store.grant_access(mascot.id, "u2", "u1", now)
    assert await store.grant_access(mascot.id, "u3", "u1", now + timedelta(seconds=1))
    assert await store.grant_access(other.id, "u2", "u1", now)
    assert not await store.grant_access("cnotthereatall", "u2", "u1", now)

    assert (await store.get_character(GUILD, "mascot")).approved == ["u2", "u3"]  # type: ignore[union-attr]
    assert await store.revoke_access(mascot.id, "u2") and not await store.revoke_access(mascot.id, "u2")
    assert (await store.get_character(GUILD, "mascot")).approved == ["u3"]  # type: ignore[union-attr]
    await store.clear_access(mascot.id)
    assert (await store.get_character(GUILD, "mascot")).approved == []  # type: ignore[union-attr]
    assert (await store.get_character(GUILD, "other")).approved == ["u2"]  # type: ignore[union-attr]


async def test_one_request_is_pending_per_person_and_character_and_is_decided_once(
    store: Storage, new_storage: StorageFactory
) -> None:
    character = _character(GUILD, sharing=Sharing.ONLY_ME)
    await store.add_character(character)
    first = await store.add_access_request(AccessRequest(scope=GUILD, character_id=character.id, requester_id="u2"))
    again = await store.add_access_request(AccessRequest(scope=GUILD, character_id=character.id, requester_id="u2"))
    assert again.id == first.id, "a second pending request for the same person replaces nothing"
    await store.mark_owner_told(first.id, True)
    assert (await store.get_access_request(first.id)).owner_told  # type: ignore[union-attr]
    assert [r.id for r in await store.pending_access_requests(GUILD)] == [first.id]
    assert await store.pending_access_requests(OTHER_GUILD) == []

    other = new_storage()
    await other.open()
    try:
        now = utcnow()
        decisions = await asyncio.gather(
            *[s.decide_access_request(first.id, AccessRequestStatus.APPROVED, "u1", now) for s in (store, other) * 5]
        )
    finally:
        await other.close()
    decided = [d for d in decisions if d is not None]
    assert len(decided) == 1, "a request is decided exactly once, whoever clicks at the same moment"
    assert decided[0].status is AccessRequestStatus.APPROVED and decided[0].decided_by == "u1"
    assert (await store.get_character(GUILD, "mascot")).approved == ["u2"]  # type: ignore[union-attr]
    assert await store.decide_access_request(first.id, AccessRequestStatus.DECLINED, "u1", now) is None
    assert await store.pending_access_requests(GUILD) == []

    # Decided, the person may ask again later: a new request, the newest one found.
    later = await store.add_access_request(
        AccessRequest(scope=GUILD, character_id=character.id, requester_id="u2", created_at=now + timedelta(days=2))
    )
    assert later.id != first.id
    assert (await store.latest_access_request(character.id, "u2")).id == later.id  # type: ignore[union-attr]
    declined = await store.decide_access_request(later.id, AccessRequestStatus.DECLINED, "u9", now)
    assert declined is not None and declined.status is AccessRequestStatus.DECLINED
    assert await store.latest_access_request(character.id, "u3") is None


async def test_removing_a_character_takes_its_people_requests_and_appearances(store: Storage) -> None:
    character = _character(GUILD)
    await store.add_character(character)
    await store.grant_access(character.id, "u2", "u1", utcnow())
    await store.add_access_request(AccessRequest(scope=GUILD, character_id=character.id, requester_id="u3"))
    video = _generation()
    await store.add_appearances(video.id, [character.id])
    await store.save_generation(video)

    await store.remove_character(GUILD, "mascot")
    await store.add_character(again := _character(GUILD, id=character.id))
    assert again.approved == [] and (await store.get_character(GUILD, "mascot")).approved == []  # type: ignore[union-attr]
    assert await store.pending_access_requests(GUILD) == []
    assert await store.videos_with(character.id) == []


async def test_a_characters_videos_are_listed_newest_first_and_only_once_stored(store: Storage) -> None:
    mascot, other = _character(GUILD), _character(GUILD, "other")
    for character in (mascot, other):
        await store.add_character(character)
    start = utcnow()
    older, newer, elsewhere = (_generation(created_at=start + timedelta(seconds=i)) for i in range(3))
    await store.add_appearances(older.id, [mascot.id])
    await store.add_appearances(newer.id, [mascot.id, other.id])
    await store.add_appearances(newer.id, [mascot.id])  # repeated: kept once
    await store.add_appearances(elsewhere.id, [other.id])
    unsaved = _generation()
    await store.add_appearances(unsaved.id, [mascot.id])  # its generation was never stored (refused meanwhile)
    for generation in (older, newer, elsewhere):
        await store.save_generation(generation)

    assert [g.id for g in await store.videos_with(mascot.id)] == [newer.id, older.id]
    assert [g.id for g in await store.videos_with(other.id)] == [elsewhere.id, newer.id]
    await store.delete_generation(newer.id)
    assert [g.id for g in await store.videos_with(mascot.id)] == [older.id]


async def test_owner_notices_wait_are_settled_once_and_remember_the_last_message(
    store: Storage, new_storage: StorageFactory
) -> None:
    start = utcnow()
    videos = [_generation(created_at=start + timedelta(seconds=i)) for i in range(3)]
    notices = [OwnerNotice(generation_id=g.id, owner_id="u1", scope=GUILD, created_at=g.created_at) for g in videos]
    await store.add_owner_notices(notices, Platform.DISCORD)
    await store.add_owner_notices(notices[:1], Platform.DISCORD)  # repeated: ignored
    await store.add_owner_notices(
        [OwnerNotice(generation_id="gslackone", owner_id="u1", scope=TEAM)], Platform.SLACK
    )
    waiting = await store.waiting_owner_notices([Platform.DISCORD])
    assert [n.generation_id for n in waiting] == [g.id for g in videos]
    assert await store.last_owner_message(GUILD, "u1") is None

    other = new_storage()
    await other.open()
    try:
        ids = [g.id for g in videos[:2]]
        moved = await asyncio.gather(
            *[s.settle_owner_notices(GUILD, "u1", ids, NoticeState.SENT, start) for s in (store, other) * 3]
        )
    finally:
        await other.close()
    assert sorted(i for batch in moved for i in batch) == sorted(ids), "each notice is taken by one sender"
    assert await store.last_owner_message(GUILD, "u1") == start
    assert await store.last_owner_message(OTHER_GUILD, "u1") is None

    # A send that failed for now puts its notices back; a dropped one never counts as a message.
    await store.reopen_owner_notices(GUILD, "u1", ids[:1])
    assert [n.generation_id for n in await store.waiting_owner_notices([Platform.DISCORD])] == [ids[0], videos[2].id]
    later = start + timedelta(minutes=5)
    assert await store.settle_owner_notices(GUILD, "u1", [videos[2].id], NoticeState.DROPPED, later) == [videos[2].id]
    assert await store.last_owner_message(GUILD, "u1") == start
    assert await store.settle_owner_notices(GUILD, "u1", [ids[0]], NoticeState.UNDELIVERED, later) == [ids[0]]
    assert await store.last_owner_message(GUILD, "u1") == later
    assert await store.waiting_owner_notices([Platform.DISCORD]) == []
    # Notes that could not be sent are handed out once to whoever shows them another way.
    shown = later + timedelta(minutes=1)
    assert await store.take_undelivered_notices(OTHER_GUILD, "u1", shown) == []
    assert await store.take_undelivered_notices(GUILD, "u1", shown) == [ids[0]]
    assert await store.take_undelivered_notices(GUILD, "u1", shown) == []
    assert await store.last_owner_message(GUILD, "u1") == shown
    assert [n.generation_id for n in await store.waiting_owner_notices([Platform.SLACK])] == ["gslackone"]


# --- processes sharing the storage, and one create rate for all of them (migration 009) -------------------------


async def test_a_process_that_ended_or_missed_three_beats_is_dead_and_its_leases_go_to_the_living(
    store: Storage,
) -> None:
    now = utcnow()
    await store.beat("alive", now - timedelta(seconds=4), 5.0)
    await store.beat("quiet", now - timedelta(seconds=16), 5.0)
    await store.beat("slow", now - timedelta(seconds=16), 60.0)  # beats once a minute: 16 s is nothing for it
    await store.beat("ended", now, 5.0)
    await store.end_process("ended", now)
    await store.beat("ancient", now - timedelta(days=2), 5.0)
    assert await store.dead_processes(now) == {"quiet", "ended"}, "rows of processes gone for a day are forgotten"
    # A beat brings a process back (a slow one caught up).
    await store.beat("quiet", now, 5.0)
    assert await store.dead_processes(now) == {"ended"}

    held_by_dead = _generation(status=GenerationStatus.IN_PROGRESS)
    held_by_living = _generation(status=GenerationStatus.IN_PROGRESS)
    for generation in (held_by_dead, held_by_living):
        await store.save_generation(generation)
    long = now + timedelta(minutes=10)
    assert [g.id for g in await store.lease_generations("ended", [Platform.DISCORD], now, long, limit=1)] == [
        held_by_dead.id
    ]
    assert [g.id for g in await store.lease_generations("alive", [Platform.DISCORD], now, long)] == [
        held_by_living.id
    ]
    # Neither lease has run out; only the dead holder's is taken, and only by naming it dead.
    assert await store.lease_generations("newcomer", [Platform.DISCORD], now, long) == []
    taken = await store.lease_generations("newcomer", [Platform.DISCORD], now, long, dead=["ended", "quiet"])
    assert [g.id for g in taken] == [held_by_dead.id]
    assert await store.renew_leases("ended", [held_by_dead.id], long) == set()


async def test_a_process_that_vanished_without_ending_is_dead_after_three_beats_or_on_postgres_when_its_lock_went(
    engine: str, store: Storage, new_storage: StorageFactory
) -> None:
    now = utcnow()
    other = new_storage()
    await other.open()
    await other.beat("victim", now - timedelta(seconds=8), 5.0)  # 1.6 beats ago: late, not yet dead
    await store.beat("watcher", now, 5.0)
    assert await store.dead_processes(now) == set()
    await other.close()  # as after kill -9: no end_process; on Postgres its connections (and lock) are gone
    expected = {"victim"} if engine == "postgres" else set()
    assert await store.dead_processes(now) == expected
    assert await store.dead_processes(now + timedelta(seconds=8)) == {"victim"}, "three beats missed"
    assert "watcher" not in await store.dead_processes(now + timedelta(seconds=8)), "its lock is still held"


async def test_a_dead_holders_job_is_taken_over_by_exactly_one_process_and_only_from_that_holder(
    store: Storage, new_storage: StorageFactory
) -> None:
    generation = _generation(status=GenerationStatus.COMPLETED)
    await store.save_generation(generation)
    now = utcnow()
    long = now + timedelta(minutes=10)
    assert await store.lease_holder(generation.id) is None
    assert await store.lease_holder("gnosuchthing") is None
    await store.lease_generations("dead-one", [Platform.DISCORD], now, long)
    holder = await store.lease_holder(generation.id)
    assert holder is not None and holder.owner == "dead-one" and holder.until == long

    # Taking over from a holder it is not held by, while the lease runs, changes nothing.
    assert await store.take_over(generation.id, "thief", "someone-else", now, long) is None
    assert await store.take_over(generation.id, "thief", None, now, long) is None
    other = new_storage()
    await other.open()
    try:
        tries = [s.take_over(generation.id, f"p{i}", "dead-one", now, long) for i in range(4) for s in (store, other)]
        won = [g for g in await asyncio.gather(*tries) if g is not None]
    finally:
        await other.close()
    assert len(won) == 1 and won[0].id == generation.id
    winner = await store.lease_holder(generation.id)
    assert winner is not None and winner.owner.startswith("p")
    assert await store.claim_delivery(generation.id, utcnow(), winner.owner)
    # An expired lease is free to anyone; a delivered generation to nobody.
    later = long + timedelta(seconds=1)
    assert await store.take_over(generation.id, "late", "whoever", later, later + timedelta(minutes=1)) is not None
    await store.mark_delivered(generation.id, utcnow(), None)
    assert await store.take_over(generation.id, "after", "late", later, later) is None
    waiting = _generation(status=GenerationStatus.WAITING)
    await store.save_generation(waiting)
    assert await store.take_over(waiting.id, "anyone", None, now, long) is None, "the line sends it, not a lease"


async def test_create_turns_are_shared_by_every_process_per_account_and_a_429_holds_them_all(
    store: Storage, new_storage: StorageFactory
) -> None:
    other = new_storage()
    await other.open()
    try:
        now = utcnow()
        # Three at once after a quiet spell (burst 3), then one a second, whichever process asks.
        asked = await asyncio.gather(*[s.take_submit_turn("acct", now, 1.0, 3) for s in (store, other) * 4])
        assert sorted(w == 0.0 for w in asked).count(True) == 3
        assert min(w for w in asked if w > 0) == pytest.approx(1.0)
        assert await other.take_submit_turn("acct", now + timedelta(seconds=0.5), 1.0, 3) == pytest.approx(0.5)
        assert await other.take_submit_turn("acct", now + timedelta(seconds=1), 1.0, 3) == 0.0
        assert await store.take_submit_turn("acct", now + timedelta(seconds=1), 1.0, 3) == pytest.approx(1.0)
        assert await store.take_submit_turn("another account", now, 1.0, 3) == 0.0

        # A 429 seen by one process holds every process's creates on that account; a shorter hold does not cut it.
        await other.hold_submits("acct", now + timedelta(seconds=30))
        await store.hold_submits("acct", now + timedelta(seconds=10))
        assert await store.take_submit_turn("acct", now + timedelta(seconds=5), 1.0, 3) == pytest.approx(25.0)
        assert await store.take_submit_turn("another account", now + timedelta(seconds=5), 1.0, 3) == 0.0
        assert await other.take_submit_turn("acct", now + timedelta(seconds=31), 1.0, 3) == 0.0
        await store.hold_submits("new account", now + timedelta(seconds=3))
        assert await store.take_submit_turn("new account", now, 1.0, 3) == pytest.approx(3.0)
    finally:
        await other.close()


async def test_jobs_leased_before_processes_beat_are_not_judged_dead_after_the_upgrade(
    engine: str, database_url: str, new_storage: StorageFactory
) -> None:
    await _database_before(engine, database_url, 9)
    old = _generation(status=GenerationStatus.IN_PROGRESS)
    until = utcnow() + timedelta(minutes=5)
    await _insert_old(
        engine,
        database_url,
        "INSERT INTO generations (id, scope, platform, status, created_at, target, body, lease_owner, lease_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        old.id, GUILD.key, "discord", "in_progress", utcnow() if engine == "postgres" else utcnow().isoformat(),
        old.target.model_dump_json(), old.model_dump_json(exclude={"delivered_at", "target"}), "old-version",
        until if engine == "postgres" else until.isoformat(),
    )
    storage = new_storage()
    await storage.open()
    try:
        # A holder with no heartbeat row (an older soracast) is never called dead: its lease runs out as before.
        assert await storage.dead_processes(utcnow()) == set()
        assert await storage.lease_generations("new-version", [Platform.DISCORD], utcnow(), until) == []
        holder = await storage.lease_holder(old.id)
        assert holder is not None and holder.owner == "old-version"
        assert await storage.take_submit_turn("acct", utcnow(), 1.0) == 0.0
    finally:
        await storage.close()

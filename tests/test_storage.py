"""SQLite storage: migrations, per-workspace isolation, delivery claims."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.errors import HandleTaken, UnknownHandle
from bot.models import Character, DeliveryTarget, Generation, GenerationStatus, Platform, Scope, utcnow
from storage.sqlite import SQLiteStorage, migrations

GUILD = Scope(platform=Platform.DISCORD, id="1")
OTHER_GUILD = Scope(platform=Platform.DISCORD, id="2")
TEAM = Scope(platform=Platform.SLACK, id="1")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    storage = SQLiteStorage(tmp_path / "db" / "soracast.db")
    await storage.open()
    yield storage
    await storage.close()


def _character(scope: Scope, handle: str = "mascot") -> Character:
    return Character(scope=scope, handle=handle, name="Mascot", api_character_id="char_1", owner_id="u1")


def _generation(scope: Scope = GUILD, **fields: object) -> Generation:
    base: dict[str, object] = dict(
        scope=scope, requester_id="u1", prompt="p", api_prompt="p", model="sora-2", seconds="4", size="1280x720",
        target=DeliveryTarget(channel_id="c1"),
    )
    base.update(fields)
    return Generation(**base)  # type: ignore[arg-type]


async def test_migrations_run_once_and_the_database_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "again.db"
    for _ in range(2):
        storage = SQLiteStorage(path)
        await storage.open()
        async with storage.db.execute("SELECT count(*) FROM schema_migrations") as cursor:
            assert (await cursor.fetchone())[0] == len(migrations("sqlite"))
        async with storage.db.execute("PRAGMA journal_mode") as cursor:
            assert (await cursor.fetchone())[0] == "wal"
        await storage.close()


async def test_a_handle_is_unique_per_workspace_only(store: SQLiteStorage) -> None:
    await store.add_character(_character(GUILD))
    with pytest.raises(HandleTaken):
        await store.add_character(_character(GUILD))
    await store.add_character(_character(OTHER_GUILD))
    await store.add_character(_character(TEAM))
    assert [c.scope for c in await store.list_characters(GUILD)] == [GUILD]
    assert await store.get_character(OTHER_GUILD, "mascot") is not None


async def test_one_workspace_never_sees_anothers_characters(store: SQLiteStorage) -> None:
    await store.add_character(_character(GUILD, "secret"))
    assert await store.get_character(OTHER_GUILD, "secret") is None
    assert await store.list_characters(TEAM) == []
    assert not await store.remove_character(OTHER_GUILD, "secret")
    assert await store.get_character(GUILD, "secret") is not None


async def test_rename_refuses_a_taken_handle_and_an_unknown_one(store: SQLiteStorage) -> None:
    await store.add_character(_character(GUILD, "one"))
    await store.add_character(_character(GUILD, "two"))
    with pytest.raises(HandleTaken):
        await store.rename_character(GUILD, "one", "two")
    with pytest.raises(UnknownHandle):
        await store.rename_character(GUILD, "nope", "three")
    renamed = await store.rename_character(GUILD, "one", "uno")
    assert renamed.handle == "uno" and await store.get_character(GUILD, "one") is None


async def test_a_generation_round_trips_with_its_target(store: SQLiteStorage) -> None:
    generation = _generation(target=DeliveryTarget(channel_id="c9", thread_id="t1", extra={"app_id": "42"}))
    await store.save_generation(generation)
    loaded = await store.get_generation(generation.id)
    assert loaded == generation


async def test_a_delivery_can_be_claimed_once(store: SQLiteStorage) -> None:
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


async def test_unfinished_generations_are_those_not_delivered(store: SQLiteStorage) -> None:
    running = _generation(status=GenerationStatus.IN_PROGRESS)
    done = _generation(status=GenerationStatus.COMPLETED)
    deleted = _generation(status=GenerationStatus.DELETED)
    slack = _generation(scope=TEAM)
    for g in (running, done, deleted, slack):
        await store.save_generation(g)
    await store.mark_delivered(done.id, utcnow(), None)
    assert {g.id for g in await store.unfinished_generations(Platform.DISCORD)} == {running.id}
    assert {g.id for g in await store.unfinished_generations()} == {running.id, slack.id}


async def test_webhook_ids_are_remembered(store: SQLiteStorage) -> None:
    assert await store.remember_webhook("msg_1")
    assert not await store.remember_webhook("msg_1")


async def test_a_pending_form_is_taken_once_and_not_after_it_expired(store: SQLiteStorage) -> None:
    now = utcnow()
    await store.put_pending_form("form:1", '{"a": 1}', now + timedelta(minutes=15))
    await store.put_pending_form("form:1", '{"a": 2}', now + timedelta(minutes=15))  # the same key: replaced
    await store.put_pending_form("form:2", "{}", now + timedelta(minutes=15))

    assert await store.take_pending_form("form:1", now) == '{"a": 2}'
    assert await store.take_pending_form("form:1", now) is None
    assert await store.take_pending_form("form:2", now + timedelta(minutes=16)) is None
    assert await store.take_pending_form("unknown", now) is None

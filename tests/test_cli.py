"""The console script as a host runs it: `soracast web` serves Slack and webhooks; bad settings stop it."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from bot.models import Character, Platform, Scope, StoredInstallation
from bot.sealing import SecretBox, new_key
from storage.schema import migrations
from storage.sqlite import SQLiteStorage


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("SORACAST_", "SLACK_", "DISCORD_", "OPENAI_")) and k != "DATABASE_URL"
    }
    env.update({"SORACAST_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


def test_soracast_web_serves_slack_and_webhooks_and_refuses_unsigned_requests(tmp_path: Path) -> None:
    port = _free_port()
    env = _env(
        tmp_path,
        PORT=str(port),
        SORACAST_HOST="127.0.0.1",
        SLACK_BOT_TOKEN="xoxb-0000-test-not-a-real-token",
        SLACK_SIGNING_SECRET="signing-secret-for-the-cli-test",
        OPENAI_WEBHOOK_SECRET="whsec_dGhlLXdlYmhvb2stc2VjcmV0LWZvci10aGUtY2xp",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "web"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "soracast web did not start"
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["offline"] is True
        unsigned = httpx.post(base + "/slack/events", data={"command": "/sora", "text": "a cat"}, timeout=5)
        assert unsigned.status_code == 401
        forged = httpx.post(base + "/webhooks/openai", content=b"{}", headers={"webhook-id": "x"}, timeout=5)
        assert forged.status_code == 401
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    for secret in ("xoxb-0000-test-not-a-real-token", "signing-secret-for-the-cli-test"):
        assert secret not in output


def _start_web(tmp_path: Path, port: int, **extra: str) -> tuple[subprocess.Popen[str], httpx.Response]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "web"], cwd=tmp_path,
        env=_env(tmp_path, PORT=str(port), SORACAST_HOST="127.0.0.1", **extra),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            return process, httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(output or "soracast web did not start") from None
            time.sleep(0.2)


def test_soracast_web_without_slack_serves_the_video_webhooks_only(tmp_path: Path) -> None:
    # A Discord-only deployment still needs somewhere for Gemini's and fal's webhooks to land.
    port = _free_port()
    process, health = _start_web(
        tmp_path, port, SORACAST_PUBLIC_URL="https://soracast.example", GEMINI_WEBHOOK_SECRET="whsec_" + "QUJD" * 8
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert health.status_code == 200
        assert httpx.post(base + "/slack/events", data={"command": "/sora"}, timeout=5).status_code == 404
        assert httpx.post(base + "/webhooks/gemini", content=b"{}", timeout=5).status_code == 401
        assert httpx.post(base + "/webhooks/fal/gen_1", content=b"{}", timeout=5).status_code == 401
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Slack is not configured" in output and "serving only the video webhooks" in output


def test_soracast_web_with_half_of_slack_names_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "web"], cwd=tmp_path,
        env=_env(tmp_path, SLACK_BOT_TOKEN="xoxb-0000-test-not-a-real-token"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "SLACK_SIGNING_SECRET" in result.stderr


def test_a_malformed_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "web"], cwd=tmp_path, env=_env(tmp_path, SORACAST_MAX_UPLOAD_MB="lots"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "SORACAST_MAX_UPLOAD_MB" in result.stderr


def test_a_missing_token_is_named(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "discord"], cwd=tmp_path, env=_env(tmp_path),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "DISCORD_TOKEN" in result.stderr


def _migrate(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "migrate"], cwd=tmp_path, env=_env(tmp_path, **extra),
        capture_output=True, text=True, timeout=60,
    )


def test_soracast_migrate_applies_each_migration_once_and_starts_nothing_else(tmp_path: Path) -> None:
    first = _migrate(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "applying migration 001_initial.sql" in first.stderr and "002_" in first.stderr
    assert "up to date" in first.stdout
    with sqlite3.connect(tmp_path / "data" / "soracast.db") as db:
        applied = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    assert applied == [m.version for m in migrations("sqlite")]
    second = _migrate(tmp_path)
    assert second.returncode == 0 and "applying migration" not in second.stderr
    # Migrating opens no backend and makes no media folders: it is safe as a release step.
    assert not (tmp_path / "data" / "media").exists()


def test_soracast_migrate_migrates_the_postgres_database_url_names(tmp_path: Path, postgres_url: str) -> None:
    result = _migrate(tmp_path, DATABASE_URL=postgres_url)
    assert result.returncode == 0, result.stderr
    assert "applying migration 002_character_references.sql" in result.stderr

    async def tables() -> set[str]:
        conn = await asyncpg.connect(postgres_url)
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        finally:
            await conn.close()
        return {row[0] for row in rows}

    assert {"schema_migrations", "characters", "character_references", "generations"} <= asyncio.run(tables())
    assert not (tmp_path / "data" / "soracast.db").exists()


def test_a_bad_database_url_stops_migrate_with_one_line_naming_it(tmp_path: Path) -> None:
    result = _migrate(tmp_path, DATABASE_URL="mysql://u:hunter2-secret@db/app")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr


def _cli(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env=_env(tmp_path, **extra),
        capture_output=True, text=True, timeout=60,
    )


def _storage(tmp_path: Path) -> SQLiteStorage:
    return SQLiteStorage(tmp_path / "data" / "soracast.db")


def test_new_key_prints_a_key_secret_key_accepts(tmp_path: Path) -> None:
    result = _cli(tmp_path, "new-key")
    assert result.returncode == 0
    SecretBox(result.stdout.strip())  # a Fernet key
    assert _cli(tmp_path, "new-key").stdout != result.stdout


def test_forget_workspace_says_what_would_go_then_deletes_that_workspace_only(tmp_path: Path) -> None:
    gone, kept = Scope(platform=Platform.SLACK, id="T0GONE"), Scope(platform=Platform.SLACK, id="T0KEPT")

    async def fill() -> None:
        store = _storage(tmp_path)
        await store.open()
        for scope in (gone, kept):
            await store.add_character(Character(scope=scope, handle="mascot", name="Mascot", owner_id="u1"))
            await store.save_installation(
                StoredInstallation(platform=Platform.SLACK, workspace_id=scope.id, sealed="sealed")
            )
        await store.close()

    asyncio.run(fill())
    dry = _cli(tmp_path, "forget-workspace", "slack:T0GONE")
    assert dry.returncode == 1 and "1 character(s)" in dry.stdout and "--yes" in dry.stdout

    done = _cli(tmp_path, "forget-workspace", "slack:T0GONE", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted 1 character(s), 0 video(s) and 1 installation(s)" in done.stdout

    async def left() -> tuple[int, int, bool, bool]:
        store = _storage(tmp_path)
        await store.open()
        try:
            return (
                len(await store.list_characters(gone)),
                len(await store.list_characters(kept)),
                await store.find_installation(Platform.SLACK, "", gone.id) is None,
                await store.find_installation(Platform.SLACK, "", kept.id) is not None,
            )
        finally:
            await store.close()

    assert asyncio.run(left()) == (0, 1, True, True)
    bad = _cli(tmp_path, "forget-workspace", "T0GONE")
    assert bad.returncode == 2 and "slack:T0123ABCD" in bad.stderr


def test_rekey_seals_the_stored_tokens_under_the_first_key(tmp_path: Path) -> None:
    old, new = new_key(), new_key()

    async def store_one() -> None:
        store = _storage(tmp_path)
        await store.open()
        await store.save_installation(
            StoredInstallation(platform=Platform.SLACK, workspace_id="T0ONE", sealed=SecretBox(old).seal("xoxb-t"))
        )
        await store.close()

    async def sealed() -> str:
        store = _storage(tmp_path)
        await store.open()
        try:
            found = await store.find_installation(Platform.SLACK, "", "T0ONE")
            assert found is not None
            return found.sealed
        finally:
            await store.close()

    asyncio.run(store_one())
    result = _cli(tmp_path, "rekey", SORACAST_SECRET_KEY=f"{new},{old}")
    assert result.returncode == 0 and "1 installation(s)" in result.stdout
    assert SecretBox(new).open(asyncio.run(sealed())) == "xoxb-t"
    assert old not in result.stdout + result.stderr and new not in result.stdout + result.stderr
    lost = _cli(tmp_path, "rekey", SORACAST_SECRET_KEY=new_key())
    assert lost.returncode == 1 and "slack:T0ONE" in lost.stderr
    missing = _cli(tmp_path, "rekey")
    assert missing.returncode == 2 and "SORACAST_SECRET_KEY" in missing.stderr


def test_oauth_mode_without_its_key_stops_start_up_with_one_line_naming_it(tmp_path: Path) -> None:
    oauth = {
        "SLACK_SIGNING_SECRET": "signing-secret-for-the-cli-test",
        "SLACK_CLIENT_ID": "1111.2222",
        "SLACK_CLIENT_SECRET": "client-secret-for-the-cli-test",
        "SLACK_STATE_SECRET": "state-secret-for-the-cli-test",
    }
    missing = _cli(tmp_path, "web", **oauth)
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "SORACAST_SECRET_KEY is not set" in missing.stderr
    malformed = _cli(tmp_path, "web", **oauth, SORACAST_SECRET_KEY="hunter2-not-a-key")
    assert malformed.returncode == 2 and "SORACAST_SECRET_KEY" in malformed.stderr
    assert "hunter2" not in malformed.stderr
    assert not (tmp_path / "data" / "soracast.db").exists()

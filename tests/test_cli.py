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

from storage.schema import migrations


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

"""The console script as a host runs it: `soracast web` serves Slack and webhooks; bad settings stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SORACAST_", "SLACK_", "DISCORD_", "OPENAI_"))}
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

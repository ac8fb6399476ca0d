"""Every request in the hostile corpus, sent over real HTTP to the app `soracast web` serves (the Slack door,
the Videos API webhook, the health check, and paths it does not serve): each is refused with the corpus's
4xx and exactly one log line without a traceback, and nothing is stored or sent to Slack."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import build_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.signing import sign
from tests.fakes.slack_api import FakeSlackAPI
from tests.fixtures.slack import SIGNING_SECRET, SlackHarness, slack_settings, start_harness, stop_harness
from tests.hostile.corpus import (
    FORM,
    MARKER,
    RAW_CASES,
    ROUTE_CASES,
    SLACK_CASES,
    WEBHOOK_CASES,
    RawCase,
    RouteCase,
    SlackCase,
    WebhookCase,
)

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"hostile-webhook-secret-32-bytes!").decode()


def _ids(cases: list) -> list[str]:
    return [case.name for case in cases]


@pytest.fixture
async def web(tmp_path: Path, slack_api: FakeSlackAPI, offline_api: OfflineVideosAPI) -> AsyncIterator[SlackHarness]:
    """The whole `soracast web` app (Slack door, webhook route, health check) on 127.0.0.1."""
    settings = slack_settings(tmp_path / "data", webhook_secret=WEBHOOK_SECRET)
    core = await build_app(settings, videos=offline_api)
    harness = await start_harness(slack_api, settings, core)
    yield harness
    await stop_harness(harness)
    await core.aclose()


def assert_one_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """Exactly one log record at INFO or above, on one line, without a traceback or the body's content."""
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(records) == 1, [f"{r.name}: {r.getMessage()}" for r in records]
    [record] = records
    message = record.getMessage()
    assert record.exc_info is None and "\n" not in message and "Traceback" not in message, message
    assert MARKER not in caplog.text
    return record


async def assert_nothing_happened(web: SlackHarness) -> None:
    """Nothing stored, nothing sent to Slack (bolt's one-off `auth.test` aside)."""
    await web.settle()
    assert {c.method for c in web.api.calls} <= {"auth.test"}, web.api.methods()
    assert await web.core.generations.recent(web.scope) == []
    assert await web.core.registry.list(web.scope) == []


def _slack_headers(case: SlackCase) -> dict[str, str]:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    now = int(time.time())
    timestamp = {"stale": now - 600, "future": now + 600}.get(case.signing, now)
    if case.signing == "none":
        return headers
    stamp = case.signing.removeprefix("ts:") if case.signing.startswith("ts:") else str(timestamp)
    secret = "not-the-signing-secret" if case.signing == "wrong-secret" else SIGNING_SECRET
    signature = "v0=" + _hmac(secret, f"v0:{stamp}:".encode() + case.body)
    if case.signing == "v1-scheme":
        signature = signature.replace("v0=", "v1=")
    return headers | {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


def _hmac(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("case", SLACK_CASES, ids=_ids(SLACK_CASES))
async def test_the_slack_door_refuses_each_hostile_request_in_one_line(
    web: SlackHarness, caplog: pytest.LogCaptureFixture, case: SlackCase
) -> None:
    with caplog.at_level(logging.INFO):
        async with web.session.post(
            f"{web.url}/slack/events", data=case.body, headers=_slack_headers(case), skip_auto_headers=["Content-Type"]
        ) as resp:
            status = resp.status
        await web.settle()
    assert status == case.status
    assert_one_line(caplog)
    await assert_nothing_happened(web)


async def test_a_body_streamed_past_the_cap_without_a_length_is_cut_off(
    web: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536  # 4 MiB in all, chunked, no Content-Length

    with caplog.at_level(logging.INFO):
        async with web.session.post(f"{web.url}/slack/events", data=endless()) as resp:
            assert resp.status == 413
    assert "limit" in assert_one_line(caplog).getMessage()
    await assert_nothing_happened(web)


def _webhook_headers(case: WebhookCase) -> dict[str, str]:
    if case.signing == "none":
        return {"content-type": "application/json"}
    timestamp = str(int(time.time()) - (3600 if case.signing == "stale" else 0))
    webhook_id = case.signing.removeprefix("id:") if case.signing.startswith("id:") else "msg_hostile"
    secret = WEBHOOK_SECRET
    if case.signing == "wrong-secret":
        secret = "whsec_" + base64.b64encode(b"another-secret-another-secret-32").decode()
    signature = sign(secret, webhook_id.encode("ascii", "replace").decode(), int(timestamp), case.body)
    if case.signing.startswith("ts:"):
        timestamp = case.signing.removeprefix("ts:")
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }


@pytest.mark.parametrize("case", WEBHOOK_CASES, ids=_ids(WEBHOOK_CASES))
async def test_the_webhook_refuses_each_hostile_request_in_one_line(
    web: SlackHarness, caplog: pytest.LogCaptureFixture, case: WebhookCase
) -> None:
    with caplog.at_level(logging.INFO):
        async with web.session.post(f"{web.url}/webhooks/openai", data=case.body, headers=_webhook_headers(case)) as r:
            status = r.status
    assert status == case.status
    assert_one_line(caplog)
    # A refused webhook is never remembered, so a genuine one with that id would still be acted on.
    assert await web.core.storage.remember_webhook("msg_hostile")
    await assert_nothing_happened(web)


async def test_without_a_secret_the_webhook_route_is_off_and_reads_nothing(
    tmp_path: Path, slack_api: FakeSlackAPI, offline_api: OfflineVideosAPI, caplog: pytest.LogCaptureFixture
) -> None:
    settings = slack_settings(tmp_path / "data")
    core = await build_app(settings, videos=offline_api)
    harness = await start_harness(slack_api, settings, core)
    try:
        with caplog.at_level(logging.INFO):
            async with harness.session.post(f"{harness.url}/webhooks/openai", data=MARKER.encode()) as resp:
                assert resp.status == 404
        assert "OPENAI_WEBHOOK_SECRET" in assert_one_line(caplog).getMessage()
    finally:
        await stop_harness(harness)
        await core.aclose()


@pytest.mark.parametrize("case", ROUTE_CASES, ids=_ids(ROUTE_CASES))
async def test_other_routes_refuse_what_they_do_not_take_in_one_line(
    web: SlackHarness, caplog: pytest.LogCaptureFixture, case: RouteCase
) -> None:
    with caplog.at_level(logging.INFO):
        async with web.session.request(case.method, f"{web.url}{case.path}", data=case.body) as resp:
            assert resp.status == case.status
    assert_one_line(caplog)
    await assert_nothing_happened(web)


async def test_the_health_check_ignores_what_it_is_sent(web: SlackHarness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        async with web.session.get(f"{web.url}/healthz?probe=<!here>", headers={"X-Junk": MARKER}) as resp:
            assert resp.status == 200 and (await resp.json())["ok"] is True
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


@pytest.mark.parametrize("case", RAW_CASES, ids=_ids(RAW_CASES))
async def test_requests_that_are_not_http_get_a_4xx_and_at_most_one_line(
    web: SlackHarness, caplog: pytest.LogCaptureFixture, case: RawCase
) -> None:
    host, port = web.url.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(case.data)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
        await asyncio.sleep(0.05)  # the server logs after answering
    assert status_line.split()[1] == str(case.status).encode(), status_line
    logged = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(logged) <= 1 and all(r.exc_info is None for r in logged), [r.getMessage() for r in logged]
    await assert_nothing_happened(web)


async def test_slacks_bare_certificate_probe_is_answered_and_goes_no_further(
    web: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with web.session.post(
            f"{web.url}/slack/events", data=b"ssl_check=1&token=legacy", headers={"Content-Type": FORM}
        ) as resp:
            assert resp.status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    await assert_nothing_happened(web)
    assert web.api.calls == []


async def test_a_slash_command_that_mentions_the_word_payload_is_not_lost(web: SlackHarness) -> None:
    # slack-bolt reads any form containing "payload" as an interaction; the door hands bolt its own parse.
    reply = await web.command("/sora", "a payload of bricks --seconds 8")
    assert reply.status == 200
    await web.settle()
    [generation] = await web.core.generations.recent(web.scope)
    assert generation.prompt == "a payload of bricks"

"""Stills reach fal as URLs on its CDN, uploaded with fal-client once per still and account and reused until
shortly before they expire — across videos, restarts and processes (the emulator plays fal's storage, CDN and
queue; the real fal-client uploads to it)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import Soracast, build_app
from bot.backends.fal.queue import QueueClient, SubmitFailed, queue_http_client
from bot.backends.fal.uploads import LIFETIME, hosting_account
from bot.backends.offline.fal_platform import CLOCK_KEY
from bot.errors import APIAuthError
from bot.models import Actor, DeliveryTarget, Generation, GenerationOptions, GenerationStatus, Platform, Scope, utcnow
from tests.fixtures.core import RecordingNotifier, serving
from tests.fixtures.fal import FAL_KEY, FalEmulator, fal_settings

SCOPE = Scope(platform=Platform.CONSOLE, id="fal-uploads")
ALICE = Actor(id="alice", display_name="Alice")
TARGET = DeliveryTarget(channel_id="console")
WITHIN = 30.0  # a safety net for a hung test, not a timing assertion


async def register(core: Soracast, clip_maker: Any, handle: str, color: tuple[int, int, int] = (200, 60, 20)) -> None:
    clip = clip_maker(f"{handle}.mp4", seconds=3.0, color=color)
    await core.registry.register(SCOPE, ALICE, handle, clip, rights_confirmed=True)


async def generate(core: Soracast, prompt: str, model: str = "kling-o1") -> Generation:
    return await core.generations.generate(SCOPE, ALICE, prompt, GenerationOptions(model=model), TARGET)


def uploads(emulator: FalEmulator) -> list[Any]:
    return emulator.requests.for_route("cdn_upload")


def sent_urls(emulator: FalEmulator) -> list[str]:
    body = emulator.requests.for_route("submit")[-1].json
    return [u for e in body.get("elements", []) for u in [e["frontal_image_url"], *e["reference_image_urls"]]]


async def test_a_character_is_uploaded_once_and_its_urls_reused_by_every_later_video(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any, fal_notifier: RecordingNotifier
) -> None:
    await register(fal_core, clip_maker, "mascot")

    first = await generate(fal_core, "@mascot surfs")
    first_urls = sent_urls(fal_emulator)
    second = await generate(fal_core, "@mascot skis", model="kling-o3")

    assert len(uploads(fal_emulator)) == 3, "three stills, uploaded once"
    assert sent_urls(fal_emulator) == first_urls and len(set(first_urls)) == 3
    for upload in uploads(fal_emulator):
        assert upload.headers["Authorization"].startswith("Bearer "), "a storage token, never the fal key"
        assert json.loads(upload.headers["X-Fal-Object-Lifecycle"]) == {
            "expiration_duration_seconds": int(LIFETIME.total_seconds())
        }
    [token] = fal_emulator.requests.for_route("storage_token")
    assert token.headers["Authorization"] == f"Key {FAL_KEY}"
    routes = [r.route for r in fal_emulator.requests if r.route in ("cdn_upload", "submit")]
    assert routes == ["cdn_upload"] * 3 + ["submit", "submit"], "uploaded before the first submit only"
    for generation in (first, second):
        done = await fal_core.generations.wait_finished(generation.id, WITHIN)
        assert done.status is GenerationStatus.COMPLETED


async def test_uploads_are_remembered_across_a_restart_and_per_fal_account(
    tmp_path: Path, start_fal_emulator_factory: Any, clip_maker: Any
) -> None:
    emulator: FalEmulator = await start_fal_emulator_factory(api_key=None)  # any key: two accounts
    settings = fal_settings(tmp_path / "data", emulator)
    first = await build_app(settings)
    serving(first)
    try:
        await register(first, clip_maker, "mascot")
        await generate(first, "@mascot surfs")
    finally:
        await first.aclose()
    urls = sent_urls(emulator)

    again = await build_app(settings)
    serving(again)
    try:
        await generate(again, "@mascot dives")
        assert len(uploads(emulator)) == 3 and sent_urls(emulator) == urls, "the restart reused the uploads"
    finally:
        await again.aclose()

    other = await build_app(fal_settings(tmp_path / "data", emulator, fal_key="another-account:secret"))
    serving(other)
    try:
        await generate(other, "@mascot flies")
    finally:
        await other.aclose()
    assert len(uploads(emulator)) == 6 and set(sent_urls(emulator)).isdisjoint(urls), "another account uploads its own"
    assert hosting_account(FAL_KEY, emulator.origin) != hosting_account("another-account:secret", emulator.origin)
    assert FAL_KEY not in hosting_account(FAL_KEY, emulator.origin)


async def test_a_url_close_to_its_expiry_is_uploaded_again_and_the_new_one_remembered(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    await register(fal_core, clip_maker, "mascot")
    await generate(fal_core, "@mascot surfs")
    account = hosting_account(FAL_KEY, fal_emulator.origin)
    [character] = await fal_core.registry.list(SCOPE)
    digests = [still.sha256 for still in character.stills]
    kept = await fal_core.storage.hosted_references(account, digests)
    assert sorted(kept) == sorted(digests) and all(h.expires_at > utcnow() + timedelta(days=6) for h in kept.values())
    # Its end is near (a job may wait in fal's queue before the model reads the file): not used any more.
    soon = utcnow() + timedelta(hours=2)
    for hosted in kept.values():
        await fal_core.storage.save_hosted_reference(hosted.model_copy(update={"expires_at": soon}))

    await generate(fal_core, "@mascot dives")

    assert len(uploads(fal_emulator)) == 6
    renewed = await fal_core.storage.hosted_references(account, digests)
    assert {h.url for h in renewed.values()} == set(sent_urls(fal_emulator))
    assert not {h.url for h in renewed.values()} & {h.url for h in kept.values()}


async def test_an_expired_upload_is_gone_from_the_cdn_and_fal_cannot_download_it(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    await register(fal_core, clip_maker, "mascot")
    await generate(fal_core, "@mascot surfs")
    urls = sent_urls(fal_emulator)
    body = fal_emulator.requests.for_route("submit")[-1].json
    fal_emulator.app[CLOCK_KEY].offset = LIFETIME.total_seconds() + 1

    async with httpx.AsyncClient() as plain:
        assert (await plain.get(urls[0])).status_code == 404
    client = QueueClient(
        FAL_KEY, queue_http_client(FAL_KEY, timeout=10.0, queue_url=fal_emulator.origin), timeout=10.0
    )
    try:
        with pytest.raises(SubmitFailed) as refused:
            await client.submit("fal-ai/kling-video/o1/standard/reference-to-video", body)
    finally:
        await client.aclose()
    response = refused.value.response
    assert response is not None and response.status_code == 422
    assert response.json()["detail"][0]["type"] == "file_download_error"


async def test_an_upload_fal_refuses_stops_the_video_before_anything_is_submitted(
    tmp_path: Path, start_fal_emulator_factory: Any, clip_maker: Any
) -> None:
    emulator: FalEmulator = await start_fal_emulator_factory()
    core = await build_app(fal_settings(tmp_path / "data", emulator))
    serving(core)
    try:
        await register(core, clip_maker, "mascot")
        emulator.faults.push("cdn_upload", status=401, message="Invalid or expired storage token.", times=10)
        emulator.faults.push("storage_initiate", status=401, message="No user found for Key ID and Secret")
        with pytest.raises(APIAuthError) as refused:
            await generate(core, "@mascot surfs")
        assert await core.generations.recent(SCOPE) == []
    finally:
        await core.aclose()

    assert "FAL_KEY" in (refused.value.hint or "") and emulator.requests.for_route("submit") == []


async def test_a_data_uri_never_reaches_fal(fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any) -> None:
    await register(fal_core, clip_maker, "mascot")

    await generate(fal_core, "@mascot surfs", model="vidu-q3")

    [submit] = fal_emulator.requests.for_route("submit")
    assert all(u.startswith(f"{fal_emulator.origin}/media/") for u in submit.json["reference_image_urls"])

"""The fal backend through the real core: what reaches fal's queue (emulated on 127.0.0.1, driven by the real
fal-client) and what soracast stores and shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.app import Soracast, build_app
from bot.backends.base import CharacterInput, Mention, VideoRequest
from bot.backends.fal.backend import FalBackend
from bot.backends.fal.models import fal_models
from bot.backends.fal.prompt import defuse_citations, element_prompt
from bot.backends.fal.queue import FalJob
from bot.characters.handles import mentions_of
from bot.chat import present
from bot.config import Settings
from bot.errors import (
    APIAuthError,
    APIUnavailable,
    ConfigError,
    HumanLikenessRefused,
    InvalidInput,
    TooManyCharacters,
    UnknownHandle,
)
from bot.models import (
    Actor,
    Character,
    DeliveryTarget,
    Generation,
    GenerationOptions,
    GenerationStatus,
    Platform,
    Scope,
)
from tests.fixtures.core import RecordingNotifier, serving
from tests.fixtures.fal import FAL_KEY, FalEmulator, fal_settings

SCOPE = Scope(platform=Platform.CONSOLE, id="fal-tests")
ALICE = Actor(id="alice", display_name="Alice")
TARGET = DeliveryTarget(channel_id="console")
WITHIN = 30.0  # a safety net for a hung test, not a timing assertion
KLING_O1 = "fal-ai/kling-video/o1/standard/reference-to-video"
OLD_KLING_O1 = "fal-ai/kling-video/o1/reference-to-video"
COLORS = [
    (220, 30, 30),
    (30, 160, 40),
    (40, 60, 220),
    (200, 180, 20),
    (150, 40, 160),
    (20, 180, 180),
    (240, 130, 20),
    (90, 90, 90),
]

StartFal = Callable[..., Awaitable[FalEmulator]]


# --- helpers ------------------------------------------------------------------------------------------------


async def register(core: Soracast, clip_maker: Any, *handles: str, **clip: Any) -> list[Character]:
    made = []
    for index, handle in enumerate(handles):
        path = clip_maker(f"{handle}.mp4", seconds=3.0, color=COLORS[index % len(COLORS)], **clip)
        made.append(await core.registry.register(SCOPE, ALICE, handle, path, rights_confirmed=True))
    return made


async def stills(core: Soracast, character: Character) -> list[bytes]:
    """The character's stills as stored, best first."""
    files = await core.registry.files(character)
    return [path.read_bytes() for path in files.stills]


async def cdn_bytes(url: str) -> bytes:
    """What fal's (emulated) CDN serves at `url`, fetched as a model's runner would: without a key."""
    async with httpx.AsyncClient() as plain:
        answer = await plain.get(url)
    assert answer.status_code == 200, (url, answer.status_code)
    return answer.content


async def all_bytes(urls: list[str]) -> list[bytes]:
    return [await cdn_bytes(u) for u in urls]


def submits(emulator: FalEmulator) -> list[Any]:
    return emulator.requests.for_route("submit")


async def generate(core: Soracast, prompt: str, **options: str) -> Generation:
    return await core.generations.generate(SCOPE, ALICE, prompt, GenerationOptions(**options), TARGET)


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = WITHIN) -> None:
    """Poll `check` until it holds (the tracker writes to storage; there is no event to wait on)."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def still_file(path: Path, color: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 36), color).save(path, "JPEG")
    return path


def request_with(prompt: str, characters: list[CharacterInput], model: str = KLING_O1, **fields: Any) -> VideoRequest:
    used = {c.handle for c in characters}
    return VideoRequest(
        prompt=prompt,
        mentions=[m for m in mentions_of(prompt) if m.handle in used],
        characters=characters,
        model=model,
        seconds=fields.pop("seconds", 5),
        size=fields.pop("size", "1920x1080"),
        request_key="g-test",
        **fields,
    )


def character_input(tmp_path: Path, handle: str, count: int = 3) -> CharacterInput:
    files = [still_file(tmp_path / handle / f"{i}.jpg", COLORS[i % len(COLORS)]) for i in range(count)]
    return CharacterInput(handle=handle, name=handle.title(), character_id=f"c-{handle}", stills=files)


# --- the element rewrite ------------------------------------------------------------------------------------


def test_each_handle_becomes_one_element_numbered_by_first_mention() -> None:
    prompt = "@cat chases @mascot around the pool, then @cat naps"
    request = VideoRequest(
        prompt=prompt, mentions=mentions_of(prompt), model=KLING_O1, seconds=5, size="1920x1080", request_key="g"
    )

    rewritten = element_prompt(request, ["cat", "mascot"])

    assert rewritten == "@Element1 chases @Element2 around the pool, then @Element1 naps"


def test_text_that_only_looks_like_a_citation_keeps_its_words_but_loses_its_at() -> None:
    assert defuse_citations("a sign: team@Element1, @@Image2 and <@video3>") == (
        "a sign: teamElement1, @Image2 and <video3>"
    )
    # `@@Image2` keeps one `@` that no longer cites anything: look again at what remains.
    assert defuse_citations(defuse_citations("@@Image2")) == "Image2"


def test_a_citation_is_never_glued_to_the_text_after_a_handle() -> None:
    prompt = "@mascot"
    request = VideoRequest(
        prompt=prompt + "2024",
        mentions=[Mention(start=0, end=7, handle="mascot")],
        model=KLING_O1,
        seconds=5,
        size="1920x1080",
        request_key="g",
    )

    assert element_prompt(request, ["mascot"]) == "@Element1 2024"


async def test_kling_gets_one_element_per_character_cited_in_the_prompt_while_the_reply_keeps_the_users_words(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any, fal_notifier: RecordingNotifier
) -> None:
    mascot, cat = await register(fal_core, clip_maker, "mascot", "cat")
    typed = "@cat chases @mascot around the pool, then @cat naps"

    generation = await generate(fal_core, typed, model="kling-o1", seconds="3")

    [submit] = submits(fal_emulator)
    assert submit.path == f"/{KLING_O1}"
    assert submit.headers["Authorization"] == f"Key {FAL_KEY}"
    body = submit.json
    assert body["prompt"] == "@Element1 chases @Element2 around the pool, then @Element1 naps"
    assert (body["duration"], body["aspect_ratio"]) == ("3", "16:9")
    cat_stills, mascot_stills = await stills(fal_core, cat), await stills(fal_core, mascot)
    assert await all_bytes([e["frontal_image_url"] for e in body["elements"]]) == [cat_stills[0], mascot_stills[0]]
    assert await all_bytes(body["elements"][0]["reference_image_urls"]) == cat_stills[1:]
    assert await all_bytes(body["elements"][1]["reference_image_urls"]) == mascot_stills[1:]
    assert body["elements"][0]["frontal_image_url"].startswith(f"{fal_emulator.origin}/media/"), "a CDN URL"
    assert (generation.prompt, generation.api_prompt) == (typed, body["prompt"])
    assert generation.backend == "fal" and generation.model == KLING_O1

    done = await fal_core.generations.wait_finished(generation.id, WITHIN)
    assert done.status is GenerationStatus.COMPLETED and done.video_path is not None and done.video_path.exists()
    assert present.headline(done).endswith(typed) and "@Element" not in present.headline(done)


async def test_a_character_whose_handle_is_element1_takes_the_number_of_its_place(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    mascot, element1 = await register(fal_core, clip_maker, "mascot", "element1")

    await generate(fal_core, "@mascot waves at @Element1 and @element1 waves back", model="kling-o1")

    body = submits(fal_emulator)[-1].json
    assert body["prompt"] == "@Element1 waves at @Element2 and @Element2 waves back"
    fronts = await all_bytes([e["frontal_image_url"] for e in body["elements"]])
    assert fronts == [(await stills(fal_core, mascot))[0], (await stills(fal_core, element1))[0]]


async def test_text_that_looks_like_a_citation_reaches_kling_without_its_at(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    await register(fal_core, clip_maker, "mascot")

    generation = await generate(fal_core, "@mascot holds a sign that reads team@Element1", model="kling-o1")

    assert submits(fal_emulator)[-1].json["prompt"] == "@Element1 holds a sign that reads teamElement1"
    assert generation.prompt == "@mascot holds a sign that reads team@Element1"


async def test_a_bare_element1_with_no_such_character_is_refused_and_nothing_is_sent(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    await register(fal_core, clip_maker, "mascot")

    with pytest.raises(UnknownHandle):
        await generate(fal_core, "@mascot meets @Element1", model="kling-o1")

    assert submits(fal_emulator) == [] and await fal_core.generations.recent(SCOPE) == []


# --- image limits -------------------------------------------------------------------------------------------


async def test_seven_characters_in_one_kling_video_are_seven_inputs_however_many_stills_each_has(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    # Kling counts inputs (elements + images + start image ≤ 7), not stills: 7 elements of 3 stills each fit.
    handles = ["ann", "bob", "cy", "dee", "eve", "fay", "gus"]
    characters = await register(fal_core, clip_maker, *handles)

    generation = await generate(fal_core, " and ".join(f"@{h}" for h in handles) + " dance", model="kling-o1")

    body = submits(fal_emulator)[-1].json
    assert submits(fal_emulator)[-1].status == 200 and generation.api_video_id is not None
    assert [1 + len(e["reference_image_urls"]) for e in body["elements"]] == [3] * 7
    for element, character in zip(body["elements"], characters, strict=True):
        assert await cdn_bytes(element["frontal_image_url"]) == (await stills(fal_core, character))[0]
    assert body["prompt"].startswith("@Element1 and @Element2") and "@Element7 dance" in body["prompt"]


async def test_an_eighth_character_on_kling_is_refused_naming_the_seven_inputs_before_anything_is_sent(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    handles = ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal"]
    await register(fal_core, clip_maker, *handles)

    with pytest.raises(TooManyCharacters) as refused:
        await generate(fal_core, " ".join(f"@{h}" for h in handles), model="kling-o1")

    assert "at most 7" in refused.value.message
    assert fal_emulator.requests == [] and await fal_core.generations.recent(SCOPE) == []


async def test_the_backend_itself_counts_inputs_as_kling_does_and_names_the_limit(
    tmp_path: Path, fal_emulator: FalEmulator
) -> None:
    settings = fal_settings(tmp_path / "data", fal_emulator)
    backend = FalBackend.from_settings(settings)
    handles = [f"c{n}" for n in range(8)]
    eight = request_with(" ".join(f"@{h}" for h in handles), [character_input(tmp_path, h) for h in handles])
    lonely = request_with("@solo", [character_input(tmp_path, "solo", count=1)])
    try:
        with pytest.raises(TooManyCharacters) as refused:
            backend.compose_prompt(eight)
        with pytest.raises(TooManyCharacters):
            await backend.submit(eight, "…")
        with pytest.raises(InvalidInput) as one_still:
            await backend.submit(lonely, "@Element1")
    finally:
        await backend.aclose()

    assert "at most 7 inputs" in refused.value.message and "8 characters" in refused.value.message
    assert "front view and at least one more" in one_still.value.message
    assert fal_emulator.requests == [], "nothing uploaded, nothing sent"


async def test_reference_models_take_stills_and_keep_the_characters_names(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    mascot, cat = await register(fal_core, clip_maker, "mascot", "cat")

    await generate(fal_core, "@mascot and @cat surf", model="vidu-q3", seconds="4", size="1080x1920")
    await generate(fal_core, "@mascot and @cat surf", model="veo-3.1", size="9:16")

    vidu, veo = (r.json for r in submits(fal_emulator))
    assert vidu["prompt"] == veo["prompt"] == "Mascot and Cat surf"
    ms, cs = await stills(fal_core, mascot), await stills(fal_core, cat)
    # Shared fairly (best first), sent character by character.
    assert await all_bytes(vidu["reference_image_urls"]) == [ms[0], ms[1], cs[0], cs[1]]
    assert (vidu["duration"], vidu["aspect_ratio"], vidu["resolution"], vidu["audio"]) == (4, "9:16", "1080p", False)
    assert await all_bytes(veo["image_urls"]) == [ms[0], ms[1], cs[0]]
    assert veo["image_urls"] == vidu["reference_image_urls"][:2] + vidu["reference_image_urls"][2:3], "uploaded once"
    assert (veo["duration"], veo["aspect_ratio"], veo["resolution"]) == ("8s", "9:16", "720p")
    assert veo["generate_audio"] is False, "the price table is for silent videos"


async def test_a_reference_model_without_a_handle_is_refused_before_sending(
    fal_core: Soracast, fal_emulator: FalEmulator
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await generate(fal_core, "a lighthouse in a storm", model="vidu-q3")

    assert "no @handle" in refused.value.message and "Vidu" in refused.value.message
    assert submits(fal_emulator) == [] and await fal_core.generations.recent(SCOPE) == []


async def test_a_text_only_kling_video_sends_no_elements(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier
) -> None:
    generation = await generate(fal_core, "a lighthouse in a storm", model="kling-o3")

    body = submits(fal_emulator)[-1].json
    assert "elements" not in body and body["prompt"] == "a lighthouse in a storm"
    assert (await fal_core.generations.wait_finished(generation.id, WITHIN)).status is GenerationStatus.COMPLETED


# --- durations and sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "seconds", "named"),
    [("kling-o1", "12", "3–10 s"), ("kling-o3", "2", "3–15 s"), ("veo-3.1", "5", "8 s"), ("vidu-q3", "20", "1–16 s")],
)
async def test_a_duration_the_model_does_not_make_is_refused_before_sending_naming_what_it_makes(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any, model: str, seconds: str, named: str
) -> None:
    await register(fal_core, clip_maker, "mascot")

    with pytest.raises(InvalidInput) as refused:
        await generate(fal_core, "@mascot waves", model=model, seconds=seconds)

    assert named in refused.value.message and named in (refused.value.hint or "")
    assert submits(fal_emulator) == []


async def test_a_size_the_model_does_not_make_is_refused_naming_the_sizes_it_makes(
    fal_core: Soracast, fal_emulator: FalEmulator
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await generate(fal_core, "a lighthouse", model="kling-o1", size="1920x1080")

    assert "1280x720 (16:9, 720p)" in (refused.value.hint or "")
    assert submits(fal_emulator) == []


# --- queue, cancel, failures ---------------------------------------------------------------------------------


async def test_a_waiting_job_shows_its_place_in_fals_queue(
    tmp_path: Path, start_fal_emulator_factory: StartFal, clip_maker: Any
) -> None:
    # Simulated jobs of ten minutes spend their first minute waiting in the queue.
    emulator = await start_fal_emulator_factory(time_scale=1.0, job_seconds=600.0)
    core = await build_app(fal_settings(tmp_path / "data", emulator))
    notifier = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, notifier)
    try:
        *_, third = [await generate(core, f"lighthouse {n}", model="kling-o3") for n in range(3)]

        async def third_waits_third() -> bool:
            stored = await core.storage.get_generation(third.id)
            return stored is not None and stored.queue_position == 2

        await wait_for(third_waits_third)
        stored = await core.storage.get_generation(third.id)
        assert stored is not None and stored.status is GenerationStatus.QUEUED
        assert present.status_line(stored) == "Queued — 3rd in fal's queue"
        assert (third.id, 0) in notifier.progress_notes, "the place in the queue is reported"
        polled = emulator.requests.for_route("status")
        assert polled and all(r.path.startswith("/fal-ai/kling-video/requests/") for r in polled), "no sub-path"
    finally:
        await core.aclose()


async def test_deleting_a_waiting_video_calls_the_cancel_url_fal_gave(
    tmp_path: Path, start_fal_emulator_factory: StartFal
) -> None:
    emulator = await start_fal_emulator_factory(time_scale=1.0, job_seconds=600.0)
    core = await build_app(fal_settings(tmp_path / "data", emulator))
    serving(core)
    try:
        generation = await generate(core, "a lighthouse in a storm", model="kling-o1")
        assert generation.api_video_id is not None
        job = FalJob.decode(generation.api_video_id)

        deleted = await core.generations.delete(SCOPE, ALICE, generation.id)

        [cancel] = emulator.requests.for_route("cancel")
        assert cancel.method == "PUT" and f"{emulator.origin}{cancel.path}" == job.cancel_url
        assert cancel.path == f"/fal-ai/kling-video/requests/{job.request_id}/cancel" and cancel.status == 202
        assert deleted.status is GenerationStatus.DELETED
        video = await emulator.offline.retrieve_video(emulator.video_id(generation.api_video_id))
        assert video.status == "failed" and emulator.offline.failure_of(video.id) == (
            "cancelled",
            "The job was cancelled.",
        )
    finally:
        await core.aclose()


async def test_cancelling_a_finished_job_is_harmless(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier
) -> None:
    generation = await generate(fal_core, "a lighthouse", model="kling-o3")
    done = await fal_core.generations.wait_finished(generation.id, WITHIN)
    assert done.api_video_id is not None

    await fal_core.catalog.default_backend.cancel(done.api_video_id)

    assert [r.status for r in fal_emulator.requests.for_route("cancel")] == [400]


async def test_a_job_fal_completes_with_an_error_fails_with_fals_message(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier
) -> None:
    notifier = fal_notifier
    fal_emulator.offline.fail_next(code="runner_error", message="The GPU worker ran out of memory.")

    generation = await generate(fal_core, "a lighthouse in a storm", model="kling-o3")
    done = await fal_core.generations.wait_finished(generation.id, WITHIN)

    assert done.status is GenerationStatus.FAILED and [g.id for g in notifier.failures] == [done.id]
    assert done.error_message == "fal could not make this video: The GPU worker ran out of memory."
    assert done.error_code == "failed"
    assert "The GPU worker ran out of memory." in present.status_line(done)
    assert fal_emulator.requests.for_route("result") == [], "a failed job's result is not fetched"


async def test_a_content_policy_error_fails_as_blocked_by_content_rules(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier
) -> None:
    generation = await generate(fal_core, "a lighthouse [[moderation]]", model="kling-o3")
    done = await fal_core.generations.wait_finished(generation.id, WITHIN)

    assert done.status is GenerationStatus.FAILED and done.error_code == "moderation_blocked"
    assert "moderation" in (done.error_message or "") and "content rules" in present.failure_text(done)


async def test_a_still_showing_a_real_person_is_refused_at_submit_and_nothing_is_kept(
    fal_core: Soracast, fal_emulator: FalEmulator, clip_maker: Any
) -> None:
    await register(fal_core, clip_maker, "uncle", title="a real person")

    with pytest.raises(HumanLikenessRefused) as refused:
        await generate(fal_core, "@uncle waves", model="kling-o1")

    assert refused.value.status == 422 and refused.value.api_code == "content_policy_violation"
    assert "real person" in refused.value.message
    assert await fal_core.generations.recent(SCOPE) == []


async def test_a_rate_limited_submit_waits_in_line_for_as_long_as_fal_asked(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier
) -> None:
    fal_emulator.faults.push("submit", status=429, message="Too many concurrent requests", retry_after=0.3)

    waiting = await generate(fal_core, "a lighthouse", model="kling-o3")
    final = await fal_core.generations.wait_finished(waiting.id, within=WITHIN)

    assert waiting.status is GenerationStatus.WAITING and final.status is GenerationStatus.COMPLETED
    first, second = submits(fal_emulator)
    assert (first.status, second.status) == (429, 200)
    assert second.received_at - first.received_at >= 0.3, "fal's Retry-After was not honoured"
    assert [g.id for g in fal_notifier.deliveries] == [waiting.id]


@pytest.mark.parametrize(
    "fault",
    [
        # A gateway page without fal's request id: fal-client alone would repeat the submit at once.
        {"status": 503, "body": "<html><center>nginx</center></html>"},
        {"status": None, "drop_connection": True},
    ],
)
async def test_a_submit_whose_answer_is_lost_is_sent_again_once_and_posted_once(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier, fault: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # fal cannot be asked whether a request arrived: soracast sends it again (never twice at once, never blind
    # to it: the log says so) rather than leave the person without a video.
    fal_emulator.faults.push("submit", after_handling=True, **fault)

    with caplog.at_level(logging.WARNING, logger="bot.videos.jobs"):
        generation = await generate(fal_core, "a lighthouse", model="kling-o3")
        final = await fal_core.generations.wait_finished(generation.id, within=WITHIN)

    assert len(submits(fal_emulator)) == 2 and final.status is GenerationStatus.COMPLETED
    assert [g.id for g in fal_notifier.deliveries] == [generation.id] and fal_notifier.failures == []
    assert any("cannot say whether the unanswered create" in r.getMessage() for r in caplog.records)


async def test_a_submit_that_cannot_connect_says_it_was_not_sent(tmp_path: Path, fal_emulator: FalEmulator) -> None:
    closed = fal_emulator.origin.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens there
    backend = FalBackend.from_settings(fal_settings(tmp_path / "data", fal_emulator), queue_url=closed)
    request = request_with("a lighthouse", [], "kling-o3", size="1280x720")
    try:
        with pytest.raises(APIUnavailable) as unreachable:
            await backend.submit(request, "a lighthouse")
    finally:
        await backend.aclose()

    assert "not sent" in unreachable.value.message and unreachable.value.retryable


async def test_a_wrong_key_is_an_auth_error_that_names_fal_key(
    tmp_path: Path, start_fal_emulator_factory: StartFal
) -> None:
    emulator = await start_fal_emulator_factory(api_key="the-real-key")
    core = await build_app(fal_settings(tmp_path / "data", emulator))
    serving(core)
    try:
        with pytest.raises(APIAuthError) as refused:
            await generate(core, "a lighthouse", model="kling-o3")
    finally:
        await core.aclose()

    assert "No user found for Key ID and Secret" in refused.value.message and "FAL_KEY" in (refused.value.hint or "")


# --- restart ------------------------------------------------------------------------------------------------


async def test_a_tracked_job_resumes_after_a_restart_from_its_id_alone(
    tmp_path: Path, start_fal_emulator_factory: StartFal, clip_maker: Any
) -> None:
    emulator = await start_fal_emulator_factory(time_scale=1.0, job_seconds=600.0)
    settings = fal_settings(tmp_path / "data", emulator)
    first = await build_app(settings)
    serving(first)
    await register(first, clip_maker, "mascot")
    generation = await generate(first, "@mascot surfs", model="kling-o3")
    await first.aclose()
    assert generation.api_video_id is not None
    job = FalJob.decode(generation.api_video_id)
    emulator.offline.finish_now(emulator.video_id(generation.api_video_id))
    before = len(emulator.requests)

    second = await build_app(settings)
    notifier = RecordingNotifier()
    second.generations.register_notifier(Platform.CONSOLE, notifier)
    try:
        assert await second.generations.resume(Platform.CONSOLE) == 1
        done = await second.generations.wait_finished(generation.id, WITHIN)
    finally:
        await second.aclose()

    assert done.status is GenerationStatus.COMPLETED and [g.id for g in notifier.deliveries] == [done.id]
    assert done.video_path is not None and done.video_path.exists()
    after = emulator.requests[before:]
    assert [r.route for r in after if r.route in ("submit",)] == [], "the job was not submitted again"
    assert f"{emulator.origin}{after[0].path}" == job.status_url


# --- configuration and the catalog --------------------------------------------------------------------------


async def test_kling_o1_is_found_by_its_short_name_at_the_id_fal_documents_today(fal_core: Soracast) -> None:
    backend, caps = fal_core.catalog.find("kling-o1")

    assert backend.name == "fal" and caps.model == KLING_O1
    assert caps.durations == tuple(range(3, 11))
    assert (caps.aspect_ratios, caps.resolutions) == (("16:9", "9:16", "1:1"), ("720p",))
    assert fal_core.catalog.price_per_second(caps, "1280x720") is None, "fal's pages read give no price for it"
    assert "no price" in caps.price_source and "2026-12-04" in caps.price_source
    assert fal_core.catalog.default_model().model == KLING_O1, "the first of SORACAST_FAL_MODELS"
    assert (caps.max_characters, caps.max_inputs, caps.max_inputs_with_video) == (7, 7, 4)


async def test_the_default_model_and_prices_are_the_operators_to_set(tmp_path: Path, fal_emulator: FalEmulator) -> None:
    settings = fal_settings(
        tmp_path / "data", fal_emulator, default_model="vidu-q3", prices="kling-o3=0.09,vidu-q3:1080p=0.2"
    )
    core = await build_app(settings)
    try:
        assert core.catalog.default_model().model == "fal-ai/vidu/q3/reference-to-video/mix"
        _, o3 = core.catalog.find("kling-o3")
        _, vidu = core.catalog.find("vidu-q3")
        assert core.catalog.price_per_second(o3, "1280x720") == 0.09
        assert (core.catalog.price_per_second(vidu, "1920x1080"), core.catalog.price_per_second(vidu, "1280x720")) == (
            0.2,
            0.154,
        )
    finally:
        await core.aclose()


def test_an_unknown_fal_model_stops_start_up_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as refused:
        fal_models(["fal-ai/kling-video/o9/reference-to-video"])

    assert "SORACAST_FAL_MODELS" in refused.value.message and "kling-o1" in refused.value.message


def test_fal_is_chosen_by_its_key_and_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "SORACAST_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAL_KEY", "k")
    assert Settings(_env_file=None).active_backend.value == "fal"  # type: ignore[call-arg]
    monkeypatch.setenv("SORACAST_FAL_MODELS", "kling-o1, vidu-q3")
    assert Settings(_env_file=None).fal_models == ["kling-o1", "vidu-q3"]  # type: ignore[call-arg]


async def test_sora_backend_fal_without_a_key_stops_start_up(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, backend="fal", fal_key=None, data_dir=tmp_path)  # type: ignore[call-arg]

    with pytest.raises(ConfigError) as refused:
        await build_app(settings)

    assert "FAL_KEY" in refused.value.message


async def test_the_offline_renderer_plays_fals_rules_through_the_fal_client(tmp_path: Path, clip_maker: Any) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        offline=True,
        offline_as="fal",
        fal_models="kling-o3",
        offline_time_scale=1000.0,
        poll_interval=0.01,
        progress_interval=0,
        data_dir=tmp_path / "data",
    )
    core = await build_app(settings)
    core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    try:
        assert core.backend.name == "offline"
        assert core.catalog.default_model().model == "fal-ai/kling-video/o3/standard/reference-to-video"
        await register(core, clip_maker, "mascot", "cat")
        generation = await generate(core, "@mascot and @cat wave", seconds="3")
        assert generation.api_prompt == "@Element1 and @Element2 wave"
        with pytest.raises(InvalidInput):
            await generate(core, "@mascot waves", seconds="20")
        done = await core.generations.wait_finished(generation.id, WITHIN)
    finally:
        await core.aclose()

    assert done.status is GenerationStatus.COMPLETED and done.video_path is not None


# --- more refusals and passing faults ------------------------------------------------------------------------


async def test_a_prompt_longer_than_kling_takes_is_refused_before_sending(
    fal_core: Soracast, fal_emulator: FalEmulator
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await generate(fal_core, "a lighthouse " * 200, model="kling-o1")

    assert "at most 2,500 characters" in refused.value.message
    assert submits(fal_emulator) == [] and await fal_core.generations.recent(SCOPE) == []


async def test_a_result_fal_refuses_after_completing_fails_the_video_with_fals_words(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier
) -> None:
    fal_emulator.faults.push(
        "result", status=422, type="content_policy_violation", param="prompt", message="Output flagged as unsafe."
    )

    generation = await generate(fal_core, "a lighthouse", model="kling-o3")
    done = await fal_core.generations.wait_finished(generation.id, WITHIN)

    assert done.status is GenerationStatus.FAILED and done.error_code == "moderation_blocked"
    assert done.error_message == "fal could not make this video: prompt: Output flagged as unsafe."


async def test_a_passing_server_error_on_a_status_poll_is_waited_out(
    fal_core: Soracast, fal_emulator: FalEmulator, fal_notifier: RecordingNotifier
) -> None:
    fal_emulator.faults.push("status", status=500, message="Internal Server Error", times=2)

    generation = await generate(fal_core, "a lighthouse", model="kling-o3")
    done = await fal_core.generations.wait_finished(generation.id, WITHIN)

    assert done.status is GenerationStatus.COMPLETED
    assert [r.status for r in fal_emulator.requests.for_route("status")][:3] == [500, 500, 200]
    assert len(submits(fal_emulator)) == 1

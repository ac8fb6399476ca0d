"""Gemini Omni Flash as the backend: @handles become reference clips and stills, sent with the real google-genai
SDK to the Interactions API emulator; limits are explained before anything is sent."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import av
import numpy as np
import pytest

from bot.actions import VideoAction
from bot.app import Soracast
from bot.backends.offline.gemini_requests import ReferenceLimits
from bot.errors import (
    APIAuthError,
    GenerationNotReady,
    HumanLikenessRefused,
    InvalidInput,
    TooManyCharacters,
)
from bot.models import GenerationOptions, GenerationStatus, Platform, ReferenceKind
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, serving
from tests.fixtures.gemini import GEMINI_KEY, GeminiEmulator, gemini_settings, open_gemini_core

RED = (220, 30, 30)
BLUE = (30, 60, 220)
WITHIN = 60


@pytest.fixture
def recorder(gemini_core: Soracast) -> RecordingNotifier:
    return serving(gemini_core)


def _parts(request_json: dict) -> list[dict]:
    [step] = request_json["input"]
    assert step["type"] == "user_input"
    return step["content"]


def _video_facts(path: Path) -> tuple[str, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, stream.width, stream.height, float(container.duration or 0) / av.time_base


def _middle_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames[len(frames) // 2]


def _shows(frame: np.ndarray, colour: tuple[int, int, int]) -> bool:
    distance = np.abs(frame.astype(int) - np.array(colour)).sum(axis=2)
    return int((distance < 60).sum()) > 200


async def test_two_handles_become_reference_clips_and_stills_in_one_request(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier, clip_maker
) -> None:
    core = gemini_core
    mascot = await core.registry.register(
        CONSOLE_SCOPE, TESTER, "mascot", clip_maker(seconds=4.0, color=RED), name="Captain Mascot",
        rights_confirmed=True,
    )
    rex = await core.registry.register(
        CONSOLE_SCOPE, TESTER, "rex", clip_maker(seconds=4.0, color=BLUE), rights_confirmed=True
    )
    prompt = "@mascot surfing a giant wave while @rex cheers"

    generation = await core.generations.generate(
        CONSOLE_SCOPE, TESTER, prompt, GenerationOptions(seconds="4"), TARGET
    )
    final = await core.generations.wait_finished(generation.id, within=WITHIN)

    # The user's words are kept as typed; Gemini got the names and the reference tags.
    assert final.prompt == prompt and final.backend == "gemini" and final.model == "gemini-omni-1.2-flash"
    request = gemini_emulator.requests.last("create_interaction")
    assert request.headers["x-goog-api-key"] == GEMINI_KEY
    body = request.json
    assert body["background"] is True
    assert body["response_format"] == {
        "type": "video", "aspect_ratio": "16:9", "resolution": "720p", "duration": "4s", "delivery": "inline",
    }
    assert body["generation_config"]["video_config"]["task"] == "reference_to_video"
    parts = _parts(body)
    # Omni 1.2 takes six stills (Google's guide sends more than three): every still of both characters fits.
    assert [p["type"] for p in parts] == ["text", "video", "video", *["image"] * 6]
    text = parts[0]["text"]
    assert text.endswith("Captain Mascot surfing a giant wave while Rex cheers")
    assert "Captain Mascot is the character shown in <VIDEO_REF_0> <IMAGE_REF_0> <IMAGE_REF_1> <IMAGE_REF_2>." in text
    assert "Rex is the character shown in <VIDEO_REF_1> <IMAGE_REF_3> <IMAGE_REF_4> <IMAGE_REF_5>." in text
    # The parts are the stored references: each character's clip, then its stills, best first.
    stored = {c.id: {(b.reference.kind, b.reference.position): b.data for b in await core.storage.load_references(c.id)}
              for c in (mascot, rex)}
    sent = [base64.b64decode(p["data"]) for p in parts[1:]]
    assert sent == [
        stored[mascot.id][(ReferenceKind.CLIP, 0)],
        stored[rex.id][(ReferenceKind.CLIP, 0)],
        *(stored[mascot.id][(ReferenceKind.STILL, i)] for i in range(3)),
        *(stored[rex.id][(ReferenceKind.STILL, i)] for i in range(3)),
    ]
    # Delivered once, a real H.264 of the asked size and length that shows both characters.
    assert final.status is GenerationStatus.COMPLETED and [g.id for g in recorder.deliveries] == [generation.id]
    assert final.video_path is not None and final.thumbnail_path is not None and final.thumbnail_path.exists()
    codec, width, height, seconds = _video_facts(final.video_path)
    assert (codec, width, height) == ("h264", 1280, 720) and seconds == pytest.approx(4.0, abs=0.5)
    frame = _middle_frame(final.video_path)
    assert _shows(frame, RED) and _shows(frame, BLUE)


async def test_one_more_character_than_fits_is_refused_before_any_call(
    tmp_path: Path, start_gemini, clip_maker
) -> None:
    emulator = await start_gemini(limits=ReferenceLimits(max_images=2, max_videos=2))
    core = await open_gemini_core(gemini_settings(tmp_path / "data"), emulator, limits=ReferenceLimits(2, 2))
    core.generations.register_notifier(Platform.CONSOLE, RecordingNotifier())
    try:
        for handle in ("one", "two", "three"):
            await core.registry.register(CONSOLE_SCOPE, TESTER, handle, clip_maker(), rights_confirmed=True)
        with pytest.raises(TooManyCharacters) as caught:
            await core.generations.generate(CONSOLE_SCOPE, TESTER, "@one @two @three", GenerationOptions(), TARGET)
        assert "gemini-omni-1.2-flash can feature at most 2" in caught.value.user_text()
        assert emulator.requests.for_route("create_interaction") == []
        assert await core.generations.recent(CONSOLE_SCOPE) == []
        # Two fit: one clip and one still each.
        ok = await core.generations.generate(CONSOLE_SCOPE, TESTER, "@one meets @two", GenerationOptions(), TARGET)
        assert [p["type"] for p in _parts(emulator.requests.last("create_interaction").json)] == [
            "text", "video", "video", "image", "image",
        ]
        await core.generations.wait_finished(ok.id, within=WITHIN)
    finally:
        await core.aclose()


@pytest.mark.parametrize(
    "options, named",
    [
        (GenerationOptions(seconds="20"), "gemini-omni-1.2-flash makes videos of 3–15 s; '20' is not one of them"),
        (GenerationOptions(model="omni-1.1", seconds="12"), "gemini-omni-1.1-flash makes videos of 3–10 s"),
        (GenerationOptions(seconds="6.5"), "3–15 s"),
        (GenerationOptions(size="640x480"), "1280x720 (16:9, 720p)"),
        (GenerationOptions(size="4:3"), "720x1280 (9:16, 720p)"),
        (GenerationOptions(model="veo-3.1-generate-preview"), "gemini-omni-1.1-flash (omni-1.1)"),
    ],
)
async def test_options_the_model_does_not_make_are_explained_before_submitting(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, options: GenerationOptions, named: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await gemini_core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", options, TARGET)
    assert named in caught.value.user_text()
    assert gemini_emulator.requests.for_route("create_interaction") == []


async def test_the_longer_model_and_shorthand_sizes_reach_the_api_as_google_names_them(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier
) -> None:
    options = GenerationOptions(model="omni-1.2", seconds="15", size="9:16")
    generation = await gemini_core.generations.generate(CONSOLE_SCOPE, TESTER, "a tall cat", options, TARGET)
    assert (generation.model, generation.seconds, generation.size) == ("gemini-omni-1.2-flash", "15", "720x1280")
    body = gemini_emulator.requests.last("create_interaction").json
    assert body["model"] == "gemini-omni-1.2-flash" and body["input"] == "a tall cat"
    assert body["generation_config"]["video_config"]["task"] == "text_to_video"
    assert (body["response_format"]["duration"], body["response_format"]["aspect_ratio"]) == ("15s", "9:16")
    final = await gemini_core.generations.wait_finished(generation.id, within=WITHIN)
    assert final.video_path is not None and _video_facts(final.video_path)[1:3] == (720, 1280)


async def test_a_safety_block_ends_as_a_failure_with_googles_reason(
    gemini_core: Soracast, recorder: RecordingNotifier
) -> None:
    generation = await gemini_core.generations.generate(
        CONSOLE_SCOPE, TESTER, "something [[moderation]] would block", GenerationOptions(), TARGET
    )
    final = await gemini_core.generations.wait_finished(generation.id, within=WITHIN)

    assert final.status is GenerationStatus.FAILED and final.error_code == "moderation_blocked"
    assert "safety policy" in (final.error_message or "")
    assert [g.id for g in recorder.failures] == [generation.id] and recorder.deliveries == []


async def test_a_character_showing_a_real_person_is_refused_with_what_to_do(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, clip_maker
) -> None:
    # Gemini keeps no characters, so the refusal comes with the first video that sends the references.
    await gemini_core.registry.register(
        CONSOLE_SCOPE, TESTER, "uncle", clip_maker(title="a person on holiday"), rights_confirmed=True
    )
    with pytest.raises(HumanLikenessRefused) as caught:
        await gemini_core.generations.generate(CONSOLE_SCOPE, TESTER, "@uncle dancing", GenerationOptions(), TARGET)
    assert "real person" in caught.value.message
    assert "mascot" in (caught.value.hint or "")
    assert gemini_emulator.requests.last("create_interaction").status == 400
    assert await gemini_core.generations.recent(CONSOLE_SCOPE) == []


async def test_a_large_video_comes_by_link_and_is_streamed_to_disk(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier
) -> None:
    generation = await gemini_core.generations.generate(
        CONSOLE_SCOPE, TESTER, "a city at night", GenerationOptions(size="1080p", seconds="3"), TARGET
    )
    final = await gemini_core.generations.wait_finished(generation.id, within=WITHIN)

    assert gemini_emulator.requests.last("create_interaction").json["response_format"]["delivery"] == "uri"
    paths = [r.path for r in gemini_emulator.requests.for_route("get_file")]
    assert any(p.endswith(":download") for p in paths) and any(not p.endswith(":download") for p in paths)
    assert final.video_path is not None and _video_facts(final.video_path)[1:3] == (1920, 1080)
    assert not list(final.video_path.parent.glob("*.part"))


async def test_a_model_that_cannot_remix_offers_no_remix_and_says_so_when_asked(
    tmp_path: Path, gemini_emulator: GeminiEmulator
) -> None:
    backend = gemini_emulator.backend()
    backend._models = [m.model_copy(update={"can_remix": False}) for m in backend.models()]  # type: ignore[attr-defined]
    from bot.app import build_app

    core = await build_app(gemini_settings(tmp_path / "data"), backends={"gemini": backend})
    try:
        recorder = RecordingNotifier()
        core.generations.register_notifier(Platform.CONSOLE, recorder)
        generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, "a fox", GenerationOptions(), TARGET)
        done = await core.generations.wait_finished(generation.id, within=WITHIN)
        assert core.generations.offered_actions(done) == [VideoAction.EXTEND, VideoAction.CHARACTER, VideoAction.DELETE]
        with pytest.raises(GenerationNotReady) as caught:
            await core.generations.remix(CONSOLE_SCOPE, TESTER, generation.id, "at night", TARGET)
        assert "cannot remix" in caught.value.message
    finally:
        await core.aclose()


async def test_a_wrong_key_is_explained_to_the_operator(tmp_path: Path, gemini_emulator: GeminiEmulator) -> None:
    core = await open_gemini_core(gemini_settings(tmp_path / "data"), gemini_emulator, api_key="not-the-key")
    serving(core)
    try:
        with pytest.raises(APIAuthError) as caught:
            await core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
        assert "GEMINI_API_KEY" in (caught.value.hint or "")
        assert await core.generations.recent(CONSOLE_SCOPE) == []
    finally:
        await core.aclose()


async def test_rate_limits_and_server_errors_are_mapped_and_polling_rides_them_out(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier
) -> None:
    gemini_emulator.faults.push("create_interaction", status=429, retry_after=0.2, message="Resource exhausted.")
    waiting = await gemini_core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    # A 429 puts the request back in line, and the backend's pause is honoured before it is sent again.
    assert waiting.status is GenerationStatus.WAITING
    sent = await gemini_core.generations.wait_finished(waiting.id, within=WITHIN)
    creates = gemini_emulator.requests.for_route("create_interaction")
    assert [r.status for r in creates] == [429, 200] and sent.status is GenerationStatus.COMPLETED
    assert creates[1].received_at - creates[0].received_at >= 0.2

    gemini_emulator.faults.push("get_interaction", status=503, times=2)
    generation = await gemini_core.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    final = await gemini_core.generations.wait_finished(generation.id, within=WITHIN)
    polls = [r for r in gemini_emulator.requests.for_route("get_interaction") if r.path.endswith(final.api_video_id)]
    assert [r.status for r in polls][:2] == [503, 503] and final.status is GenerationStatus.COMPLETED
    assert [g.id for g in recorder.deliveries] == [sent.id, generation.id]


async def test_a_job_tracked_by_one_process_is_finished_by_the_next(
    tmp_path: Path, gemini_emulator: GeminiEmulator
) -> None:
    settings = gemini_settings(tmp_path / "data")
    first = await open_gemini_core(settings, gemini_emulator)
    generation = await first.generations.generate(CONSOLE_SCOPE, TESTER, "a cat", GenerationOptions(), TARGET)
    await first.aclose()
    second = await open_gemini_core(settings, gemini_emulator)
    try:
        recorder = RecordingNotifier()
        second.generations.register_notifier(Platform.CONSOLE, recorder)
        assert await second.generations.resume(Platform.CONSOLE) == 1
        final = await second.generations.wait_finished(generation.id, within=WITHIN)
        assert final.status is GenerationStatus.COMPLETED and [g.id for g in recorder.deliveries] == [generation.id]
        assert len(gemini_emulator.requests.for_route("create_interaction")) == 1
    finally:
        await second.aclose()
    await asyncio.sleep(0)

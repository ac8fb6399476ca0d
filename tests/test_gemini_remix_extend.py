"""Remix and extend on Gemini Omni as Google documents them, sent with the real google-genai SDK to an emulator
that refuses the shapes Google refuses: an edit or extension names the earlier interaction
(`previous_interaction_id`), an edit sends no duration or aspect ratio, an extension only the seconds it adds, and
the model's total length is checked before anything is stored or sent."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from bot.app import Soracast
from bot.backends.base import VideoRequest
from bot.backends.gemini.request_body import REGION_TEXT
from bot.backends.offline.gemini_interactions import EmulatorOptions
from bot.errors import APIRequestRejected, GenerationNotReady, InvalidInput
from bot.models import GenerationKind, GenerationOptions, GenerationStatus
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, TESTER, RecordingNotifier, serving
from tests.fixtures.gemini import GeminiEmulator

WITHIN = 60  # a safety net for a hung test, not a timing assertion


@pytest.fixture
def recorder(gemini_core: Soracast) -> RecordingNotifier:
    return serving(gemini_core)


def _seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.duration or 0) / av.time_base


async def _finished(core: Soracast, prompt: str, **options: str):  # type: ignore[no-untyped-def]
    generation = await core.generations.generate(CONSOLE_SCOPE, TESTER, prompt, GenerationOptions(**options), TARGET)
    final = await core.generations.wait_finished(generation.id, within=WITHIN)
    assert final.status is GenerationStatus.COMPLETED
    return final


async def test_an_extension_names_the_earlier_interaction_and_only_the_seconds_it_adds(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier
) -> None:
    first = await _finished(gemini_core, "a boat leaves the harbour", seconds="4")
    extension = await gemini_core.generations.extend(
        CONSOLE_SCOPE, TESTER, first.id, "it sails into a storm", TARGET, seconds="3"
    )
    body = gemini_emulator.requests.last("create_interaction").json
    assert body["previous_interaction_id"] == first.api_video_id
    assert body["generation_config"] == {"video_config": {"task": "extend"}}
    # No aspect ratio or resolution (the source's are kept), and the video itself does not travel again.
    assert body["response_format"] == {"type": "video", "duration": "3s", "delivery": "inline"}
    assert body["input"] == "it sails into a storm"
    final = await gemini_core.generations.wait_finished(extension.id, within=WITHIN)
    assert final.kind is GenerationKind.EXTEND and final.status is GenerationStatus.COMPLETED
    assert final.video_path is not None and _seconds(final.video_path) == pytest.approx(7.0, abs=0.6)


async def test_a_remix_is_an_edit_of_the_earlier_interaction_with_no_duration_or_frame(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier, clip_maker
) -> None:
    await gemini_core.registry.register(CONSOLE_SCOPE, TESTER, "mascot", clip_maker(seconds=3.0), rights_confirmed=True)
    first = await _finished(gemini_core, "a fox in the snow", seconds="5")
    remix = await gemini_core.generations.remix(CONSOLE_SCOPE, TESTER, first.id, "@mascot joins it at dawn", TARGET)
    body = gemini_emulator.requests.last("create_interaction").json
    assert body["previous_interaction_id"] == first.api_video_id
    assert body["generation_config"] == {"video_config": {"task": "edit"}}
    assert body["response_format"] == {"type": "video", "delivery": "inline"}
    # A character joining an edit is a reference like any other, tagged from the first video part on.
    content = body["input"][0]["content"]
    assert [p["type"] for p in content] == ["text", "video", "image", "image", "image"]
    assert "<VIDEO_REF_0>" in content[0]["text"]
    # The edit keeps its source's length, and is priced for it.
    assert remix.seconds == "5"
    final = await gemini_core.generations.wait_finished(remix.id, within=WITHIN)
    assert final.status is GenerationStatus.COMPLETED and final.video_path is not None
    assert _seconds(final.video_path) == pytest.approx(5.0, abs=0.6)


async def test_extensions_past_the_models_total_are_refused_before_anything_is_stored_or_sent(
    gemini_core: Soracast, gemini_emulator: GeminiEmulator, recorder: RecordingNotifier
) -> None:
    # Omni 1.2 extends a video to 30 s in all, 3–10 s at a time.
    first = await _finished(gemini_core, "a long train journey", seconds="15")
    with pytest.raises(InvalidInput) as caught:
        await gemini_core.generations.extend(CONSOLE_SCOPE, TESTER, first.id, "and on", TARGET, seconds="11")
    assert "3–10 s" in caught.value.user_text()
    second = await gemini_core.generations.extend(CONSOLE_SCOPE, TESTER, first.id, "tunnels", TARGET, seconds="10")
    second = await gemini_core.generations.wait_finished(second.id, within=WITHIN)
    assert second.status is GenerationStatus.COMPLETED
    creates = gemini_emulator.requests.count("create_interaction")
    stored = len(await gemini_core.generations.recent(CONSOLE_SCOPE))

    with pytest.raises(InvalidInput) as caught:
        await gemini_core.generations.extend(CONSOLE_SCOPE, TESTER, second.id, "mountains", TARGET, seconds="10")
    text = caught.value.user_text()
    assert "25 s long" in text and "30 s at most" in text and "35 s" in text and "3–5 s" in text
    assert gemini_emulator.requests.count("create_interaction") == creates
    assert len(await gemini_core.generations.recent(CONSOLE_SCOPE)) == stored

    third = await gemini_core.generations.extend(CONSOLE_SCOPE, TESTER, second.id, "the sea", TARGET, seconds="5")
    third = await gemini_core.generations.wait_finished(third.id, within=WITHIN)
    assert third.status is GenerationStatus.COMPLETED and third.video_path is not None
    assert _seconds(third.video_path) == pytest.approx(30.0, abs=0.6)
    with pytest.raises(GenerationNotReady) as full:
        await gemini_core.generations.extend(CONSOLE_SCOPE, TESTER, third.id, "and back", TARGET)
    assert "30 s long" in full.value.user_text() and "no room" in full.value.user_text()
    assert gemini_emulator.requests.count("create_interaction") == creates + 1


async def test_a_video_gemini_did_not_make_is_uploaded_and_a_regions_refusal_is_explained(
    tmp_path: Path, start_gemini, gemini_emulator: GeminiEmulator
) -> None:
    # A finished video the emulator made, as a file soracast holds (say, from before a change of key).
    backend = gemini_emulator.backend(spool_dir=tmp_path / "spool")
    try:
        request = VideoRequest(prompt="a lighthouse", model="gemini-omni-1.2-flash", seconds=4, size="640x360",
                               request_key="gsource001")
        job = await backend.submit(request, "a lighthouse")
        gemini_emulator.offline.finish_now("video_" + job.id.removeprefix("v1_"))
        assert (await backend.poll(job.id)).status.value == "completed"
        source = await backend.download(job.id, tmp_path / "source.mp4")
        edit = VideoRequest(kind=GenerationKind.REMIX, prompt="at night", model="gemini-omni-1.2-flash", seconds=4,
                            size="640x360", source_video=source, source_seconds=4, request_key="gedit0001")
        await backend.submit(edit, "at night")
        body = gemini_emulator.requests.last("create_interaction").json
        assert "previous_interaction_id" not in body
        assert [p["type"] for p in body["input"][0]["content"]] == ["text", "video"]
    finally:
        await backend.aclose()

    # Where Google does not offer uploaded-video editing (the EEA, Switzerland, the UK), the user is told so.
    elsewhere = await start_gemini(options=EmulatorOptions(uploaded_video_editing=False))
    backend = elsewhere.backend(spool_dir=tmp_path / "spool2")
    try:
        source_copy = tmp_path / "copy.mp4"
        source_copy.write_bytes(source.read_bytes())
        with pytest.raises(APIRequestRejected) as caught:
            await backend.submit(edit.model_copy(update={"source_video": source_copy}), "at night")
        assert caught.value.message == REGION_TEXT and "EEA, Switzerland or the UK" in caught.value.user_text()
    finally:
        await backend.aclose()

    # Omni 1.1 edits uploaded videos of up to 10 s: a longer one is refused before it is sent.
    backend = gemini_emulator.backend(spool_dir=tmp_path / "spool3")
    try:
        long_edit = edit.model_copy(update={"model": "gemini-omni-1.1-flash", "source_seconds": 12})
        before = gemini_emulator.requests.count("create_interaction")
        with pytest.raises(InvalidInput) as refused:
            await backend.submit(long_edit, "at night")
        assert "up to 10 s" in refused.value.user_text()
        assert gemini_emulator.requests.count("create_interaction") == before
    finally:
        await backend.aclose()

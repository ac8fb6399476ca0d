"""`soracast try`: scripted and piped console sessions through `run_console`, on the offline renderer."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from adapters.console.app import HISTORY_FILE, console_identity, run_console
from adapters.console.commands import DEMO_HANDLE, DEMO_NAME, DEMO_PROMPT, console_target
from adapters.console.completion import ConsoleCompleter
from adapters.console.sample import make_sample_clip
from bot.app import Soracast, build_app
from bot.config import Settings
from bot.errors import InvalidInput
from bot.models import CharacterSource, Generation, GenerationKind, GenerationOptions, GenerationStatus
from tests.fixtures.console import ConsoleRunner, run_script
from tests.fixtures.media import make_mp4
from tests.fixtures.videos import fast_offline_api

REPO_ROOT = Path(__file__).resolve().parents[1]


def probe(path: Path) -> tuple[str, int, int, float]:
    """Codec name, width, height and duration (s) of an MP4, read back with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration or 0) / av.time_base
        return stream.codec_context.name, stream.width, stream.height, duration


def progress_percentages(output: str, generation_id: str) -> list[int]:
    return [int(m) for m in re.findall(rf"^  {generation_id}: .*?(\d+)%$", output, flags=re.MULTILINE)]


async def stored_state(core: Soracast) -> tuple[list[str], list[Generation]]:
    scope, _ = console_identity()
    handles = [c.handle for c in await core.registry.list(scope)]
    return handles, await core.generations.recent(scope)


# --- the whole round trip ---------------------------------------------------------------------------------


async def test_a_scripted_session_registers_generates_remixes_cuts_and_removes(
    run_console_script: ConsoleRunner, console_core: Soracast, tmp_path: Path
) -> None:
    scope, _ = console_identity()
    clip = make_mp4(tmp_path / "mascot.mp4", seconds=6.0, width=640, height=360)

    first = await run_console_script(
        "# register, look, make a video",
        f'/character add @mascot {clip} --name "Captain Mascot" --start 1.5 --confirm',
        "/character list",
        "/sora @mascot surfing a wave at sunset --seconds 8 --size 1280x720",
    )

    assert first.code == 0, first.output
    assert "> # register" not in first.output
    assert f"> /character add @mascot {clip}" in first.output
    [mascot] = await console_core.registry.list(scope)
    assert (mascot.handle, mascot.name, mascot.source) == ("mascot", "Captain Mascot", CharacterSource.UPLOAD)
    assert re.search(r"@mascot\s+│\s+Captain Mascot", first.output)
    [video] = await console_core.generations.recent(scope)
    assert video.status is GenerationStatus.COMPLETED and video.delivered_at is not None
    assert (video.handles, video.seconds, video.size) == (["mascot"], "8", "1280x720")
    assert video.video_path is not None and video.thumbnail_path is not None
    assert f"Video {video.id} is ready: {video.video_path.resolve()}" in first.output
    assert f"thumbnail: {video.thumbnail_path.resolve()}" in first.output
    assert video.thumbnail_path.stat().st_size > 0
    codec, width, height, duration = probe(video.video_path)
    assert (codec, width, height) == ("h264", 1280, 720)
    assert duration == pytest.approx(8.0, abs=0.5)

    second = await run_console_script(
        f"/remix {video.id} the same wave at night",
        f'/character from {video.id} @surfer --start 2 --name "Surf Hero" --confirm',
        f"/extend {video.id} the wave rolls on to the beach --seconds 4",
        "/videos",
    )

    assert second.code == 0, second.output
    remix = next(g for g in await console_core.generations.recent(scope) if g.kind is GenerationKind.REMIX)
    assert remix.parent_id == video.id and remix.status is GenerationStatus.COMPLETED
    assert remix.video_path is not None and f"Video {remix.id} is ready" in second.output
    codec, width, height, duration = probe(remix.video_path)
    assert (codec, width, height) == ("h264", 1280, 720)
    assert duration == pytest.approx(8.0, abs=0.5)
    surfer = await console_core.registry.get(scope, "surfer")
    assert (surfer.name, surfer.source, surfer.source_ref) == ("Surf Hero", CharacterSource.GENERATION, video.id)
    extension = next(g for g in await console_core.generations.recent(scope) if g.kind is GenerationKind.EXTEND)
    assert extension.parent_id == video.id and extension.status is GenerationStatus.COMPLETED
    assert extension.video_path is not None and f"Video {extension.id} is ready" in second.output
    codec, width, height, duration = probe(extension.video_path)
    assert (codec, width, height) == ("h264", 1280, 720)
    assert duration == pytest.approx(12.0, abs=0.5)  # the original 8 s and 4 more
    listing = second.output.split("> /videos", 1)[1]
    assert all(g in listing for g in (video.id, remix.id, extension.id))

    third = await run_console_script("/character remove @mascot", "/character list")

    assert third.code == 0, third.output
    assert "Removed @mascot." in third.output
    assert [c.handle for c in await console_core.registry.list(scope)] == ["surfer"]


async def test_scripted_progress_is_printed_as_lines_at_most_every_ten_percent(
    console_settings: Settings, tmp_path: Path
) -> None:
    # Slow enough that the core reports progress many times, each change as it happens (interval 0).
    videos = fast_offline_api(tmp_path / "slow-videos", time_scale=4.0, job_seconds=4.0, poll_after_ms=5)
    core = await build_app(console_settings, videos=videos)
    try:
        run = await run_script(console_settings, core, tmp_path / "script.txt", "/sora a lighthouse in a storm")
        [video] = await core.generations.recent(console_identity()[0])
    finally:
        await core.aclose()

    assert run.code == 0, run.output
    seen = progress_percentages(run.output, video.id)
    assert len(seen) >= 3, run.output
    assert seen == sorted(seen)
    # One line per 10 % band at most, however often the core reports.
    assert len({p // 10 for p in seen}) == len(seen)
    assert "\x1b[" not in run.output


async def test_a_video_the_api_fails_is_reported_and_fails_the_script(
    run_console_script: ConsoleRunner, console_core: Soracast
) -> None:
    console_core.backend.api.fail_next(code="moderation_blocked", message="The prompt was blocked.")  # type: ignore[attr-defined]

    run = await run_console_script("/sora a forbidden thing", "/character list")

    assert run.code == 1
    [video] = (await stored_state(console_core))[1]
    assert video.status is GenerationStatus.FAILED and video.delivered_at is not None
    [error] = [line for line in run.lines if line.startswith("Error: ")]
    assert error.startswith(f"Error: Video {video.id} failed. The prompt was blocked.")
    assert "Rephrase the prompt" in error
    # The script went on after the failure.
    assert "No characters yet" in run.output


async def test_rename_and_info_use_the_new_handle(
    run_console_script: ConsoleRunner, console_core: Soracast, tmp_path: Path
) -> None:
    clip = make_mp4(tmp_path / "cat.mp4", seconds=3.0, width=640, height=360)

    run = await run_console_script(
        f"/character add @cat {clip} --confirm", "/character rename @cat @team_cat", "/character info @team_cat"
    )

    assert run.code == 0, run.output
    assert "@cat is now @team_cat." in run.output
    assert "cat.mp4" in run.output.split("> /character info @team_cat", 1)[1]
    assert (await stored_state(console_core))[0] == ["team_cat"]


async def test_a_video_left_unfinished_last_time_is_reported_when_the_console_starts_again(
    console_settings: Settings, tmp_path: Path
) -> None:
    scope, actor = console_identity()
    root = tmp_path / "offline-videos"
    earlier = await build_app(console_settings, videos=fast_offline_api(root))
    pending = await earlier.generations.generate(
        scope, actor, "a cat on a train", GenerationOptions(), console_target()
    )
    await earlier.aclose()  # quit before the video was delivered

    core = await build_app(console_settings, videos=fast_offline_api(root))
    buffer = io.StringIO()
    try:
        script = tmp_path / "script.txt"
        script.write_text("/help\n")
        code = await run_console(console_settings, script=script, core=core, console=Console(file=buffer, width=200))
        final = await core.generations.wait_finished(pending.id, within=30)
    finally:
        await core.aclose()

    assert code == 0
    assert final.status is GenerationStatus.COMPLETED and final.delivered_at is not None
    assert "Picking up 1 unfinished video(s)" in buffer.getvalue()
    assert f"Video {pending.id} is ready: {final.video_path.resolve()}" in buffer.getvalue()


# --- bad input: a clear error, and nothing stored -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make_line", "expected"),
    [
        pytest.param(
            lambda d: f"/character add @mascot {d / 'missing.mp4'} --confirm", "There is no file at", id="missing-file"
        ),
        pytest.param(
            lambda d: f"/character add @mascot {d / 'notes.mp4'} --confirm",
            "not a video soracast can read",
            id="text-renamed-mp4",
        ),
        pytest.param(
            lambda d: f"/character add @mascot {d / 'notes.txt'} --confirm", "A .txt file is not a video", id="txt-file"
        ),
        pytest.param(
            lambda d: f"/character add @mascot {d / 'empty.mp4'} --confirm", "That file is empty", id="empty-file"
        ),
        pytest.param(
            lambda d: f"/character add @Not-OK {d / 'good.mp4'} --confirm", "not a valid handle", id="bad-handle"
        ),
        pytest.param(
            lambda d: f"/character add @mascot {d / 'good.mp4'} --start x --confirm", "not a start time", id="bad-start"
        ),
        pytest.param(lambda d: "/character add @mascot", "Usage: /character add", id="no-clip"),
        pytest.param(lambda d: "/sora @mascto surfing", "There is no character @mascto", id="unknown-handle"),
        pytest.param(
            lambda d: "/sora a cat --seconds 7", "makes videos of 4, 8 or 12 s; '7' is not one", id="bad-seconds"
        ),
        pytest.param(lambda d: "/sora a cat --colour red", "Unknown option --colour", id="bad-option"),
        pytest.param(lambda d: "/remix gnothere1 at night", "There is no video 'gnothere1'", id="unknown-video"),
        pytest.param(
            lambda d: "/character from gnothere1 @hero --confirm", "There is no video", id="from-unknown-video"
        ),
        pytest.param(
            lambda d: f"/character add @mascot {d / 'good.mp4'}", "needs your confirmation", id="add-without-confirm"
        ),
        pytest.param(lambda d: "/character remove @ghost", "There is no character @ghost", id="remove-unknown"),
        pytest.param(lambda d: "/sorra a cat", "Did you mean /sora?", id="unknown-command"),
        pytest.param(lambda d: "/character ad @x y.mp4", "Did you mean /character add?", id="unknown-subcommand"),
    ],
)
async def test_bad_input_prints_a_clear_error_and_stores_nothing(
    run_console_script: ConsoleRunner, console_core: Soracast, tmp_path: Path, make_line, expected: str
) -> None:
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 50)
    (tmp_path / "notes.txt").write_text("not a video either\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    make_mp4(tmp_path / "good.mp4", seconds=3.0, width=640, height=360)

    run = await run_console_script(make_line(tmp_path))

    assert run.code == 1, run.output
    [error] = [line for line in run.lines if line.startswith("Error: ")]
    assert expected in error
    assert await stored_state(console_core) == ([], [])


async def test_an_unknown_handle_suggests_the_registered_one_and_submits_nothing(
    run_console_script: ConsoleRunner, console_core: Soracast, tmp_path: Path
) -> None:
    clip = make_mp4(tmp_path / "mascot.mp4", seconds=3.0, width=640, height=360)

    run = await run_console_script(f"/character add @mascot {clip} --confirm", "/sora @mascto surfing at sunset")

    assert run.code == 1
    assert "There is no character @mascto in this workspace. Did you mean @mascot?" in run.output
    assert await stored_state(console_core) == (["mascot"], [])


async def test_a_taken_handle_keeps_the_first_character(
    run_console_script: ConsoleRunner, console_core: Soracast, tmp_path: Path
) -> None:
    clip = make_mp4(tmp_path / "mascot.mp4", seconds=3.0, width=640, height=360)

    run = await run_console_script(
        f"/character add @mascot {clip} --confirm", f'/character add @mascot {clip} --name "Other" --confirm'
    )

    assert run.code == 1
    assert "@mascot is already registered" in run.output
    [mascot] = await console_core.registry.list(console_identity()[0])
    assert mascot.name == "Mascot"


# --- /demo ----------------------------------------------------------------------------------------------------


async def test_demo_makes_a_clip_registers_mascot_and_renders_a_video(
    run_console_script: ConsoleRunner, console_core: Soracast
) -> None:
    run = await run_console_script("/demo")

    assert run.code == 0, run.output
    steps = [line for line in run.lines if re.match(r"\[\d/3\]", line)]
    assert [s[:5] for s in steps] == ["[1/3]", "[2/3]", "[3/3]"]
    [mascot] = await console_core.registry.list(console_identity()[0])
    assert (mascot.handle, mascot.name) == (DEMO_HANDLE, DEMO_NAME)
    [video] = (await stored_state(console_core))[1]
    assert video.prompt == DEMO_PROMPT and video.status is GenerationStatus.COMPLETED
    assert video.video_path is not None and probe(video.video_path)[0] == "h264"
    assert f"is ready: {video.video_path.resolve()}" in run.output


async def test_demo_again_reuses_the_registered_mascot(
    run_console_script: ConsoleRunner, console_core: Soracast
) -> None:
    await run_console_script("/demo")

    again = await run_console_script("/demo")

    assert again.code == 0, again.output
    assert "reusing it" in again.output
    handles, videos = await stored_state(console_core)
    assert handles == [DEMO_HANDLE] and len(videos) == 2


def test_the_sample_clip_is_a_small_animated_h264_video(tmp_path: Path) -> None:
    clip = make_sample_clip(tmp_path / "sample.mp4", seconds=2.0)

    codec, width, height, duration = probe(clip)
    assert (codec, width, height) == ("h264", 640, 360)
    assert duration == pytest.approx(2.0, abs=0.1)
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 48
    # It moves: the mascot is somewhere else half a second later.
    assert np.abs(frames[0].astype(int) - frames[12].astype(int)).mean() > 1.0


# --- how commands arrive -----------------------------------------------------------------------------------


async def test_piped_stdin_runs_each_line_and_skips_comments(
    console_settings: Settings, console_core: Soracast, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("# a comment\n\n/character list\n/help\n/quit\n/sorra\n"))
    buffer = io.StringIO()

    code = await run_console(console_settings, core=console_core, console=Console(file=buffer, width=200))

    output = buffer.getvalue()
    assert code == 0, output
    echoed = [line for line in output.splitlines() if line.startswith("> ")]
    assert echoed == ["> /character list", "> /help", "> /quit"]
    assert "No characters yet" in output and "/character add @handle <clip.mp4>" in output
    assert "offline renderer" in output and "/demo" in output


async def test_a_missing_script_is_refused_before_anything_runs(
    console_settings: Settings, console_core: Soracast, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="no script"):
        await run_console(console_settings, script=tmp_path / "nope.txt", core=console_core)


async def test_the_interactive_prompt_keeps_history_and_survives_errors(
    console_settings: Settings, console_core: Soracast
) -> None:
    buffer = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("/character list\r/sorra\r/quit\r")
        with create_app_session(input=pipe, output=DummyOutput()):
            code = await run_console(
                console_settings, interactive=True, core=console_core, console=Console(file=buffer, width=200)
            )

    output = buffer.getvalue()
    assert code == 0
    assert "No characters yet" in output and "Did you mean /sora?" in output
    history = (console_settings.data_dir / HISTORY_FILE).read_text()
    assert "+/character list" in history and "+/sorra" in history


async def test_tab_completes_commands_subcommands_and_registered_handles(
    run_console_script: ConsoleRunner, console_core: Soracast, tmp_path: Path
) -> None:
    clip = make_mp4(tmp_path / "mascot.mp4", seconds=3.0, width=640, height=360)
    await run_console_script(f'/character add @mascot {clip} --name "Captain Mascot" --confirm')
    completer = ConsoleCompleter(console_core.registry, console_identity()[0])

    async def complete(text: str) -> list[str]:
        found = completer.get_completions_async(Document(text), CompleteEvent(completion_requested=True))
        return [c.text async for c in found]

    assert await complete("/so") == ["/sora"]
    assert await complete("/character re") == ["remove", "rename", "requests"]
    assert await complete("/sora @ma") == ["@mascot"]
    assert await complete("/sora @cap") == ["@mascot"]  # by its name, Captain Mascot
    assert await complete("/sora @zz") == []
    # The synchronous path serves the characters the last lookup read.
    assert [c.text for c in completer.get_completions(Document("/sora @m"), CompleteEvent())] == ["@mascot"]


def test_soracast_try_reads_piped_commands_in_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SORACAST_", "OPENAI_"))}
    env.update(SORACAST_DATA_DIR=str(tmp_path / "data"), SORACAST_OFFLINE="true", PYTHONPATH=str(REPO_ROOT))

    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "try"],
        input="/character list\n/sorra\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )

    assert done.returncode == 1, done.stderr
    assert "> /character list" in done.stdout and "No characters yet" in done.stdout
    assert "Did you mean /sora?" in done.stdout
    assert "\x1b[" not in done.stdout

"""A character belongs to someone, in the terminal: the same words as in chat (`/character share | unshare |
ask | requests | approve | decline | videos | takedown | instructions | notify`), `/as` to act as someone else,
and private messages printed for whoever they are for — scripted sessions on the real core."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from adapters.console.app import console_identity, run_console
from bot.app import Soracast, build_app
from bot.config import Settings
from bot.models import AccessRequestStatus, GenerationStatus, Sharing
from tests.fixtures.console import ConsoleRun, ConsoleRunner, fast_console_settings, run_script
from tests.fixtures.media import make_mp4
from tests.fixtures.videos import fast_offline_api

SCOPE = console_identity()[0]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_mp4(tmp_path / "mascot.mp4", seconds=3.0, width=640, height=360)


def kept_to_alice(clip: Path) -> tuple[str, ...]:
    """Alice registers @mascot and keeps it to herself."""
    return ("/as alice", f"/character add @mascot {clip} --confirm", "/character share @mascot only-me")


async def test_someone_else_is_refused_naming_the_owner_and_the_words_to_ask(
    run_console_script: ConsoleRunner, console_core: Soracast, clip: Path
) -> None:
    run = await run_console_script(*kept_to_alice(clip), "/as bob", "/sora @mascot surfing")

    assert run.code == 1
    assert "@mascot may now be used by only @alice (and admins)." in run.output
    assert "@mascot belongs to @alice, who has not shared it with you." in run.output
    assert "/character ask @mascot" in run.output
    assert await console_core.generations.recent(SCOPE) == [], "nothing stored for a refused request"


async def test_remix_and_cuts_of_a_video_with_someone_elses_character_are_refused(
    run_console_script: ConsoleRunner, console_core: Soracast, clip: Path
) -> None:
    made = await run_console_script(*kept_to_alice(clip), "/sora @mascot surfing")
    [video] = await console_core.generations.recent(SCOPE)
    assert made.code == 0 and video.status is GenerationStatus.COMPLETED, made.output

    run = await run_console_script(
        "/as bob", f"/remix {video.id} at night", f"/character from {video.id} @copy --confirm"
    )
    assert run.output.count("@mascot belongs to @alice") == 2
    assert len(await console_core.generations.recent(SCOPE)) == 1
    assert [c.handle for c in await console_core.registry.list(SCOPE)] == ["mascot"]


async def test_sharing_with_people_and_taking_them_off_shows_in_info(
    run_console_script: ConsoleRunner, console_core: Soracast, clip: Path
) -> None:
    run = await run_console_script(
        *kept_to_alice(clip),
        "/character share @mascot @bob @carol",
        "/character unshare @mascot @carol",
        "/character info @mascot",
        "/as bob",
        "/sora @mascot waving",
        "/character share @mascot everyone",
    )
    assert "@mascot may now be used by @alice, admins and @bob and @carol." in run.output
    assert "@mascot may now be used by @alice, admins and @bob." in run.output
    assert re.search(r"who may use it\s+@alice, admins and @bob", run.output)
    assert re.search(r"right to use its subject\s+confirmed by @alice on \d{4}-\d\d-\d\d", run.output)
    assert "Only the owner of @mascot (@alice) or an admin can change who may use it." in run.output
    [video] = await console_core.generations.recent(SCOPE)
    assert video.requester_id == "bob" and video.status is GenerationStatus.COMPLETED
    mascot = await console_core.registry.get(SCOPE, "mascot")
    assert (mascot.sharing, mascot.approved) == (Sharing.APPROVED, ["bob"])


async def test_asking_prints_the_owners_message_and_approving_after_a_restart_lets_the_person_in(
    tmp_path: Path, clip: Path
) -> None:
    settings = fast_console_settings(tmp_path / "data")
    videos = tmp_path / "offline-videos"
    first = await build_app(settings, videos=fast_offline_api(videos))
    try:
        asked = await run_script(
            settings, first, tmp_path / "one.txt", *kept_to_alice(clip), "/as bob", "/character ask @mascot",
            "/character ask @mascot",
        )
    finally:
        await first.aclose()
    assert "Private message for @alice:" in asked.output
    assert "@bob asks to use @mascot (Mascot) in their videos." in asked.output
    request_id = re.search(r"Approve: /character approve (r[a-z0-9]+)", asked.output).group(1)  # type: ignore[union-attr]
    assert f"Decline: /character decline {request_id}" in asked.output
    assert "Asked @alice to let you use @mascot." in asked.output
    assert asked.output.count("Private message for @alice:") == 1, "asking again does not message her again"
    assert "they have not decided yet" in asked.output

    second = await build_app(settings, videos=fast_offline_api(videos))  # a new process: nothing in memory
    try:
        decided = await run_script(
            settings, second, tmp_path / "two.txt",
            "/as carol", f"/character approve {request_id}",
            "/as alice", "/character requests", f"/character approve {request_id}", f"/character decline {request_id}",
            "/as bob", "/sora @mascot surfing at last",
        )
        request = await second.storage.get_access_request(request_id)
        [video] = await second.generations.recent(SCOPE)
    finally:
        await second.aclose()
    assert "Only @alice, who owns @mascot, or an admin can decide this request." in decided.output
    assert f"`{request_id}` · @bob asks to use @mascot" in decided.output
    assert "Approved by @alice: @bob may now use @mascot." in decided.output
    assert "Private message for @bob:" in decided.output and "@alice approved your request" in decided.output
    assert "This request was already approved by @alice" in decided.output
    assert request is not None and request.status is AccessRequestStatus.APPROVED
    assert video.requester_id == "bob" and video.status is GenerationStatus.COMPLETED


async def test_instructions_are_checked_shown_and_sent_without_the_handle(
    run_console_script: ConsoleRunner, console_core: Soracast, clip: Path
) -> None:
    run = await run_console_script(
        "/as alice",
        f"/character add @mascot {clip} --confirm",
        f'/character instructions @mascot "{"x" * 501}"',
        "/character instructions @mascot wave at @here",
        '/character instructions @mascot "@mascot always wears the red scarf; never speaks"',
        "/character info @mascot",
        "/as bob",
        "/character instructions @mascot clear",
        "/sora @mascot surfing",
    )
    assert "The instructions are 501 characters long; the limit is 500." in run.output
    assert "@here" in run.output and "The instructions" in run.output
    assert "Every video with @mascot now follows: @mascot always wears the red scarf; never speaks" in run.output
    assert re.search(r"instructions\s+@mascot always wears the red scarf; never speaks", run.output)
    assert "Only the owner of @mascot (@alice) or an admin can change its instructions." in run.output
    [video] = await console_core.generations.recent(SCOPE)
    assert video.api_prompt.endswith(
        "Standing instructions for Mascot: Mascot always wears the red scarf; never speaks."
    )
    assert "@" not in video.api_prompt


async def test_the_owner_lists_and_takes_down_videos_and_is_told_about_others(
    tmp_path: Path,
    console_settings: Settings,
    console_core: Soracast,
    run_console_script: ConsoleRunner,
    clip: Path,
) -> None:
    buffer = io.StringIO()
    script = tmp_path / "session.txt"
    script.write_text(
        "\n".join(
            [
                "/as alice",
                f"/character add @mascot {clip} --confirm",
                "/as bob",
                "/sora @mascot dancing",
                "/character videos @mascot",
            ]
        )
        + "\n"
    )
    console = Console(file=buffer, width=200, color_system=None)
    await run_console(console_settings, script=script, core=console_core, console=console)
    await console_core.generations.notices.flush()
    [video] = await console_core.generations.recent(SCOPE)
    output = buffer.getvalue()
    assert "Only the owner of @mascot (@alice) or an admin can list its videos." in output
    assert "Private message for @alice:" in output and "A video was made with your character" in output
    where = video.video_path.resolve()  # type: ignore[union-attr]
    assert f"@bob used @mascot · `{video.id}` · @mascot dancing · see the post: {where}" in output
    assert "Stop these notes: `/character notify @mascot off`." in output

    run = await run_console_script(
        "/as carol",
        f"/character takedown {video.id}",
        "/as alice",
        "/character videos @mascot",
        f"/character takedown {video.id}",
        "/character videos @mascot",
        "/character notify @mascot off",
    )
    assert "Only the person who asked for this video, the owner of a character in it, or an admin" in run.output
    assert f"`{video.id}` · @bob · " in run.output and "1 video feature @mascot" in run.output
    assert f"Deleted video `{video.id}`" in run.output
    assert "No video features @mascot yet." in run.output
    assert "You will no longer be told about other people's videos with @mascot." in run.output
    deleted = await console_core.generations.get(SCOPE, video.id)
    assert deleted.status is GenerationStatus.DELETED and not video.video_path.exists()  # type: ignore[union-attr]


async def test_registering_without_the_rights_confirmation_stores_nothing(
    run_console_script: ConsoleRunner, console_core: Soracast, clip: Path
) -> None:
    run: ConsoleRun = await run_console_script(f"/character add @mascot {clip}")
    assert run.code == 1
    assert "needs your confirmation that you have the right to use its subject" in run.output
    assert "add `--confirm` to the command" in run.output
    assert await console_core.registry.list(SCOPE) == []

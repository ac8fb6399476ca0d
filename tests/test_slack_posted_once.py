"""Posted exactly once on Slack: whatever answer is lost (or whichever process dies) during the three steps of an
upload, a delivery tried again asks Slack (`files.info`) before it uploads, so the video is in the channel once.

A lost answer and a restart leave the same trace: the notifier keeps nothing in memory, and what it stored
before each risky step (the file id, the moment of completing) is what the next attempt reads. The real
SIGKILL-and-restart of `soracast web` is `test_kill_and_restart.py` (and `benchmarks/soak.py`).
"""

from __future__ import annotations

import pytest

from adapters.slack import notifier as slack_notifier
from adapters.slack.notifier import EXTRA_COMPLETING, EXTRA_FILE, video_filename
from bot.models import Generation, GenerationStatus
from tests.fakes.slack_api import Call
from tests.fixtures.slack import CHANNEL, SlackHarness

WITHIN = 60.0  # a safety net for a hung test, not a timing assertion


async def make_video(slack: SlackHarness, prompt: str = "a paper boat on a pond") -> Generation:
    assert (await slack.command("/sora", prompt)).status == 200
    await slack.settle()
    [generation] = await slack.core.generations.recent(slack.scope, limit=1)
    return await slack.core.generations.wait_finished(generation.id, WITHIN)


def posts(slack: SlackHarness, generation: Generation) -> list[str]:
    """The channels the generation's video was posted to, one entry per post."""
    return [share.channel for share in slack.api.posts_of(video_filename(generation))]


def once_then_fine(slack: SlackHarness, method: str, error: str) -> None:
    """Answer the next `method` call with a Slack error, then as usual."""
    slack.api.errors[method] = error

    def heal(call: Call) -> None:
        if call.method == method:
            slack.api.errors.pop(method, None)

    slack.api.on_handled = heal


async def test_a_video_is_uploaded_in_three_steps_and_its_file_recorded_before_the_bytes(slack: SlackHarness):
    done = await make_video(slack)

    assert posts(slack, done) == [CHANNEL]
    three = ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert [m for m in slack.api.methods() if m in three] == three
    [ticket] = slack.api.calls_to("files.getUploadURLExternal")
    assert ticket.data["filename"] == video_filename(done)
    assert done.target.extra[EXTRA_FILE] == slack.api.shares[0].file_id and done.target.extra[EXTRA_COMPLETING]
    assert not slack.api.calls_to("files.info"), "a delivery that went through asks Slack nothing more"
    assert done.delivered_at is not None


async def test_a_completion_whose_answer_was_lost_is_looked_up_not_sent_again(slack: SlackHarness):
    # Slack posts the video, then the connection drops before its answer arrives (as when soracast dies).
    slack.api.lost_answers["files.completeUploadExternal"] = 1
    done = await make_video(slack)

    assert posts(slack, done) == [CHANNEL]
    assert len(slack.api.calls_to("files.completeUploadExternal")) == 1, "slack-sdk must not resend it either"
    assert len(slack.api.calls_to("files.getUploadURLExternal")) == 1
    [info] = slack.api.calls_to("files.info")
    assert info.data["file"] == done.target.extra[EXTRA_FILE]
    final = slack.api.calls_to("chat.update")[-1]
    assert final.data["ts"] == done.target.message_id and "Remix" in str(final.data["blocks"])
    assert done.status is GenerationStatus.COMPLETED and done.delivered_at is not None


async def test_a_completion_slack_has_not_shared_yet_is_waited_for_not_repeated(slack: SlackHarness):
    # Slack shares files asynchronously: right after the lost answer, files.info shows the file without shares.
    slack.api.share_delay = 0.3
    slack.api.lost_answers["files.completeUploadExternal"] = 1
    done = await make_video(slack)

    assert posts(slack, done) == [CHANNEL]
    assert len(slack.api.calls_to("files.completeUploadExternal")) == 1
    assert len(slack.api.calls_to("files.info")) >= 2, "asked again until the share showed"
    assert done.delivered_at is not None


async def test_bytes_whose_answer_was_lost_are_uploaded_afresh_and_posted_once(slack: SlackHarness):
    slack.api.lost_answers["upload"] = 1
    done = await make_video(slack)

    assert posts(slack, done) == [CHANNEL]
    assert len(slack.api.calls_to("files.getUploadURLExternal")) == 2
    assert len(slack.api.calls_to("files.completeUploadExternal")) == 1
    assert not slack.api.calls_to("files.info"), "nothing was completed, so there is nothing to ask about"
    assert done.target.extra[EXTRA_FILE] == slack.api.shares[0].file_id


async def test_a_completion_slack_refused_before_posting_is_uploaded_afresh(slack: SlackHarness):
    once_then_fine(slack, "files.completeUploadExternal", "internal_error")
    done = await make_video(slack)

    assert posts(slack, done) == [CHANNEL]
    assert [c.method for c in slack.api.calls if c.method.startswith("files.")] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
        "files.info",  # file_not_found: that completion never posted anything
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]


async def test_a_share_slack_never_shows_is_taken_back_before_the_video_is_posted_again(
    slack: SlackHarness, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(slack_notifier, "SHARE_GRACE", 0.0)
    slack.api.share_delay = 3600.0  # Slack took the completion and never posts it
    slack.api.lost_answers["files.completeUploadExternal"] = 1

    def posted_at_once(call: Call) -> None:
        if call.method == "files.completeUploadExternal" and len(slack.api.calls_to(call.method)) == 2:
            slack.api.shares[-1].visible_at = 0.0

    slack.api.on_handled = posted_at_once
    done = await make_video(slack)

    dropped, posted = slack.api.shares
    assert [c.data["file"] for c in slack.api.calls_to("files.delete")] == [dropped.file_id]
    assert posted.visible and posted.file_id == done.target.extra[EXTRA_FILE] != dropped.file_id
    assert done.delivered_at is not None


async def test_a_failed_first_message_is_posted_by_the_delivery_and_recorded_at_once(slack: SlackHarness):
    once_then_fine(slack, "chat.postMessage", "internal_error")
    done = await make_video(slack)

    [_, card] = slack.api.calls_to("chat.postMessage")  # the first one was refused
    assert posts(slack, done) == [CHANNEL]
    assert done.target.message_id is not None and "Remix" in str(card.data["blocks"])

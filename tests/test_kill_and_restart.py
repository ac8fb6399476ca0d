"""`soracast web` killed with SIGKILL while it posts videos, and started again on the same data, posts every video
exactly once: a small run of the soak (`benchmarks/soak.py`) with real processes — the web app and the emulated
Videos API (with random 5xx and lost answers) as child processes, the fake Slack answering with latency."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import SoakOptions, run_soak


async def test_killed_just_as_slack_posted_a_video_the_restarted_app_posts_every_video_exactly_once(
    tmp_path: Path,
) -> None:
    options = SoakOptions(
        jobs=4,
        kills=("complete", "timer"),
        fail_rate=0.1,
        time_scale=2.0,
        latency=0.05,
        share_delay=0.2,
        arm_after_max=0.5,
        settle=6.0,
        deadline=180.0,
        seed=10,
    )
    figures = await run_soak(options, tmp_path)

    assert figures.acked == 4
    assert figures.kills[0].startswith("files.completeUploadExternal"), figures.kills
    assert (figures.delivered, figures.duplicates, figures.lost, figures.failed) == (4, 0, 0, 0), figures.rows(1)
    assert figures.found_posted >= 1, "the restarted app asked Slack and found the video it had posted"

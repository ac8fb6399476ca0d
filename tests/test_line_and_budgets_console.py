"""The line and budgets in the terminal: a waiting video shows its place, /queue and /cancel, /limits, /usage, and
costs on the submitted and finished lines — scripted sessions through `run_console` on the real core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.console.app import console_identity
from bot.app import Soracast, build_app
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.config import Settings
from bot.models import Actor, BudgetKind, DeliveryTarget, GenerationOptions, GenerationStatus
from tests.fixtures.console import ConsoleRun, run_script
from tests.fixtures.core import fast_settings, serving
from tests.fixtures.line import eventually, finish, sent, slow_offline_api

PRICES = {"sora-2": 0.10}
SCOPE, ME = console_identity()
#: Someone else in the same terminal workspace (another session on this machine).
BOB = Actor(id="bob", display_name="Bob")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path / "data", max_in_flight=1, prices=PRICES)


@pytest.fixture
def slow_api(tmp_path: Path) -> OfflineVideosAPI:
    return slow_offline_api(tmp_path / "slow")


@pytest.fixture
async def core(settings: Settings, slow_api: OfflineVideosAPI) -> AsyncIterator[Soracast]:
    app = await build_app(settings, videos=slow_api)
    serving(app)  # the console serves its platform: a command is sent from here
    yield app
    await app.aclose()


async def run(settings: Settings, core: Soracast, tmp_path: Path, *lines: str) -> ConsoleRun:
    return await run_script(settings, core, tmp_path / f"script-{abs(hash(lines))}.txt", *lines)


async def someone_elses_video(core: Soracast, prompt: str = "bob's fox") -> str:
    """Bob's video, sent at once: it holds the only slot until the test finishes it."""
    generation = await core.generations.generate(
        SCOPE, BOB, prompt, GenerationOptions(seconds="4"), DeliveryTarget(channel_id="console")
    )
    return generation.id


async def test_a_video_that_must_wait_shows_its_place_then_its_cost_when_done(
    settings: Settings, core: Soracast, slow_api: OfflineVideosAPI, tmp_path: Path
) -> None:
    first = await someone_elses_video(core)

    async def let_the_line_move() -> None:
        async def mine_waiting() -> str | None:
            waiting = [g for g in await core.generations.recent(SCOPE) if g.requester_id == ME.id]
            return waiting[0].id if waiting and waiting[0].line_position == 1 else None

        mine = await eventually(mine_waiting)
        await finish(core, slow_api, first)
        await finish(core, slow_api, mine)

    helper = asyncio.create_task(let_the_line_move())
    result = await run(settings, core, tmp_path, "/sora a fox in the snow --seconds 8")
    await helper

    assert result.code == 0, result.output
    [mine] = [g for g in await core.generations.recent(SCOPE) if g.requester_id == ME.id]
    assert mine.status is GenerationStatus.COMPLETED
    lines = result.lines
    submitted = lines.index(f"Video `{mine.id}`: a fox in the snow")
    assert "≈ $0.80" in lines[submitted + 1], "the submitted line shows the estimate"
    waiting_at = lines.index(f"  {mine.id}: Waiting — 1st in line, about 60 s")
    ready_at = next(i for i, line in enumerate(lines) if line.startswith(f"Video {mine.id} is ready"))
    assert submitted < waiting_at < ready_at
    assert "cost $0.80" in lines[ready_at + 1], "the finished lines say what it cost"


async def test_queue_lists_the_line_and_cancel_takes_a_video_out_of_it(
    settings: Settings, core: Soracast, tmp_path: Path
) -> None:
    await someone_elses_video(core)
    # Left waiting by an earlier session of this user, and one of Bob's.
    mine = await core.generations.generate(
        SCOPE, ME, "my  queued\nlighthouse", GenerationOptions(), DeliveryTarget(channel_id="console")
    )
    bobs = await core.generations.generate(
        SCOPE, BOB, "bob's kite", GenerationOptions(), DeliveryTarget(channel_id="console")
    )
    assert (mine.status, bobs.status) == (GenerationStatus.WAITING, GenerationStatus.WAITING)

    listed = await run(settings, core, tmp_path, "/queue", "/sora queue")
    assert listed.code == 0, listed.output
    assert listed.output.count("2 videos of this workspace waiting in line, next first:") == 2
    assert f"  1st of 2 · `{mine.id}` by {ME.id} · about 60 s · my queued lighthouse" in listed.lines
    assert f"  2nd of 2 · `{bobs.id}` by bob · about 2 min · bob's kite" in listed.lines

    cancelled = await run(settings, core, tmp_path, f"/cancel {mine.id}", f"/sora cancel `{bobs.id}`", "/queue")
    assert cancelled.code == 0, cancelled.output
    assert f"Cancelled video `{mine.id}`: it will not be made, and nothing is charged for it." in cancelled.lines
    assert f"Cancelled video `{bobs.id}`: it will not be made, and nothing is charged for it." in cancelled.lines
    assert "No video of this workspace is waiting in line" in cancelled.lines[-1]
    for generation in (mine, bobs):
        assert (await core.storage.get_generation(generation.id)).status is GenerationStatus.CANCELLED

    unknown = await run(settings, core, tmp_path, "/cancel gnothere9")
    assert unknown.code == 1 and "There is no video 'gnothere9' in this workspace." in unknown.output


async def test_limits_are_shown_set_lifted_and_reset_and_a_refusal_says_limit_used_and_reset(
    settings: Settings, core: Soracast, tmp_path: Path
) -> None:
    shown = await run(settings, core, tmp_path, "/limits")
    at = shown.lines.index("Limits here: no limits.")
    assert shown.lines[at + 1].startswith("Admins change them with /limits --monthly-usd <USD> --daily-seconds")
    assert "`none` lifts it, `default` goes back to the bot's default" in shown.lines[at + 1]

    changed = await run(settings, core, tmp_path, "/limits --monthly-usd $0.50 --daily-seconds 60")
    assert "Limits here: monthly budget $0.50 · 60 s of video per person a day." in changed.lines
    assert await core.budgets.limits(SCOPE) == {BudgetKind.MONTHLY_USD: 0.5, BudgetKind.DAILY_SECONDS: 60}

    bad = await run(settings, core, tmp_path, "/limits --monthly-usd lots --daily-seconds none")
    assert bad.code == 1 and "'lots' is not a monthly budget in US dollars." in bad.output
    assert (await core.budgets.limits(SCOPE))[BudgetKind.DAILY_SECONDS] == 60, "bad input changes nothing"

    first = await someone_elses_video(core)  # $0.40 of the $0.50
    refused = await run(settings, core, tmp_path, "/sora a fox --seconds 4")
    assert refused.code == 1
    assert "about $0.40" in refused.output and "$0.40 of its $0.50 monthly video budget" in refused.output
    assert "The budget resets on 1 " in refused.output and "(UTC)" in refused.output
    assert [g.id for g in await core.generations.recent(SCOPE)] == [first], "nothing was stored"

    lifted = await run(settings, core, tmp_path, "/limits --monthly-usd none --daily-seconds default")
    assert "Limits here: no limits." in lifted.lines


async def test_usage_shows_this_month_per_person_and_model(settings: Settings, core: Soracast, tmp_path: Path) -> None:
    await sent(core, await someone_elses_video(core))  # counted once it is sent

    result = await run(settings, core, tmp_path, "/usage")

    assert result.code == 0, result.output
    [month] = [line for line in result.lines if "spent on" in line]
    assert month.endswith(": $0.40 spent on 1 video(s) (no limits)")
    assert "  bob · sora-2 · 1 video(s), 4 s · $0.40" in result.lines

"""Budgets: a workspace's monthly spend and each person's daily seconds, checked before a video joins the line,
with costs shown, refunds for failures, and usage for admins."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import Soracast, build_app
from bot.chat import present
from bot.errors import BudgetExceeded, PermissionDenied
from bot.models import Actor, BudgetKind, GenerationOptions, GenerationStatus, Platform, SpendState
from tests.fixtures.core import CONSOLE_SCOPE, TARGET, RecordingNotifier, fast_settings
from tests.fixtures.videos import fast_offline_api

WITHIN = 60
ADMIN = Actor(id="boss", is_admin=True)
ALICE, BOB = Actor(id="alice"), Actor(id="bob")


@pytest.fixture
async def priced(tmp_path: Path) -> Soracast:
    """The OpenAI-shape offline renderer with an operator price of $0.10/s for sora-2."""
    settings = fast_settings(tmp_path / "data", prices={"sora-2": 0.10, "sora-2-pro:720p": 0.30})
    core = await build_app(settings, videos=fast_offline_api(tmp_path / "offline"))
    recorder = RecordingNotifier()
    core.generations.register_notifier(Platform.CONSOLE, recorder)
    await core.generations.resume(Platform.CONSOLE)
    core.recorder = recorder  # type: ignore[attr-defined]
    yield core
    await core.aclose()


async def _spend_state(core: Soracast, generation_id: str) -> str:
    async with core.storage.db.execute(  # type: ignore[attr-defined]
        "SELECT state FROM spend WHERE generation_id = ?", (generation_id,)
    ) as cursor:
        return (await cursor.fetchone())[0]


async def test_the_estimate_is_shown_and_the_finished_video_says_what_it_cost(priced: Soracast) -> None:
    generation = await priced.generations.generate(
        CONSOLE_SCOPE, ALICE, "a fox", GenerationOptions(seconds="8"), TARGET
    )
    assert generation.cost_usd == pytest.approx(0.80)
    assert "≈ $0.80" in present.details_line(generation)
    final = await priced.generations.wait_finished(generation.id, within=WITHIN)
    assert "cost $0.80" in present.details_line(final)
    assert await _spend_state(priced, generation.id) == SpendState.SPENT.value
    # The operator's price per resolution wins for that model.
    pro = await priced.generations.generate(
        CONSOLE_SCOPE, ALICE, "a fox", GenerationOptions(model="sora-2-pro", seconds="4"), TARGET
    )
    assert pro.cost_usd == pytest.approx(1.20)


async def test_a_monthly_budget_refuses_what_would_go_over_saying_limit_used_and_reset(priced: Soracast) -> None:
    await priced.budgets.set_limits(CONSOLE_SCOPE, ADMIN, {BudgetKind.MONTHLY_USD: 1.50})
    first = await priced.generations.generate(CONSOLE_SCOPE, ALICE, "one", GenerationOptions(seconds="12"), TARGET)

    with pytest.raises(BudgetExceeded) as caught:
        await priced.generations.generate(CONSOLE_SCOPE, BOB, "two", GenerationOptions(seconds="4"), TARGET)

    text = caught.value.user_text()
    assert "about $0.40" in text and "$1.20 of its $1.50 monthly video budget" in text
    assert "resets on 1 " in text and "/soracast limits" in text
    assert [g.id for g in await priced.generations.recent(CONSOLE_SCOPE)] == [first.id]


async def test_a_daily_limit_per_person_leaves_others_alone(priced: Soracast) -> None:
    await priced.budgets.set_limits(CONSOLE_SCOPE, ADMIN, {BudgetKind.DAILY_SECONDS: 10})
    await priced.generations.generate(CONSOLE_SCOPE, ALICE, "one", GenerationOptions(seconds="8"), TARGET)

    with pytest.raises(BudgetExceeded) as caught:
        await priced.generations.generate(CONSOLE_SCOPE, ALICE, "two", GenerationOptions(seconds="4"), TARGET)
    assert "8 s of video today" in caught.value.message and "10 s a day" in caught.value.message
    assert "You have 2 s left today" in (caught.value.hint or "")
    await priced.generations.generate(CONSOLE_SCOPE, BOB, "bob's", GenerationOptions(seconds="8"), TARGET)


async def test_a_video_the_backend_fails_is_given_back(priced: Soracast) -> None:
    await priced.budgets.set_limits(CONSOLE_SCOPE, ADMIN, {BudgetKind.MONTHLY_USD: 0.50})
    blocked = await priced.generations.generate(
        CONSOLE_SCOPE, ALICE, "something [[moderation]]", GenerationOptions(seconds="4"), TARGET
    )
    final = await priced.generations.wait_finished(blocked.id, within=WITHIN)
    assert final.status is GenerationStatus.FAILED
    assert await _spend_state(priced, blocked.id) == SpendState.REFUNDED.value
    # The refund made room again.
    await priced.generations.generate(CONSOLE_SCOPE, ALICE, "fine", GenerationOptions(seconds="4"), TARGET)


async def test_a_model_without_a_price_cannot_be_checked_against_a_budget(tmp_path: Path) -> None:
    core = await build_app(fast_settings(tmp_path / "data", monthly_budget_usd=5.0), videos=fast_offline_api(tmp_path))
    try:
        with pytest.raises(BudgetExceeded) as caught:
            await core.generations.generate(CONSOLE_SCOPE, ALICE, "a fox", GenerationOptions(), TARGET)
        assert "no known price" in caught.value.message and "SORACAST_PRICES" in (caught.value.hint or "")
    finally:
        await core.aclose()


async def test_only_admins_set_limits_and_see_usage_per_person_and_model(priced: Soracast) -> None:
    with pytest.raises(PermissionDenied):
        await priced.budgets.set_limits(CONSOLE_SCOPE, ALICE, {BudgetKind.MONTHLY_USD: 100})
    with pytest.raises(PermissionDenied):
        await priced.budgets.usage(CONSOLE_SCOPE, ALICE)
    limits = await priced.budgets.set_limits(CONSOLE_SCOPE, ADMIN, {BudgetKind.MONTHLY_USD: 20})
    assert present.limits_line(limits) == "monthly budget $20.00"

    for actor, seconds, model in ((ALICE, "8", "sora-2"), (ALICE, "4", "sora-2"), (BOB, "4", "sora-2-pro")):
        g = await priced.generations.generate(
            CONSOLE_SCOPE, actor, "a fox", GenerationOptions(seconds=seconds, model=model), TARGET
        )
        await priced.generations.wait_finished(g.id, within=WITHIN)
    usage = await priced.budgets.usage(CONSOLE_SCOPE, ADMIN)

    assert usage.total_usd == pytest.approx(2.40)
    rows = {(r.person, r.model): (r.videos, r.seconds, r.usd) for r in usage.rows}
    assert rows[("alice", "sora-2")] == (2, 12, pytest.approx(1.20))
    assert rows[("bob", "sora-2-pro")] == (1, 4, pytest.approx(1.20))
    lines = present.usage_lines(usage)
    assert lines[0].endswith("$2.40 of $20.00 spent on 3 video(s) (monthly budget $20.00)")
    # Lifting a limit and resetting to the operator's default are different things.
    lifted = await priced.budgets.set_limits(CONSOLE_SCOPE, ADMIN, {BudgetKind.MONTHLY_USD: None})
    assert lifted[BudgetKind.MONTHLY_USD] is None


async def test_changing_who_may_register_leaves_the_limits_alone(priced: Soracast) -> None:
    await priced.budgets.set_limits(CONSOLE_SCOPE, ADMIN, {BudgetKind.MONTHLY_USD: 5.0})
    await priced.registry.configure(CONSOLE_SCOPE, ADMIN, register_role_id="artists")

    assert (await priced.budgets.limits(CONSOLE_SCOPE))[BudgetKind.MONTHLY_USD] == 5.0
    assert (await priced.registry.scope_settings(CONSOLE_SCOPE)).register_role_id == "artists"

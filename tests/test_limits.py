"""Limits as admins type them on every platform: a number sets, `none` lifts, `default` restores the operator's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import Soracast, build_app
from bot.errors import InvalidInput, PermissionDenied
from bot.models import Actor, BudgetKind
from bot.videos.limits import LimitChanges, change_limits, parse_limit_changes, parse_limit_flags
from tests.fixtures.core import CONSOLE_SCOPE, fast_settings
from tests.fixtures.videos import fast_offline_api

MONTHLY, DAILY = BudgetKind.MONTHLY_USD, BudgetKind.DAILY_SECONDS
ADMIN, MEMBER = Actor(id="boss", is_admin=True), Actor(id="alice")


@pytest.fixture
async def core(tmp_path: Path) -> Soracast:
    """Operator defaults: $20 a month, 60 s a person a day."""
    settings = fast_settings(tmp_path / "data", monthly_budget_usd=20.0, daily_seconds_per_person=60)
    app = await build_app(settings, videos=fast_offline_api(tmp_path / "offline"))
    yield app
    await app.aclose()


@pytest.mark.parametrize(
    "monthly, daily, expected",
    [
        ("$50", "120s", LimitChanges(set={MONTHLY: 50.0, DAILY: 120.0})),
        ("1,000.50 USD", None, LimitChanges(set={MONTHLY: 1000.5})),
        ("None", "off", LimitChanges(set={MONTHLY: None, DAILY: None})),
        ("default", " reset ", LimitChanges(reset=[MONTHLY, DAILY])),
        ("0", "", LimitChanges(set={MONTHLY: 0.0})),
    ],
)
def test_typed_limits_are_read_the_same_everywhere(monthly: str, daily: str | None, expected: LimitChanges) -> None:
    assert parse_limit_changes({MONTHLY: monthly, DAILY: daily}) == expected


@pytest.mark.parametrize(
    "monthly, daily, fragment",
    [
        ("lots", None, "'lots' is not a monthly budget in US dollars."),
        ("-5", None, "'-5' is not a monthly budget"),
        ("inf", None, "'inf' is not a monthly budget"),
        (None, "1.5", "'1.5' is not a whole number of seconds."),
        (None, "a minute", "'a minute' is not a number of seconds."),
    ],
)
def test_what_is_not_a_limit_is_refused_with_what_to_type(
    monthly: str | None, daily: str | None, fragment: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_limit_changes({MONTHLY: monthly, DAILY: daily})
    assert fragment in caught.value.user_text()
    assert "`none` to lift the limit" in caught.value.user_text() or "whole number" in fragment


def test_flags_are_the_text_grammar_and_stray_words_are_refused() -> None:
    assert parse_limit_flags("--monthly-usd 5 —daily-seconds none") == LimitChanges(set={MONTHLY: 5.0, DAILY: None})
    assert parse_limit_flags("") == LimitChanges()
    with pytest.raises(InvalidInput, match="Unexpected 'fifty'"):
        parse_limit_flags("fifty")
    with pytest.raises(InvalidInput, match="Unknown option --weekly-usd"):
        parse_limit_flags("--weekly-usd 5")


async def test_set_lift_and_default_are_three_different_things(core: Soracast) -> None:
    assert await change_limits(core.budgets, CONSOLE_SCOPE, MEMBER, LimitChanges()) == {MONTHLY: 20.0, DAILY: 60}

    typed = parse_limit_flags("--monthly-usd 5 --daily-seconds none")
    changed = await change_limits(core.budgets, CONSOLE_SCOPE, ADMIN, typed)
    assert changed == {MONTHLY: 5.0, DAILY: None}

    restored = await change_limits(core.budgets, CONSOLE_SCOPE, ADMIN, parse_limit_flags("--daily-seconds default"))
    assert restored == {MONTHLY: 5.0, DAILY: 60}


async def test_only_admins_change_limits_and_a_refusal_changes_nothing(core: Soracast) -> None:
    for typed in ("--monthly-usd 1", "--daily-seconds default"):
        with pytest.raises(PermissionDenied):
            await change_limits(core.budgets, CONSOLE_SCOPE, MEMBER, parse_limit_flags(typed))
    assert await core.budgets.limits(CONSOLE_SCOPE) == {MONTHLY: 20.0, DAILY: 60}


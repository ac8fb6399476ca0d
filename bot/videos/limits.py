"""An admin's change to a workspace's limits, as typed on any platform: a number, `none` or `default`.

`/soracast limits --monthly-usd 50 --daily-seconds none` (Slack, the terminal's `/limits`) and Discord's
`monthly_usd:` / `daily_seconds:` options all come here, so every platform reads the same words the same way:
a number sets the limit, `none` lifts it (no limit here), `default` goes back to the operator's default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, Field

from bot.chat.commands import split_options
from bot.errors import InvalidInput
from bot.models import Actor, BudgetKind, Scope
from bot.videos.budgets import Budgets

#: Each limit's name where it is typed as a flag (`--monthly-usd 50`).
FLAGS = {BudgetKind.MONTHLY_USD: "monthly-usd", BudgetKind.DAILY_SECONDS: "daily-seconds"}

_LIFT = {"none", "off", "unlimited"}
_RESET = {"default", "reset"}
_WHAT = {BudgetKind.MONTHLY_USD: "a monthly budget in US dollars", BudgetKind.DAILY_SECONDS: "a number of seconds"}
_EXAMPLE = {BudgetKind.MONTHLY_USD: "50", BudgetKind.DAILY_SECONDS: "120"}


class LimitChanges(BaseModel):
    """What to change: limits to set (a number, or None to lift) and limits to put back to the default."""

    set: dict[BudgetKind, float | None] = Field(default_factory=dict)
    reset: list[BudgetKind] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.set and not self.reset


def _number(kind: BudgetKind, raw: str) -> float:
    text = raw.strip().lower().replace(",", "")
    text = text.removeprefix("$").removesuffix("usd") if kind is BudgetKind.MONTHLY_USD else text.removesuffix("s")
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(
            f"{raw.strip()!r} is not {_WHAT[kind]}.",
            hint=f"Give a number of 0 or more (e.g. {_EXAMPLE[kind]}), `none` to lift the limit, or `default` for "
            "the bot's default.",
        )
    if kind is BudgetKind.DAILY_SECONDS and not value.is_integer():
        raise InvalidInput(f"{raw.strip()!r} is not a whole number of seconds.", hint="Give e.g. 120.")
    return value


def parse_limit_changes(values: Mapping[BudgetKind, str | None]) -> LimitChanges:
    """Read each typed value (None: not given); bad input raises `InvalidInput` before anything changes."""
    changes = LimitChanges()
    for kind, raw in values.items():
        if raw is None or not raw.strip():
            continue
        word = raw.strip().lower()
        if word in _RESET:
            changes.reset.append(kind)
        elif word in _LIFT:
            changes.set[kind] = None
        else:
            changes.set[kind] = _number(kind, raw)
    return changes


def parse_limit_flags(text: str) -> LimitChanges:
    """`--monthly-usd 50 --daily-seconds none` (the text grammar of Slack and the terminal)."""
    words, options = split_options(text, set(FLAGS.values()))
    if words:
        raise InvalidInput(
            f"Unexpected {words.split()[0]!r}.",
            hint="Usage: limits [--monthly-usd <USD|none|default>] [--daily-seconds <seconds|none|default>]",
        )
    return parse_limit_changes({kind: options.get(flag) for kind, flag in FLAGS.items()})


async def change_limits(
    budgets: Budgets, scope: Scope, actor: Actor, changes: LimitChanges
) -> dict[BudgetKind, float | None]:
    """Apply the changes (admins only; nothing to change just reads the limits, which anyone may) and return the
    limits that now apply."""
    if changes.empty:
        return await budgets.limits(scope)
    limits = await budgets.set_limits(scope, actor, changes.set)
    for kind in changes.reset:
        limits = await budgets.reset_limit(scope, actor, kind)
    return limits

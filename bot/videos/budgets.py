"""What videos cost a workspace, and the limits its admins set on that.

The cost of a request is estimated before it joins the line: its seconds × the price per second of its model
at its resolution (the operator's `SORACAST_PRICES` first, then the published table). Two limits apply, both
optional: a workspace's monthly spend in USD (a calendar month, UTC) and the seconds one person may ask for in
a day (UTC). A request that would go over is refused, saying the limit, what is used and when it resets.

The ledger follows the request: reserved when it joins the line (so twenty queued requests cannot overspend),
spent when it is sent, refunded when the backend fails it (providers do not bill a failed or blocked
generation), released when it is cancelled or refused before being sent.
"""

from __future__ import annotations

import asyncio
import calendar
import math
from collections import defaultdict
from datetime import datetime, timedelta

from pydantic import BaseModel

from bot.backends.base import ModelCapabilities
from bot.backends.catalog import ModelCatalog
from bot.config import Settings
from bot.errors import BudgetExceeded, InvalidInput, PermissionDenied
from bot.models import (
    Actor,
    BudgetKind,
    Generation,
    Scope,
    ScopeSettings,
    SpendEntry,
    SpendState,
    UsageRow,
    utcnow,
)
from storage.base import Storage


class Estimate(BaseModel):
    """A request's estimated cost: None where no price is known for its model."""

    seconds: int
    per_second: float | None
    usd: float | None


class Usage(BaseModel):
    """This month's spending of a workspace, per person and model, and the limits that apply."""

    month: str
    rows: list[UsageRow]
    limits: dict[BudgetKind, float | None]
    total_usd: float
    unpriced_videos: int


def money(usd: float | None) -> str:
    """`$3.20`, `$0.60`, or `unknown price`."""
    return "unknown price" if usd is None else f"${usd:,.2f}"


def _next_month(now: datetime) -> datetime:
    days = calendar.monthrange(now.year, now.month)[1]
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=days)


class Budgets:
    """Estimates, limits and the ledger of spending, per workspace."""

    def __init__(self, storage: Storage, catalog: ModelCatalog, settings: Settings) -> None:
        self._storage = storage
        self._catalog = catalog
        self._defaults: dict[BudgetKind, float | None] = {
            BudgetKind.MONTHLY_USD: settings.monthly_budget_usd,
            BudgetKind.DAILY_SECONDS: settings.daily_seconds_per_person,
        }
        # Checking and reserving is one step per workspace here; storage makes it atomic across processes.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def estimate(self, caps: ModelCapabilities, seconds: int, size: str) -> Estimate:
        per_second = self._catalog.price_per_second(caps, size)
        usd = None if per_second is None else round(per_second * seconds, 4)
        return Estimate(seconds=seconds, per_second=per_second, usd=usd)

    async def limits(self, scope: Scope) -> dict[BudgetKind, float | None]:
        """The limits that apply to a workspace: its admins' choices over the operator's defaults."""
        chosen = (await self._storage.get_scope_settings(scope)).budget
        return {kind: chosen[kind] if kind in chosen else default for kind, default in self._defaults.items()}

    async def reserve(self, generation: Generation) -> None:
        """Check the request against the workspace's limits and reserve its cost; BudgetExceeded if it would
        go over (nothing is reserved then)."""
        limits = await self.limits(generation.scope)
        monthly = limits[BudgetKind.MONTHLY_USD]
        daily = limits[BudgetKind.DAILY_SECONDS]
        seconds = int(generation.seconds)
        if monthly is not None and generation.cost_usd is None:
            raise BudgetExceeded(
                f"{generation.model} has no known price, so this workspace's ${monthly:,.2f} monthly limit cannot "
                "be checked.",
                hint="Ask the bot's operator to set its price in SORACAST_PRICES, or pick another model.",
            )
        entry = SpendEntry(
            generation_id=generation.id,
            scope=generation.scope,
            person=generation.requester_id,
            backend=generation.backend,
            model=generation.model,
            seconds=seconds,
            usd=generation.cost_usd,
            created_at=generation.created_at,
        )
        async with self._locks[generation.scope.key]:
            totals = await self._storage.reserve_spend(entry, monthly_usd=monthly, daily_seconds=daily)
        if totals is None:
            return
        now = utcnow()
        if monthly is not None and totals.month_usd + (generation.cost_usd or 0.0) > monthly + 1e-9:
            reset = _next_month(now)
            resets = f"{reset.day} {reset:%B}"
            raise BudgetExceeded(
                f"This video would cost about {money(generation.cost_usd)}, and this workspace has used "
                f"{money(totals.month_usd)} of its {money(monthly)} monthly video budget.",
                hint=f"The budget resets on {resets} (UTC). Ask for a shorter video, or an admin can raise the "
                "limit with `/soracast limits`.",
            )
        assert daily is not None
        left = max(0, int(daily) - totals.person_day_seconds)
        raise BudgetExceeded(
            f"You have asked for {totals.person_day_seconds} s of video today; the limit here is {int(daily)} s a "
            f"day per person, and this one is {seconds} s.",
            hint=(f"You have {left} s left today: ask for a shorter one, or " if left else "Try again ")
            + "after midnight UTC, or ask an admin to raise the limit with `/soracast limits`.",
        )

    async def spent(self, generation_id: str) -> None:
        await self._storage.set_spend_state(generation_id, SpendState.SPENT)

    async def refund(self, generation_id: str) -> None:
        await self._storage.set_spend_state(generation_id, SpendState.REFUNDED)

    async def release(self, generation_id: str) -> None:
        await self._storage.set_spend_state(generation_id, SpendState.RELEASED)

    async def set_limits(
        self, scope: Scope, actor: Actor, values: dict[BudgetKind, float | None]
    ) -> dict[BudgetKind, float | None]:
        """An admin sets (a number), lifts (None) or resets to the default (absent) this workspace's limits."""
        if not actor.is_admin:
            raise PermissionDenied(
                "Only workspace admins can change soracast's limits.",
                hint="Ask someone with Manage Server (Discord) or an admin (Slack).",
            )
        for kind, value in values.items():
            if value is not None and (not math.isfinite(value) or value < 0):
                raise InvalidInput(f"{value!r} is not a limit.", hint=f"Give {kind.value} as a number of 0 or more.")
        current = await self._storage.get_scope_settings(scope)
        budget = {**current.budget, **values}
        await self._storage.save_scope_settings(
            ScopeSettings(scope=scope, register_role_id=current.register_role_id, budget=budget)
        )
        return await self.limits(scope)

    async def reset_limit(self, scope: Scope, actor: Actor, kind: BudgetKind) -> dict[BudgetKind, float | None]:
        """Back to the operator's default for one limit."""
        if not actor.is_admin:
            raise PermissionDenied("Only workspace admins can change soracast's limits.", hint=None)
        current = await self._storage.get_scope_settings(scope)
        budget = {k: v for k, v in current.budget.items() if k is not kind}
        await self._storage.save_scope_settings(
            ScopeSettings(scope=scope, register_role_id=current.register_role_id, budget=budget)
        )
        return await self.limits(scope)

    async def usage(self, scope: Scope, actor: Actor, month: str | None = None) -> Usage:
        """This month's spending per person and model (admins only)."""
        if not actor.is_admin:
            raise PermissionDenied(
                "Only workspace admins can see what the workspace has spent.", hint="Ask an admin to run it."
            )
        month = month or utcnow().strftime("%Y-%m")
        rows = await self._storage.usage(scope, month)
        return Usage(
            month=month,
            rows=rows,
            limits=await self.limits(scope),
            total_usd=round(sum(r.usd or 0.0 for r in rows), 4),
            unpriced_videos=sum(r.videos for r in rows if r.usd is None),
        )

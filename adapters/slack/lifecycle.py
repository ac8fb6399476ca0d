"""Workspaces arriving and leaving: `app_uninstalled`, `tokens_revoked`, `team_access_revoked`, and every
request from a workspace, which says it is (still, or again) there.

Leaving deletes that workspace's tokens at once and retires it (`bot.videos.departures`): its waiting videos leave the
line, jobs still being made end without being posted, and its characters and videos are kept for
`SORACAST_UNINSTALLED_RETENTION_DAYS` before the sweep deletes them. Nothing of any other workspace is touched.

Enterprise Grid: removing an organisation-wide installation retires every workspace soracast served through
it (remembered as requests came in) and the organisation itself; `team_access_revoked` retires the workspaces
it names; removing a workspace's own installation retires that workspace only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from adapters.slack.installations import SlackInstallationStore
from adapters.slack.workspaces import Workspace, WorkspaceClients
from bot.models import Platform, Scope
from bot.videos.departures import Departures
from storage.base import Storage

log = logging.getLogger(__name__)

#: How long a process trusts that a workspace it has seen is not retired before it looks again.
PRESENT_TTL = 60.0


def _workspace(context: AsyncBoltContext) -> Workspace:
    return Workspace(
        team_id=context.team_id or None,
        enterprise_id=context.enterprise_id or None,
        org_install=bool(context.is_enterprise_install),
    )


class Lifecycle:
    """The listeners for a workspace leaving, and the middleware noting one that is there."""

    def __init__(
        self,
        storage: Storage,
        departures: Departures,
        clients: WorkspaceClients,
        store: SlackInstallationStore | None,
    ) -> None:
        self._storage = storage
        self._departures = departures
        self._clients = clients
        #: None with SLACK_BOT_TOKEN: there are no stored tokens to delete.
        self._store = store
        self._present: dict[Scope, float] = {}
        self._linked: set[tuple[str, str]] = set()

    def register(self, app: AsyncApp) -> None:
        app.use(self.arrivals)
        app.event("app_uninstalled")(self.uninstalled)
        app.event("tokens_revoked")(self.tokens_revoked)
        app.event("team_access_revoked")(self.team_access_revoked)

    # --- arriving ------------------------------------------------------------------------------------------

    async def arrivals(
        self, context: AsyncBoltContext, body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> None:
        """Bolt middleware: a request from a workspace means soracast is installed there. A workspace that was
        retired and is back (installed again) keeps its data; a workspace served through an organisation-wide
        installation is remembered under that organisation."""
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        leaving = event.get("type") in ("app_uninstalled", "tokens_revoked", "team_access_revoked")
        if not leaving and context.team_id:
            try:
                await self.arrived(_workspace(context))
            except Exception as exc:  # bookkeeping must never cost a request its answer
                log.warning("could not note workspace %s: %s", context.team_id, type(exc).__name__)
        await next()

    async def arrived(self, workspace: Workspace) -> None:
        scope = workspace.scope
        now = time.monotonic()
        if self._present.get(scope, 0.0) < now:
            if await self._departures.is_retired(scope):
                await self._departures.reinstate(scope)
            self._present[scope] = now + PRESENT_TTL
        if workspace.org_install and workspace.enterprise_id and workspace.team_id:
            link = (workspace.enterprise_id, workspace.team_id)
            if link not in self._linked:
                await self._storage.link_org_workspace(Platform.SLACK, *link)
                self._linked.add(link)

    async def installed(self, workspace: Workspace) -> None:
        """The OAuth flow stored an installation: whatever it serves is back."""
        self._clients.forget(workspace)
        for scope in await self._scopes_of(workspace):
            self._present.pop(scope, None)
            await self._departures.reinstate(scope)

    # --- leaving ---------------------------------------------------------------------------------------------

    async def uninstalled(self, context: AsyncBoltContext) -> None:
        await self.left(_workspace(context), "app_uninstalled")

    async def tokens_revoked(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        tokens = event.get("tokens") if isinstance(event.get("tokens"), dict) else {}
        bots = tokens.get("bot") if isinstance(tokens.get("bot"), list) else []
        users = tokens.get("oauth") if isinstance(tokens.get("oauth"), list) else []
        workspace = _workspace(context)
        if bots:
            # Without its bot token soracast can do nothing there: the same as being removed.
            await self.left(workspace, "tokens_revoked")
            return
        if self._store is not None:
            team = None if workspace.org_install else workspace.team_id
            for user_id in users:
                if isinstance(user_id, str):
                    await self._store.async_delete_installation(
                        enterprise_id=workspace.enterprise_id, team_id=team, user_id=user_id
                    )

    async def team_access_revoked(self, event: dict[str, Any], context: AsyncBoltContext) -> None:
        teams = event.get("team_ids") if isinstance(event.get("team_ids"), list) else []
        for team_id in teams:
            if isinstance(team_id, str) and team_id:
                workspace = Workspace(team_id=team_id, enterprise_id=context.enterprise_id or None, org_install=True)
                self._clients.forget(workspace)
                await self._retire(workspace.scope, "team_access_revoked")

    async def left(self, workspace: Workspace, reason: str) -> None:
        """Delete the workspace's (or organisation's) tokens, then retire what it served."""
        if self._store is not None:
            team = None if workspace.org_install else workspace.team_id
            await self._store.async_delete_all(enterprise_id=workspace.enterprise_id, team_id=team)
        self._clients.forget(workspace)
        for scope in await self._scopes_of(workspace):
            await self._retire(scope, reason)

    async def _retire(self, scope: Scope, reason: str) -> None:
        self._present.pop(scope, None)
        await self._departures.retire(scope, reason)

    async def _scopes_of(self, workspace: Workspace) -> list[Scope]:
        """The workspaces an installation serves: one, or for an organisation-wide one each workspace seen
        through it (and the organisation itself, where org-level requests keep their data)."""
        if not (workspace.org_install and workspace.enterprise_id):
            return [workspace.scope]
        teams = await self._storage.org_workspaces(Platform.SLACK, workspace.enterprise_id)
        return [Scope(platform=Platform.SLACK, id=team) for team in [*teams, workspace.enterprise_id]]

"""Which workspace a request or a job belongs to, and the Web API client that speaks for soracast there.

With `SLACK_BOT_TOKEN` (one workspace) every call uses that token. In OAuth mode each workspace has its own
installation in the database, and every call — a listener's reply, or a progress edit, an upload, a delivery
made later by any process — uses the token of the workspace the request or job came from.

Enterprise Grid: a workspace installation is found by (enterprise id, team id); an organisation-wide
installation by the enterprise id alone and serves every workspace of that organisation. Characters and videos
always belong to the workspace (the team id) either way; a job remembers its enterprise id and whether it came
through an organisation-wide installation, so the notifier finds the same installation later.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.webapi import slack_error
from bot.chat.notify import DestinationGone
from bot.models import Generation, Platform, Scope

if TYPE_CHECKING:
    from adapters.slack.installations import SlackInstallationStore
    from bot.videos.departures import Departures

log = logging.getLogger(__name__)

#: Keys of `DeliveryTarget.extra` that say which installation a job's messages go through.
EXTRA_ENTERPRISE = "enterprise_id"
EXTRA_ORG_INSTALL = "org_install"

#: Slack's answers meaning the token can never work again: the app was removed, the workspace deleted.
FINAL_AUTH_ERRORS = frozenset({"token_revoked", "account_inactive", "team_access_not_granted"})
#: Answers meaning this token does not work (any more): gone if the installation is gone too.
AUTH_ERRORS = FINAL_AUTH_ERRORS | {"invalid_auth", "not_authed", "token_expired"}

#: How long a looked-up token is reused before the database is asked again (another process may have
#: rotated it or deleted it). A call refused for its token always asks again at once.
CLIENT_TTL = 30.0
#: Tokens that rotate are renewed this long before they expire (bolt's own default).
ROTATE_BEFORE_MINUTES = 120


@dataclass(frozen=True)
class Workspace:
    """A Slack workspace as an installation is found by: its team, its organisation (Grid), and whether soracast
    was installed across that whole organisation."""

    team_id: str | None
    enterprise_id: str | None = None
    org_install: bool = False

    @property
    def scope(self) -> Scope:
        """Characters and videos belong to the workspace; an org-level request without a team falls back to
        the organisation's id."""
        return Scope(platform=Platform.SLACK, id=self.team_id or self.enterprise_id or "unknown")

    def target_extra(self) -> dict[str, str]:
        """What a job keeps to find this installation again (nothing for a plain workspace)."""
        extra: dict[str, str] = {}
        if self.enterprise_id:
            extra[EXTRA_ENTERPRISE] = self.enterprise_id
        if self.org_install:
            extra[EXTRA_ORG_INSTALL] = "1"
        return extra

    @classmethod
    def of(cls, generation: Generation) -> Workspace:
        """The workspace a job was asked for in (older jobs carry no extras: a plain workspace)."""
        extra = generation.target.extra
        return cls(
            team_id=generation.scope.id,
            enterprise_id=extra.get(EXTRA_ENTERPRISE) or None,
            org_install=extra.get(EXTRA_ORG_INSTALL) == "1",
        )

    def describe(self) -> str:
        if self.org_install:
            return f"organisation {self.enterprise_id} (workspace {self.team_id})"
        return f"workspace {self.team_id}" + (f" of {self.enterprise_id}" if self.enterprise_id else "")


class WorkspaceClients(Protocol):
    """Web API clients per workspace."""

    async def client(self, workspace: Workspace) -> AsyncWebClient:
        """The client for `workspace`; `DestinationGone` where soracast is no longer installed there."""

    async def check_refusal(self, workspace: Workspace, exc: SlackApiError) -> None:
        """After Slack refused a call: raise `DestinationGone` when the refusal means the workspace is gone for
        good; return when the caller should treat it as before (retry, or show the error)."""

    def forget(self, workspace: Workspace) -> None:
        """Drop what is cached for `workspace` (it was uninstalled or installed again)."""


class OneWorkspace:
    """`SLACK_BOT_TOKEN`: one client for every call. Its workspace is gone only once Slack says the token can
    never work again, or the workspace removed soracast (an `app_uninstalled` event retired it)."""

    def __init__(self, client: AsyncWebClient, departures: Departures) -> None:
        self._client = client
        self._departures = departures

    async def client(self, workspace: Workspace) -> AsyncWebClient:
        return self._client

    async def check_refusal(self, workspace: Workspace, exc: SlackApiError) -> None:
        error = slack_error(exc)
        if error in FINAL_AUTH_ERRORS or (
            error in AUTH_ERRORS and await self._departures.is_retired(workspace.scope)
        ):
            raise DestinationGone(f"Slack answers {error} for {workspace.describe()}")

    def forget(self, workspace: Workspace) -> None:
        return None


class InstalledWorkspaces:
    """OAuth mode: each workspace's bot token from the installation store (renewed first where Slack rotates
    tokens), one client per token sharing the base client's HTTP session."""

    def __init__(
        self, store: SlackInstallationStore, base: AsyncWebClient, rotator: AsyncTokenRotator | None = None
    ) -> None:
        self._store = store
        self._base = base
        self._rotator = rotator
        self._cache: dict[Workspace, tuple[float, AsyncWebClient]] = {}

    async def client(self, workspace: Workspace) -> AsyncWebClient:
        cached = self._cache.get(workspace)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        bot = await self._bot(workspace)
        client = AsyncWebClient(
            token=bot.bot_token,
            base_url=self._base.base_url,
            timeout=self._base.timeout,
            ssl=self._base.ssl,
            proxy=self._base.proxy,
            session=self._base.session,
            headers=dict(self._base.headers),
            retry_handlers=list(self._base.retry_handlers),
        )
        until = time.monotonic() + CLIENT_TTL
        if bot.bot_token_expires_at is not None:
            # Never reuse a rotating token past the moment it should be renewed.
            until = min(until, time.monotonic() + bot.bot_token_expires_at - time.time() - ROTATE_BEFORE_MINUTES * 60)
        self._cache[workspace] = (until, client)
        return client

    async def _bot(self, workspace: Workspace) -> Bot:
        bot = await self._store.bot_for(workspace)  # raises Unsealable: not gone, the operator's key is wrong
        if bot is None or not bot.bot_token:
            raise DestinationGone(f"soracast is no longer installed in {workspace.describe()}")
        if bot.bot_refresh_token is not None and self._rotator is not None:
            renewed = await self._rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=ROTATE_BEFORE_MINUTES
            )
            if renewed is not None:
                await self._store.async_save_bot(renewed)
                log.info("renewed the bot token of %s", workspace.describe())
                bot = renewed
        return bot

    async def check_refusal(self, workspace: Workspace, exc: SlackApiError) -> None:
        error = slack_error(exc)
        if error not in AUTH_ERRORS:
            return
        self.forget(workspace)
        if error in FINAL_AUTH_ERRORS:
            raise DestinationGone(f"Slack answers {error} for {workspace.describe()}")
        await self._bot(workspace)  # DestinationGone when the installation went meanwhile

    def forget(self, workspace: Workspace) -> None:
        for cached in list(self._cache):
            same_team = workspace.team_id is not None and cached.team_id == workspace.team_id
            same_org = workspace.org_install and cached.enterprise_id == workspace.enterprise_id
            if cached == workspace or same_team or same_org:
                del self._cache[cached]

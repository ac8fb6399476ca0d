"""slack-sdk's installation and OAuth state stores, kept in soracast's own database (SQLite or Postgres).

Bolt's OAuth flow saves what `oauth.v2.access` answered through `SlackInstallationStore.async_save`; its
authorize finds it again per request with `async_find_installation`; token rotation writes renewed tokens back.
One installation is kept per workspace (or per organisation, for an organisation-wide install): the latest.
Everything but the ids is sealed with `SORACAST_SECRET_KEY` before it reaches the database.

The OAuth `state` lives in the database too, so the callback may reach another process than the one that
started the install: it is a random nonce signed with `SLACK_STATE_SECRET`, stored with its expiry, and taken
once. Bolt still checks it against the browser's cookie first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from adapters.slack.workspaces import Workspace
from bot.models import Platform, StoredInstallation, utcnow
from bot.sealing import SecretBox, Unsealable
from storage.base import Storage

log = logging.getLogger(__name__)

#: Where an OAuth state waits for its callback, among the database's pending forms.
STATE_KEY_PREFIX = "slack-oauth-state:"


class SlackInstallationRecord(BaseModel):
    """What soracast keeps of an installation: the fields of slack-sdk's `Installation` it can use again."""

    app_id: str | None = None
    enterprise_id: str | None = None
    enterprise_name: str | None = None
    enterprise_url: str | None = None
    team_id: str | None = None
    team_name: str | None = None
    bot_token: str | None = Field(default=None, repr=False)
    bot_id: str | None = None
    bot_user_id: str | None = None
    bot_scopes: list[str] = Field(default_factory=list)
    bot_refresh_token: str | None = Field(default=None, repr=False)
    bot_token_expires_at: int | None = None
    user_id: str | None = None
    user_token: str | None = Field(default=None, repr=False)
    user_scopes: list[str] = Field(default_factory=list)
    user_refresh_token: str | None = Field(default=None, repr=False)
    user_token_expires_at: int | None = None
    is_enterprise_install: bool = False
    token_type: str | None = None
    installed_at: float

    @classmethod
    def from_installation(cls, installation: Installation) -> SlackInstallationRecord:
        return cls(
            app_id=installation.app_id,
            enterprise_id=installation.enterprise_id,
            enterprise_name=installation.enterprise_name,
            enterprise_url=installation.enterprise_url,
            team_id=installation.team_id,
            team_name=installation.team_name,
            bot_token=installation.bot_token,
            bot_id=installation.bot_id,
            bot_user_id=installation.bot_user_id,
            bot_scopes=list(installation.bot_scopes or []),
            bot_refresh_token=installation.bot_refresh_token,
            bot_token_expires_at=installation.bot_token_expires_at,
            user_id=installation.user_id or None,
            user_token=installation.user_token,
            user_scopes=list(installation.user_scopes or []),
            user_refresh_token=installation.user_refresh_token,
            user_token_expires_at=installation.user_token_expires_at,
            is_enterprise_install=bool(installation.is_enterprise_install),
            token_type=installation.token_type,
            installed_at=installation.installed_at,
        )

    def to_installation(self) -> Installation:
        fields: dict[str, Any] = self.model_dump()
        fields["user_id"] = self.user_id or ""
        return Installation(**fields)

    def with_bot(self, bot: Bot) -> SlackInstallationRecord:
        """This installation with a bot's (renewed) token."""
        return self.model_copy(
            update={
                "bot_token": bot.bot_token,
                "bot_id": bot.bot_id,
                "bot_user_id": bot.bot_user_id,
                "bot_scopes": list(bot.bot_scopes or []),
                "bot_refresh_token": bot.bot_refresh_token,
                "bot_token_expires_at": bot.bot_token_expires_at,
            }
        )

    @property
    def workspace(self) -> Workspace:
        return Workspace(
            team_id=self.team_id, enterprise_id=self.enterprise_id, org_install=self.is_enterprise_install
        )


def installation_key(
    enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
) -> tuple[str, str]:
    """(org id, workspace id) an installation is stored under: an organisation-wide one by its organisation
    alone, any other by its organisation (if any) and workspace — the rule slack-sdk's own stores follow."""
    workspace = "" if is_enterprise_install or team_id is None else team_id
    return enterprise_id or "", workspace


class SlackInstallationStore(AsyncInstallationStore):
    """Bolt's installation store over soracast's `Storage`; secrets sealed with `SecretBox`."""

    def __init__(
        self,
        storage: Storage,
        box: SecretBox,
        on_installed: Callable[[Workspace], Awaitable[None]] | None = None,
    ) -> None:
        self._storage = storage
        self._box = box
        #: Called once an installation is saved (the lifecycle reinstates what it serves).
        self.on_installed = on_installed

    @property
    def logger(self) -> logging.Logger:
        return log

    # --- what soracast itself uses ----------------------------------------------------------------------------

    async def record(self, org_id: str, workspace_id: str) -> SlackInstallationRecord | None:
        """The stored installation under these ids; `Unsealable` if no configured key opens it."""
        stored = await self._storage.find_installation(Platform.SLACK, org_id, workspace_id)
        if stored is None:
            return None
        try:
            return SlackInstallationRecord.model_validate_json(self._box.open(stored.sealed))
        except ValidationError:
            raise Unsealable("the stored installation is not one soracast wrote") from None

    async def bot_for(self, workspace: Workspace) -> Bot | None:
        """The bot of the installation serving `workspace`, or None where there is none."""
        org, team = installation_key(workspace.enterprise_id, workspace.team_id, workspace.org_install)
        found = await self.record(org, team)
        if found is None or not found.bot_token:
            return None
        return found.to_installation().to_bot()

    async def save_record(self, found: SlackInstallationRecord) -> None:
        org, team = installation_key(found.enterprise_id, found.team_id, found.is_enterprise_install)
        installed = datetime.fromtimestamp(found.installed_at, tz=UTC)
        await self._storage.save_installation(
            StoredInstallation(
                platform=Platform.SLACK,
                org_id=org,
                workspace_id=team,
                sealed=self._box.seal(found.model_dump_json()),
                installed_at=installed,
            )
        )

    async def _found(
        self, enterprise_id: str | None, team_id: str | None, org: bool | None
    ) -> SlackInstallationRecord | None:
        """For bolt: an installation that cannot be opened is logged (the operator's to fix) and not found."""
        key = installation_key(enterprise_id, team_id, org)
        try:
            return await self.record(*key)
        except Unsealable:
            log.error(
                "the installation of %s cannot be opened with SORACAST_SECRET_KEY (was a key removed before "
                "`soracast rekey`?); it counts as not installed",
                "/".join(part for part in key if part),
            )
            return None

    # --- bolt's AsyncInstallationStore -----------------------------------------------------------------------

    async def async_save(self, installation: Installation) -> None:
        found = SlackInstallationRecord.from_installation(installation)
        await self.save_record(found)
        name = found.team_name or found.enterprise_name
        log.info("stored the installation of soracast in %s (%s)", found.workspace.describe(), name)
        if self.on_installed is not None:
            await self.on_installed(found.workspace)

    async def async_save_bot(self, bot: Bot) -> None:
        existing = await self._found(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        base = existing or SlackInstallationRecord(
            app_id=bot.app_id,
            enterprise_id=bot.enterprise_id,
            enterprise_name=bot.enterprise_name,
            team_id=bot.team_id,
            team_name=bot.team_name,
            is_enterprise_install=bot.is_enterprise_install,
            installed_at=bot.installed_at,
        )
        await self.save_record(base.with_bot(bot))

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        found = await self._found(enterprise_id, team_id, is_enterprise_install)
        if found is None or not found.bot_token:
            return None
        return found.to_installation().to_bot()

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        found = await self._found(enterprise_id, team_id, is_enterprise_install)
        if found is None:
            return None
        if user_id is not None and found.user_id != user_id:
            return None  # only the latest installer's is kept; soracast asks for no user tokens anyway
        return found.to_installation()

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        # soracast is a bot: an installation without its bot token serves nothing.
        await self._delete(enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:
            await self._delete(enterprise_id, team_id)
            return
        found = await self._found(enterprise_id, team_id, None)
        if found is not None and found.user_id == user_id and found.user_token:
            cleared = found.model_copy(
                update={
                    "user_token": None,
                    "user_refresh_token": None,
                    "user_token_expires_at": None,
                    "user_scopes": [],
                }
            )
            await self.save_record(cleared)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete(enterprise_id, team_id)

    async def _delete(self, enterprise_id: str | None, team_id: str | None) -> None:
        org, workspace = installation_key(enterprise_id, team_id, None)
        if await self._storage.delete_installation(Platform.SLACK, org, workspace):
            log.info("deleted the tokens of %s", "/".join(part for part in (org, workspace) if part))


class DatabaseStateStore(AsyncOAuthStateStore):
    """OAuth states in the database: any process can finish an install another started, each state once."""

    def __init__(self, storage: Storage, state_secret: str, expiration_seconds: int) -> None:
        self._storage = storage
        self._secret = state_secret.encode("utf-8")
        self._lifetime = timedelta(seconds=expiration_seconds)

    @property
    def logger(self) -> logging.Logger:
        return log

    def _signature(self, nonce: str) -> str:
        digest = hmac.new(self._secret, b"slack-oauth-state:" + nonce.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        nonce = secrets.token_urlsafe(24)
        await self._storage.put_pending_form(STATE_KEY_PREFIX + nonce, "{}", utcnow() + self._lifetime)
        return f"{nonce}.{self._signature(nonce)}"

    async def async_consume(self, state: str) -> bool:
        nonce, _, signature = (state or "").partition(".")
        # A state soracast did not sign is refused before the database is asked.
        if not nonce or not nonce.isascii() or len(nonce) > 64:
            return False
        if not hmac.compare_digest(self._signature(nonce), signature):
            return False
        return await self._storage.take_pending_form(STATE_KEY_PREFIX + nonce, utcnow()) is not None

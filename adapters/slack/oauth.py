"""OAuth mode: "Add to Slack" for many workspaces from one deployment, with slack-bolt's own OAuth flow.

`GET /slack/install` sets a state cookie and redirects to Slack's authorize URL with that state; Slack sends the
installer back to `GET /slack/oauth_redirect?code=…&state=…`, where bolt checks the cookie against the state,
takes the state from the database (once, before it expires), exchanges the code with `oauth.v2.access` and saves
the installation (`adapters.slack.installations`). Each later request is authorised by bolt from that store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.installations import DatabaseStateStore, SlackInstallationStore
from adapters.slack.workspaces import ROTATE_BEFORE_MINUTES
from bot.config import Settings
from bot.errors import ConfigError
from bot.sealing import SecretBox
from bot.web.http_door import refusing
from storage.base import Storage

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
#: The bot scopes the install asks for: the same list as the manifest's `oauth_config.scopes.bot`.
BOT_SCOPES = (
    "app_mentions:read", "chat:write", "commands", "files:read", "files:write", "im:write", "users:read"
)
#: How long an install may take between /slack/install and the redirect back (bolt's default).
STATE_SECONDS = 600
#: What a person sees when a request comes from a workspace soracast is no longer installed in.
NOT_INSTALLED = (
    "soracast is not installed in this workspace any more. Ask a workspace admin to add it again with "
    "*Add to Slack*."
)


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    return await args.default.success(args)


async def _refused(args: AsyncFailureArgs) -> BoltResponse:
    """Bolt's failure page, plus the one log line every refusal of `soracast web` leaves (bolt logs at debug).

    The reason is bolt's code, or the `error` Slack (or anyone) put in the query: quoted and cut short."""
    log.warning("refused an install at %s: %d %r", REDIRECT_PATH, args.suggested_status_code, str(args.reason)[:60])
    return await args.default.failure(args)


def _required(value: str | None, env: str, why: str) -> str:
    if not value:
        raise ConfigError(f"{env} is not set.", hint=f"{why} See adapters/slack/README.md.")
    return value


@dataclass(frozen=True)
class OAuthConfig:
    """OAuth mode's variables, checked: each missing or malformed one is a ConfigError naming it."""

    client_id: str
    client_secret: str
    state_secret: str
    box: SecretBox
    redirect_uri: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthConfig:
        why = "OAuth mode (SLACK_CLIENT_ID is set) needs the app's credentials from Basic Information."
        client_id = _required(settings.slack_client_id, "SLACK_CLIENT_ID", why)
        secret = settings.slack_client_secret.get_secret_value() if settings.slack_client_secret else None
        client_secret = _required(secret, "SLACK_CLIENT_SECRET", why)
        state = settings.slack_state_secret.get_secret_value() if settings.slack_state_secret else None
        state_secret = _required(
            state, "SLACK_STATE_SECRET", "OAuth mode signs each install's state with it (any long random string)."
        )
        box = SecretBox.from_settings(
            settings, "OAuth mode keeps each workspace's bot token in the database, encrypted under it."
        )
        return cls(client_id, client_secret, state_secret, box, settings.slack_redirect_uri)


@dataclass
class SlackOAuth:
    """What OAuth mode adds to the bolt app: its settings (with the stores) and the authorize it uses."""

    settings: AsyncOAuthSettings
    authorize: AsyncInstallationStoreAuthorize
    store: SlackInstallationStore
    rotator: AsyncTokenRotator

    @classmethod
    def from_settings(cls, settings: Settings, storage: Storage, client: AsyncWebClient) -> SlackOAuth:
        """Check the OAuth variables and build the stores on soracast's database."""
        config = OAuthConfig.from_settings(settings)
        client_id, client_secret = config.client_id, config.client_secret
        store = SlackInstallationStore(storage, config.box)
        # Renewing rotating tokens goes through the same Web API client (and base URL) as everything else.
        rotator = AsyncTokenRotator(client_id=client_id, client_secret=client_secret, client=client)
        authorize = AsyncInstallationStoreAuthorize(
            logger=store.logger,
            installation_store=store,
            client_id=client_id,
            client_secret=client_secret,
            token_rotation_expiration_minutes=ROTATE_BEFORE_MINUTES,
            # The installation is looked up on every request; only auth.test's answer per token is remembered.
            cache_enabled=True,
            client=client,
        )
        oauth_settings = AsyncOAuthSettings(
            client_id=client_id,
            client_secret=client_secret,
            scopes=list(BOT_SCOPES),
            user_scopes=[],
            redirect_uri=config.redirect_uri,
            install_path=INSTALL_PATH,
            redirect_uri_path=REDIRECT_PATH,
            # Straight to Slack's consent screen: the install link in the README is the "Add to Slack" button.
            install_page_rendering_enabled=False,
            installation_store=store,
            token_rotation_expiration_minutes=ROTATE_BEFORE_MINUTES,
            state_store=DatabaseStateStore(storage, config.state_secret, STATE_SECONDS),
            state_expiration_seconds=STATE_SECONDS,
            callback_options=AsyncCallbackOptions(success=_installed, failure=_refused),
            logger=store.logger,
        )
        return cls(settings=oauth_settings, authorize=authorize, store=store, rotator=rotator)


def oauth_routes(flow: AsyncOAuthFlow) -> list[web.RouteDef]:
    """`GET /slack/install` and `GET /slack/oauth_redirect`, answered by bolt's flow."""

    async def install(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await flow.handle_installation(_bolt_request(request)))

    async def redirect(request: web.Request) -> web.StreamResponse:
        return await to_aiohttp_response(await flow.handle_callback(_bolt_request(request)))

    return [web.get(flow.install_path, refusing(install)), web.get(flow.redirect_uri_path, refusing(redirect))]


def _bolt_request(request: web.Request) -> AsyncBoltRequest:
    # Both pages read only the query string and the Cookie header; a GET carries no body worth reading.
    return AsyncBoltRequest(body="", query=request.query_string, headers=request.headers)  # type: ignore[arg-type]

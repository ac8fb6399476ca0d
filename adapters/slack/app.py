"""Wiring the Slack app (slack-bolt `AsyncApp`) to the core, and its two run modes: Socket Mode and HTTP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.background import Background
from adapters.slack.commands import SlashCommands
from adapters.slack.door import SlackDoor
from adapters.slack.envelope import envelope_middleware, on_bolt_error
from adapters.slack.files import FileFetcher, StillUploads
from adapters.slack.interactions import Interactions
from adapters.slack.lifecycle import Lifecycle
from adapters.slack.notifier import SlackNotifier
from adapters.slack.oauth import NOT_INSTALLED, OAuthConfig, SlackOAuth, oauth_routes
from adapters.slack.replies import ActorDirectory, Replier
from adapters.slack.services import Services
from adapters.slack.workspaces import InstalledWorkspaces, OneWorkspace, WorkspaceClients
from bot.app import Soracast, build_app, settle_after_start_up
from bot.config import Settings
from bot.errors import ConfigError
from bot.models import Platform
from bot.web.http_door import app_runner, refusing
from bot.web.web_app import create_core_web_app, serve, wait_for_stop

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def _secret(value: SecretStr | None, env: str, why: str) -> str:
    if value is None or not value.get_secret_value():
        raise ConfigError(f"{env} is not set.", hint=f"{why} See adapters/slack/README.md.")
    return value.get_secret_value()


def _bot_token(settings: Settings) -> str:
    return _secret(settings.slack_bot_token, "SLACK_BOT_TOKEN", "The bot token (xoxb-…) is needed to talk to Slack.")


@dataclass
class SlackAdapter:
    """The bolt app plus what tests and the run modes need to reach: its background jobs and notifier, and in
    OAuth mode the installation store and the workspaces' lifecycle."""

    app: AsyncApp
    services: Services
    lifecycle: Lifecycle
    oauth: SlackOAuth | None = None

    async def drain(self) -> None:
        """Wait for the work started after acks (tests and graceful shutdown)."""
        await self.services.background.drain()

    async def aclose(self) -> None:
        await self.services.background.aclose()


def _check_mode(settings: Settings) -> None:
    """One workspace (SLACK_BOT_TOKEN) or many (SLACK_CLIENT_ID …, OAuth), never both at once."""
    if settings.slack_oauth and settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value():
        raise ConfigError(
            "SLACK_BOT_TOKEN and SLACK_CLIENT_ID are both set.",
            hint="Unset SLACK_BOT_TOKEN for OAuth mode (each workspace's token comes from its install), or unset "
            "SLACK_CLIENT_ID to serve the one workspace of that token.",
        )


def build_slack_adapter(core: Soracast, settings: Settings, client: AsyncWebClient | None = None) -> SlackAdapter:
    """Create the bolt app, register every listener and the Slack notifier with the core.

    With SLACK_CLIENT_ID set (OAuth mode) `client` carries no token, only the base URL and HTTP session every
    workspace's client shares; otherwise it speaks with SLACK_BOT_TOKEN.
    """
    _check_mode(settings)
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    oauth: SlackOAuth | None = None
    clients: WorkspaceClients
    if settings.slack_oauth:
        client = client or AsyncWebClient(**_api_url(settings))
        oauth = SlackOAuth.from_settings(settings, core.storage, client)
        clients = InstalledWorkspaces(oauth.store, client, oauth.rotator)
        multi: dict[str, object] = {
            "oauth_settings": oauth.settings,
            "authorize": oauth.authorize,
            "user_facing_authorize_error_message": NOT_INSTALLED,
        }
    else:
        token = _bot_token(settings)
        client = client or AsyncWebClient(token=token, **_api_url(settings))
        clients = OneWorkspace(client, core.departures)
        multi = {}
    # Every listener acks and hands its work to `Background` before returning, so bolt may run listeners inline
    # (process_before_response) and answer when they return: no per-request polling for the ack.
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
        name="soracast",
        # A request no listener takes goes to `on_bolt_error` (one log line) instead of bolt's multi-line hint.
        raise_error_for_unhandled_request=True,
        **multi,  # type: ignore[arg-type]
    )
    app.use(envelope_middleware)
    app.error(on_bolt_error)
    replier = Replier(clients)
    notifier = SlackNotifier(clients, core.generations)
    services = Services(
        core=core,
        clients=clients,
        notifier=notifier,
        replier=replier,
        actors=ActorDirectory(clients),
        files=FileFetcher(clients, core.registry.limits, settings.resolved_media_dir / "slack-incoming"),
        background=Background(replier),
        stills=StillUploads(clients),
    )
    lifecycle = Lifecycle(core.storage, core.departures, clients, oauth.store if oauth else None)
    if oauth is not None:
        oauth.store.on_installed = lifecycle.installed
    lifecycle.register(app)
    SlashCommands(services).register(app)
    Interactions(services).register(app)
    core.generations.register_notifier(Platform.SLACK, notifier)
    settle_after_start_up()
    return SlackAdapter(app=app, services=services, lifecycle=lifecycle, oauth=oauth)


def build_slack_app(core: Soracast, settings: Settings, client: AsyncWebClient | None = None) -> AsyncApp:
    """The bolt `AsyncApp` with soracast's listeners; the same app serves Socket Mode and HTTP."""
    return build_slack_adapter(core, settings, client).app


def create_web_app(
    core: Soracast, settings: Settings, adapter: SlackAdapter, extra_routes: Sequence[web.RouteDef] = ()
) -> web.Application:
    """What `soracast web` serves with Slack: `POST /slack/events` (see `adapters.slack.door` for what is checked,
    in which order), the install routes in OAuth mode, the core's webhooks and `/healthz` (`bot.web.web_app`), plus
    `extra_routes`."""
    signing_secret = _secret(
        settings.slack_signing_secret, "SLACK_SIGNING_SECRET", "HTTP mode checks every request with the signing secret."
    )
    door = SlackDoor(adapter.app, signing_secret, adapter.services.background.gate)
    install = oauth_routes(adapter.app.oauth_flow) if adapter.app.oauth_flow is not None else []
    return create_core_web_app(core, settings, [web.post(EVENTS_PATH, refusing(door)), *install, *extra_routes])


def _web_client(settings: Settings, http: aiohttp.ClientSession) -> AsyncWebClient:
    """A Web API client sharing one HTTP session, so calls reuse connections (and TLS) to Slack. In OAuth mode
    it has no token of its own: each workspace's client is made from it with that workspace's token."""
    if settings.slack_oauth:
        return AsyncWebClient(session=http, **_api_url(settings))
    token = _bot_token(settings)
    return AsyncWebClient(token=token, session=http, **_api_url(settings))


def _api_url(settings: Settings) -> dict[str, str]:
    """`base_url` for the Web API client when `SORACAST_SLACK_API_URL` names another than Slack's own."""
    return {"base_url": settings.slack_api_url + "/"} if settings.slack_api_url else {}


async def run_socket_mode(settings: Settings) -> None:
    """`soracast slack`: connect out to Slack over Socket Mode (no public URL needed)."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    app_token = _secret(
        settings.slack_app_token, "SLACK_APP_TOKEN", "Socket Mode needs an app-level token (xapp-…, connections:write)."
    )
    if settings.slack_oauth:
        raise ConfigError(
            "Socket Mode serves the one workspace of SLACK_BOT_TOKEN; SLACK_CLIENT_ID is set.",
            hint="Run `soracast web` for OAuth mode (many workspaces), or unset SLACK_CLIENT_ID.",
        )
    _bot_token(settings)
    core = await build_app(settings)
    http = aiohttp.ClientSession()
    adapter = build_slack_adapter(core, settings, _web_client(settings, http))
    handler = AsyncSocketModeHandler(adapter.app, app_token)
    try:
        await core.generations.resume(Platform.SLACK)
        core.departures.start_sweeping()
        await handler.connect_async()
        log.info("soracast is connected to Slack over Socket Mode")
        await wait_for_stop()
    finally:
        await handler.close_async()
        await adapter.aclose()
        await core.aclose()
        await http.close()


async def run_web(settings: Settings, extra_routes: Sequence[web.RouteDef] = ()) -> None:
    """`soracast web`: serve `/slack/events` (and `extra_routes`) on settings.host:settings.port."""
    _secret(
        settings.slack_signing_secret, "SLACK_SIGNING_SECRET", "HTTP mode checks every request with the signing secret."
    )
    _check_mode(settings)
    if settings.slack_oauth:
        OAuthConfig.from_settings(settings)  # every OAuth variable and the key, before anything opens
    else:
        _bot_token(settings)
    core = await build_app(settings)
    http = aiohttp.ClientSession()
    adapter = build_slack_adapter(core, settings, _web_client(settings, http))
    runner = app_runner(create_web_app(core, settings, adapter, extra_routes))
    try:
        await core.generations.resume(Platform.SLACK)
        core.departures.start_sweeping()
        await serve(runner, settings, f"Slack at {EVENTS_PATH} and the video webhooks")
    finally:
        await runner.cleanup()
        await adapter.aclose()
        await core.aclose()
        await http.close()

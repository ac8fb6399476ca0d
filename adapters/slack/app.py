"""Wiring the Slack app (slack-bolt `AsyncApp`) to the core, and its two run modes: Socket Mode and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
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
from adapters.slack.notifier import SlackNotifier
from adapters.slack.replies import ActorDirectory, Replier
from adapters.slack.services import Services
from bot.app import Soracast, build_app, settle_after_start_up
from bot.config import Settings
from bot.errors import ConfigError
from bot.http_door import app_runner, refusals, refusing
from bot.models import Platform
from bot.provider_webhooks import ProviderWebhooks
from bot.webhooks import webhook_route

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
#: Where extra routes (the Videos API webhook) find the core: `request.app[CORE_KEY]`.
CORE_KEY = web.AppKey("soracast_core", Soracast)


def _secret(value: SecretStr | None, env: str, why: str) -> str:
    if value is None or not value.get_secret_value():
        raise ConfigError(f"{env} is not set.", hint=f"{why} See adapters/slack/README.md.")
    return value.get_secret_value()


@dataclass
class SlackAdapter:
    """The bolt app plus what tests and the run modes need to reach: its background jobs and notifier."""

    app: AsyncApp
    services: Services

    async def drain(self) -> None:
        """Wait for the work started after acks (tests and graceful shutdown)."""
        await self.services.background.drain()

    async def aclose(self) -> None:
        await self.services.background.aclose()


def build_slack_adapter(core: Soracast, settings: Settings, client: AsyncWebClient | None = None) -> SlackAdapter:
    """Create the bolt app, register every listener and the Slack notifier with the core."""
    token = _secret(settings.slack_bot_token, "SLACK_BOT_TOKEN", "The bot token (xoxb-…) is needed to talk to Slack.")
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    client = client or AsyncWebClient(token=token, **_api_url(settings))
    # Every listener acks and hands its work to `Background` before returning, so bolt may run listeners inline
    # (process_before_response) and answer when they return: no per-request polling for the ack.
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
        name="soracast",
        # A request no listener takes goes to `on_bolt_error` (one log line) instead of bolt's multi-line hint.
        raise_error_for_unhandled_request=True,
    )
    app.use(envelope_middleware)
    app.error(on_bolt_error)
    replier = Replier(client)
    notifier = SlackNotifier(client, core.generations)
    services = Services(
        core=core,
        client=client,
        notifier=notifier,
        replier=replier,
        actors=ActorDirectory(client),
        files=FileFetcher(client, core.registry.limits, settings.resolved_media_dir / "slack-incoming"),
        background=Background(replier),
        stills=StillUploads(client),
    )
    SlashCommands(services).register(app)
    Interactions(services).register(app)
    core.generations.register_notifier(Platform.SLACK, notifier)
    settle_after_start_up()
    return SlackAdapter(app=app, services=services)


def build_slack_app(core: Soracast, settings: Settings, client: AsyncWebClient | None = None) -> AsyncApp:
    """The bolt `AsyncApp` with soracast's listeners; the same app serves Socket Mode and HTTP."""
    return build_slack_adapter(core, settings, client).app


def create_web_app(
    core: Soracast, settings: Settings, adapter: SlackAdapter, extra_routes: Sequence[web.RouteDef] = ()
) -> web.Application:
    """What `soracast web` serves: `POST /slack/events` (see `adapters.slack.door` for what is checked, in
    which order), `POST /webhooks/openai` (see `bot.webhooks`), `POST /webhooks/gemini` and
    `POST /webhooks/fal/{generation id}` (see `bot.provider_webhooks`), `GET /healthz`, plus `extra_routes`.
    Every refusal, aiohttp's own 404/405/413 included, is one 4xx and one log line."""
    signing_secret = _secret(
        settings.slack_signing_secret, "SLACK_SIGNING_SECRET", "HTTP mode checks every request with the signing secret."
    )
    door = SlackDoor(adapter.app, signing_secret, adapter.services.background.gate)
    webhook_secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else None

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "offline": settings.use_offline})

    provider_webhooks = ProviderWebhooks(settings, core.storage, core.generations)

    async def close_provider_webhooks(_app: web.Application) -> None:
        await provider_webhooks.aclose()

    web_app = web.Application(client_max_size=1024 * 1024, middlewares=[refusals])
    web_app.add_routes(
        [
            web.post(EVENTS_PATH, refusing(door)),
            webhook_route(webhook_secret, core.storage, core.generations),
            *provider_webhooks.routes(),
            web.get("/healthz", healthz),
            *extra_routes,
        ]
    )
    web_app.on_cleanup.append(close_provider_webhooks)
    web_app[CORE_KEY] = core
    return web_app


def _web_client(settings: Settings, http: aiohttp.ClientSession) -> AsyncWebClient:
    """A Web API client sharing one HTTP session, so calls reuse connections (and TLS) to Slack."""
    token = _secret(settings.slack_bot_token, "SLACK_BOT_TOKEN", "The bot token (xoxb-…) is needed to talk to Slack.")
    return AsyncWebClient(token=token, session=http, **_api_url(settings))


def _api_url(settings: Settings) -> dict[str, str]:
    """`base_url` for the Web API client when `SORACAST_SLACK_API_URL` names another than Slack's own."""
    return {"base_url": settings.slack_api_url + "/"} if settings.slack_api_url else {}


async def _wait_for_stop() -> None:
    """Until SIGTERM / SIGINT (a platform's shutdown), so jobs are left stored and resume next start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_socket_mode(settings: Settings) -> None:
    """`soracast slack`: connect out to Slack over Socket Mode (no public URL needed)."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    app_token = _secret(
        settings.slack_app_token, "SLACK_APP_TOKEN", "Socket Mode needs an app-level token (xapp-…, connections:write)."
    )
    _secret(settings.slack_bot_token, "SLACK_BOT_TOKEN", "The bot token (xoxb-…) is needed to talk to Slack.")
    core = await build_app(settings)
    http = aiohttp.ClientSession()
    adapter = build_slack_adapter(core, settings, _web_client(settings, http))
    handler = AsyncSocketModeHandler(adapter.app, app_token)
    try:
        await core.generations.resume(Platform.SLACK)
        await handler.connect_async()
        log.info("soracast is connected to Slack over Socket Mode")
        await _wait_for_stop()
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
    _secret(settings.slack_bot_token, "SLACK_BOT_TOKEN", "The bot token (xoxb-…) is needed to talk to Slack.")
    core = await build_app(settings)
    http = aiohttp.ClientSession()
    adapter = build_slack_adapter(core, settings, _web_client(settings, http))
    runner = app_runner(create_web_app(core, settings, adapter, extra_routes))
    try:
        await core.generations.resume(Platform.SLACK)
        await runner.setup()
        # Slack can send a burst at once (a busy channel, retries); the default backlog of 128 would drop some.
        await web.TCPSite(runner, settings.host, settings.port, backlog=1024).start()
        log.info("soracast listens on http://%s:%d%s", settings.host, settings.port, EVENTS_PATH)
        await _wait_for_stop()
    finally:
        await runner.cleanup()
        await adapter.aclose()
        await core.aclose()
        await http.close()

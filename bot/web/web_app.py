"""What `soracast web` serves for the core: the video providers' webhooks and `/healthz`, behind the same door.

A platform that is served over HTTP (Slack) adds its own routes; with no such platform configured, `soracast web`
still runs, serving only the webhooks — so a Discord-only deployment can take the webhooks Gemini, fal and
OpenAI-shape gateways send (`SORACAST_PUBLIC_URL`) instead of waiting for polls or for a lost create's webhook
that nobody would receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from aiohttp import web

from bot.app import Soracast, build_app
from bot.config import Settings
from bot.web.http_door import app_runner, refusals
from bot.web.provider_webhooks import ProviderWebhooks
from bot.web.webhooks import webhook_route

log = logging.getLogger(__name__)

#: Where routes find the core: `request.app[CORE_KEY]`.
CORE_KEY = web.AppKey("soracast_core", Soracast)
#: Slack can send a burst at once (a busy channel, retries); the default backlog of 128 would drop some.
LISTEN_BACKLOG = 1024


def create_core_web_app(
    core: Soracast, settings: Settings, routes: Sequence[web.RouteDef] = (), *, client_max_size: int = 1024 * 1024
) -> web.Application:
    """`POST /webhooks/openai` (see `bot.web.webhooks`), `POST /webhooks/gemini` and `POST /webhooks/fal/{generation
    id}` (see `bot.web.provider_webhooks`), `GET /healthz`, plus a platform's `routes`. Every refusal, aiohttp's own
    404/405/413 included, is one 4xx and one log line."""
    webhook_secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else None

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "offline": settings.use_offline})

    provider_webhooks = ProviderWebhooks(settings, core.storage, core.generations)

    async def close_provider_webhooks(_app: web.Application) -> None:
        await provider_webhooks.aclose()

    web_app = web.Application(client_max_size=client_max_size, middlewares=[refusals])
    web_app.add_routes(
        [
            *routes,
            webhook_route(webhook_secret, core.storage, core.generations),
            *provider_webhooks.routes(),
            web.get("/healthz", healthz),
        ]
    )
    web_app.on_cleanup.append(close_provider_webhooks)
    web_app[CORE_KEY] = core
    return web_app


async def serve(runner: web.AppRunner, settings: Settings, what: str) -> None:
    """Start `runner` on settings.host:settings.port and serve until SIGTERM / SIGINT."""
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port, backlog=LISTEN_BACKLOG).start()
    log.info("soracast listens on http://%s:%d (%s)", settings.host, settings.port, what)
    await wait_for_stop()


async def wait_for_stop() -> None:
    """Until SIGTERM / SIGINT (a platform's shutdown), so jobs are left stored and resume next start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_webhooks_only(settings: Settings) -> None:
    """`soracast web` where no platform is served over HTTP: the providers' webhooks and `/healthz` only. A
    webhook wakes the process holding its job (the Discord worker) through storage."""
    core = await build_app(settings)
    runner = app_runner(create_core_web_app(core, settings))
    log.info("Slack is not configured (no SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN or SLACK_CLIENT_ID): serving only "
             "the video webhooks")
    try:
        await serve(runner, settings, "video webhooks")
    finally:
        await runner.cleanup()
        await core.aclose()

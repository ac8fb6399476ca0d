"""`soracast emulate`: one of the emulated APIs served over HTTP on this machine, for any client to use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.backends.offline.faults import FaultPlan
from bot.backends.offline.renderer import OfflineVideosAPI
from bot.config import Settings

log = logging.getLogger(__name__)

#: What `--api` may name, and the variable a client is pointed with.
APIS = {"openai": "OPENAI_BASE_URL", "gemini": "GOOGLE_GEMINI_BASE_URL", "fal": "SORACAST_FAL_QUEUE_URL"}


def emulator_app(
    api: str, offline: OfflineVideosAPI, faults: FaultPlan, api_key: str | None
) -> tuple[web.Application, str]:
    """The aiohttp application for `api`, and the path clients add to the origin for their base URL."""
    if api == "gemini":
        from bot.backends.offline.gemini_api import create_gemini_app

        return create_gemini_app(offline, faults=faults, api_key=api_key), ""
    if api == "fal":
        from bot.backends.offline.fal_api import create_fal_app

        return create_fal_app(offline, faults=faults, api_key=api_key), ""
    from bot.backends.offline.openai_api import create_emulator_app

    return create_emulator_app(offline, faults=faults, api_key=api_key), "/v1"


async def run_emulator(
    settings: Settings,
    *,
    api: str = "openai",
    host: str = "127.0.0.1",
    port: int = 8089,
    time_scale: float = 1.0,
    fail_rate: float = 0.0,
    lost_answer_rate: float = 0.0,
    rate_limit: float = 0.0,
    api_key: str | None = None,
    root: Path | None = None,
    on_ready: Callable[[str], object] | None = None,
    **offline_options: Any,
) -> None:
    """Serve the emulated `api` until cancelled. Binds 127.0.0.1 unless told otherwise.

    `api_key` None accepts any key; `root` defaults to `<data_dir>/emulator`; `offline_options` go to
    `OfflineVideosAPI` (e.g. `job_seconds`, `fps`, `render`). `on_ready(base_url)` is called once the port is
    bound (port 0 picks a free one).
    """
    if api not in APIS:
        raise ValueError(f"unknown API {api!r}: use one of {', '.join(APIS)}")
    offline = OfflineVideosAPI.from_settings(
        settings, root=root or settings.data_dir / "emulator", time_scale=time_scale, **offline_options
    )
    faults = FaultPlan(fail_rate=fail_rate, rate_limit=rate_limit, lost_answer_rate=lost_answer_rate)
    app, prefix = emulator_app(api, offline, faults, api_key)
    runner = web.AppRunner(app, access_log=log)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url = f"http://{bound_host}:{bound_port}{prefix}"
        log.info(
            "%s emulator at %s (time scale %g, fail rate %g, rate limit %s)",
            api,
            url,
            time_scale,
            fail_rate,
            f"{rate_limit:g}/s" if rate_limit else "off",
        )
        print(f"soracast emulator: serving the {api} API at {url}  ({APIS[api]}={url})", flush=True)
        if on_ready is not None:
            on_ready(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await offline.aclose()

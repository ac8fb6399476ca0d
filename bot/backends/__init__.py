"""Video backends: one package per provider, each behind `bot.backends.base.VideoBackend`.

`open_backends(settings)` opens every backend that has a key, or the offline renderer alone when no key is set
(or the operator asks for it). Providers are imported only when configured, so a deleted backend package
breaks nothing but the choice of it.
"""

from __future__ import annotations

import logging

from bot.backends.base import VideoBackend
from bot.config import BackendChoice, Settings
from bot.errors import ConfigError

log = logging.getLogger(__name__)

#: The variable each live backend needs.
KEY_VARIABLES = {
    BackendChoice.OPENAI: "OPENAI_API_KEY",
    BackendChoice.GEMINI: "GEMINI_API_KEY",
    BackendChoice.FAL: "FAL_KEY",
}


def has_key(settings: Settings, choice: BackendChoice) -> bool:
    """Whether the variable `choice` needs is set (and not empty)."""
    key = {
        BackendChoice.OPENAI: settings.openai_api_key,
        BackendChoice.GEMINI: settings.gemini_api_key,
        BackendChoice.FAL: settings.fal_key,
    }.get(choice)
    return key is not None and bool(key.get_secret_value())


def open_live(settings: Settings, choice: BackendChoice) -> VideoBackend:
    """The live backend `choice`, from the settings (its package imported only now)."""
    if choice is BackendChoice.OPENAI:
        from bot.backends.openai.backend import OpenAIBackend
        from bot.backends.openai.client import HTTPVideosAPI

        # The core's limiter handles 429s for every request to a backend at once (see bot/videos/limiter.py).
        return OpenAIBackend(HTTPVideosAPI.from_settings(settings, retry_rate_limits=False), settings)
    if choice is BackendChoice.GEMINI:
        from bot.backends.gemini.backend import GeminiBackend

        return GeminiBackend.from_settings(settings)
    if choice is BackendChoice.FAL:
        from bot.backends.fal.backend import FalBackend

        return FalBackend.from_settings(settings)
    raise AssertionError(choice)


async def open_backends(settings: Settings) -> tuple[dict[str, VideoBackend], str]:
    """Every configured backend by name, and the name of the one new jobs go to."""
    active = settings.active_backend
    if active is not BackendChoice.OFFLINE and not has_key(settings, active):
        raise ConfigError(f"SORACAST_BACKEND={active.value} needs {KEY_VARIABLES[active]} to be set.")
    opened: dict[str, VideoBackend] = {}
    if active is not BackendChoice.OFFLINE:
        # Every backend with a key stays open: jobs sent to one keep being tracked after the operator switches,
        # and its models stay selectable with --model.
        for choice in (BackendChoice.GEMINI, BackendChoice.FAL, BackendChoice.OPENAI):
            if has_key(settings, choice):
                opened[choice.value] = open_live(settings, choice)
    else:
        from bot.backends.offline.backend import open_offline_backend

        reason = (
            "SORACAST_OFFLINE is set"
            if settings.offline
            else "SORACAST_BACKEND=offline"
            if settings.backend is BackendChoice.OFFLINE
            else "no video API key is set"
        )
        log.warning(
            "%s: using the built-in offline renderer with %s's rules (videos are made locally)",
            reason,
            settings.offline_as.value,
        )
        opened["offline"] = await open_offline_backend(settings)
    return opened, active.value

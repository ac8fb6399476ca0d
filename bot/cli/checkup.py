"""`soracast check`: each configured backend asked, with the cheapest calls its provider offers, whether its key,
its endpoint and its models work — no video is made — and which backend and model new videos would use, and why.

Every backend with a key is checked (all of them stay open when the bot runs). With no key, the offline
renderer is: its check runs the played backend's own client against the local emulator. A problem is one line
that says what to fix; any problem makes the command fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.backends import KEY_VARIABLES, has_key, open_live
from bot.backends.base import BackendCheck, VideoBackend
from bot.backends.catalog import ModelCatalog
from bot.config import BackendChoice, Settings
from bot.errors import ConfigError

#: The order `SORACAST_BACKEND=auto` tries keys in.
AUTO_ORDER = (BackendChoice.GEMINI, BackendChoice.FAL, BackendChoice.OPENAI)
#: How each backend is named on the operator's screen.
TITLES = {"gemini": "Gemini", "fal": "fal", "openai": "OpenAI-shape gateway", "offline": "offline renderer"}
#: The variable listing each backend's models.
MODEL_VARIABLES = {
    "gemini": "SORACAST_GEMINI_MODELS",
    "fal": "SORACAST_FAL_MODELS",
    "openai": "SORACAST_ALLOWED_MODELS",
}


@dataclass
class Checkup:
    """What `soracast check` found: lines to show, and one line per problem."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def why_backend(settings: Settings) -> str:
    """Why new videos go where they go, in the operator's words."""
    if settings.offline:
        return "SORACAST_OFFLINE is set"
    if settings.backend is not BackendChoice.AUTO:
        return f"SORACAST_BACKEND={settings.backend.value}"
    for choice in AUTO_ORDER:
        if has_key(settings, choice):
            return (
                f"SORACAST_BACKEND=auto and {KEY_VARIABLES[choice]} is the first key set "
                "(tried in the order Gemini, fal, OpenAI-shape)"
            )
    return "SORACAST_BACKEND=auto and no video API key is set"


async def run_checkup(settings: Settings) -> Checkup:
    """Check every configured backend and say which one `auto` (or the setting) picks."""
    result = Checkup()
    active = settings.active_backend
    opened: dict[str, VideoBackend] = {}
    try:
        if active is not BackendChoice.OFFLINE and not has_key(settings, active):
            result.problems.append(f"SORACAST_BACKEND={active.value} needs {KEY_VARIABLES[active]} to be set.")
        for choice in AUTO_ORDER:
            if active is BackendChoice.OFFLINE or not has_key(settings, choice):
                continue
            try:
                opened[choice.value] = open_live(settings, choice)
            except ConfigError as exc:
                result.problems.append(f"{TITLES[choice.value]}: {exc.message}")
        if active is BackendChoice.OFFLINE:
            from bot.backends.offline.backend import open_offline_backend

            opened["offline"] = await open_offline_backend(settings)
        for name, backend in opened.items():
            _report(result, name, backend, await backend.check(), settings)
        _report_choice(result, settings, opened, active.value)
    finally:
        for backend in opened.values():
            await backend.aclose()
    return result


def _report(result: Checkup, name: str, backend: VideoBackend, check: BackendCheck, settings: Settings) -> None:
    title = TITLES.get(name, name)
    if name == "offline":
        title = f"offline renderer (playing {TITLES[settings.offline_as.value]}'s rules on this machine)"
    state = "ok" if check.ok else "PROBLEM"
    result.lines.append(f"{title} at {check.endpoint}: {state}")
    if check.models_available:
        result.lines.append(f"  models confirmed: {', '.join(check.models_available)}")
    result.lines.extend(f"  {note}" for note in check.notes)
    result.problems.extend(f"{TITLES.get(name, name)}: {problem}" for problem in check.problems)


def _report_choice(result: Checkup, settings: Settings, opened: dict[str, VideoBackend], active: str) -> None:
    why = why_backend(settings)
    if active not in opened:
        result.lines.append(f"New videos would go to {TITLES.get(active, active)} ({why}), which could not be opened.")
        return
    try:
        catalog = ModelCatalog(opened, active, settings)
        default = catalog.default_model()
    except ConfigError as exc:
        result.problems.append(exc.message)
        return
    source = (
        "SORACAST_DEFAULT_MODEL"
        if settings.default_model
        else f"the first of {MODEL_VARIABLES.get(active, 'its models')}"
        if active in MODEL_VARIABLES
        else "the first model it plays"
    )
    result.lines.append(f"New videos go to {TITLES.get(active, active)}: {why}.")
    result.lines.append(f"  default model: {default.model} ({source})")
    others = [c.model for _, c in catalog.offers() if c.model != default.model]
    if others:
        result.lines.append(f"  also offered with --model: {', '.join(others)}")

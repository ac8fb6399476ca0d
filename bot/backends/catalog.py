"""The models users may pick, across the open backends, and the checking of a request's options against them.

Every refusal here happens before anything is sent, and names what is allowed: `--seconds 20` on a model that
makes 3–10 s videos is told so, with the range, instead of meeting the provider's 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.backends.base import ModelCapabilities, VideoBackend, aspect_of, resolution_of
from bot.config import Settings
from bot.errors import ConfigError, InvalidInput
from bot.models import GenerationOptions

_SIZE = re.compile(r"(\d{2,5})\s*[x×*]\s*(\d{2,5})")
_RESOLUTION = re.compile(r"(\d{3,4}p|4k)")


@dataclass(frozen=True)
class OptionChoices:
    """What a chat platform may offer as fixed choices for /sora: (label, value) pairs, the default first."""

    models: list[tuple[str, str]]
    seconds: list[tuple[str, str]]
    sizes: list[tuple[str, str]]


@dataclass(frozen=True)
class Choice:
    """A request's options after defaults and checks: which backend, which model, how long, how big."""

    backend: VideoBackend
    caps: ModelCapabilities
    seconds: int
    size: str


def describe_durations(durations: Sequence[int]) -> str:
    """`3–10 s` for a run of whole seconds, `4, 8 or 12 s` otherwise."""
    values = sorted(durations)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}–{values[-1]} s"
    if len(values) == 1:
        return f"{values[0]} s"
    return ", ".join(str(v) for v in values[:-1]) + f" or {values[-1]} s"


def describe_size(size: str) -> str:
    """`1280x720 (16:9, 720p)`."""
    return f"{size} ({aspect_of(size)}, {resolution_of(size)})"


class ModelCatalog:
    """The open backends and their models; the default backend's models come first."""

    def __init__(self, backends: Mapping[str, VideoBackend], default: str, settings: Settings) -> None:
        if default not in backends:
            raise ValueError(f"default backend {default!r} is not open")
        self._backends = dict(backends)
        self._default = default
        self._settings = settings
        self._prices = dict(settings.prices)
        self._check_defaults()

    # --- what there is ----------------------------------------------------------------------------------

    @property
    def default_backend(self) -> VideoBackend:
        return self._backends[self._default]

    def backends(self) -> list[VideoBackend]:
        """Every open backend, the default first."""
        return [self.default_backend, *(b for n, b in self._backends.items() if n != self._default)]

    def backend(self, name: str) -> VideoBackend | None:
        """The open backend of that name (a generation records the one it was sent to)."""
        return self._backends.get(name)

    def offers(self) -> list[tuple[VideoBackend, ModelCapabilities]]:
        """Every model users may pick, with its backend; the default model first."""
        found: list[tuple[VideoBackend, ModelCapabilities]] = []
        for backend in self.backends():
            found.extend((backend, caps) for caps in backend.models())
        return found

    def model_names(self) -> list[str]:
        return [caps.model for _, caps in self.offers()]

    def default_model(self) -> ModelCapabilities:
        return self.find(self._settings.default_model)[1] if self._settings.default_model else self.offers()[0][1]

    def find(self, name: str) -> tuple[VideoBackend, ModelCapabilities]:
        """A model by id or alias (case-insensitive); InvalidInput naming the choices otherwise."""
        wanted = name.strip().lower()
        for backend, caps in self.offers():
            if wanted in (n.lower() for n in caps.names):
                return backend, caps
        raise InvalidInput(
            f"{name!r} is not a model this bot offers.", hint=f"Choose one of: {', '.join(self._model_list())}."
        )

    def capabilities_of(self, backend_name: str, model: str) -> ModelCapabilities | None:
        """The capabilities a stored generation was made under (None when that backend is no longer open)."""
        backend = self._backends.get(backend_name)
        if backend is None:
            return None
        return next((c for c in backend.models() if model in c.names), None)

    def option_choices(self) -> OptionChoices:
        """Every model, length and size any offered model makes (a pick the chosen model lacks is refused, named)."""
        offers = [caps for _, caps in self.offers()]
        default = self.default_model()
        models = [(f"{c.label} ({c.model})" if c.label and c.label != c.model else c.model, c.model) for c in offers]
        durations = sorted({d for c in offers for d in c.durations})
        sizes = list(dict.fromkeys([*default.sizes, *(s for c in offers for s in c.sizes)]))
        return OptionChoices(
            models=models,
            seconds=[(f"{d} s", str(d)) for d in durations],
            sizes=[(describe_size(s), s) for s in sizes],
        )

    # --- checking a request -----------------------------------------------------------------------------

    def resolve(self, options: GenerationOptions) -> Choice:
        """Model, length and size after defaults, each checked against what the model makes."""
        if options.model:
            backend, caps = self.find(options.model)
        else:
            caps = self.default_model()
            backend = self._backend_of(caps)
        seconds = self._seconds(caps, options.seconds)
        size = self._size(caps, options.size)
        return Choice(backend=backend, caps=caps, seconds=seconds, size=size)

    def check_seconds(self, caps: ModelCapabilities, raw: str, allowed: Sequence[int]) -> int:
        """Whole seconds from what a user typed (`8`, `8s`), or InvalidInput naming the allowed lengths."""
        text = raw.strip().lower().removesuffix("s").strip()
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value.is_integer() or int(value) not in allowed:
            raise InvalidInput(
                f"{caps.model} makes videos of {describe_durations(allowed)}; {raw.strip()!r} is not one of them.",
                hint=f"Use --seconds with {describe_durations(allowed)}.",
            )
        return int(value)

    def max_characters(self, caps: ModelCapabilities) -> int:
        """The most characters one video of this model may feature here (the model's cap and the operator's)."""
        ceiling = self._settings.max_characters_per_video
        return min(caps.max_characters, ceiling) if ceiling else caps.max_characters

    def price_per_second(self, caps: ModelCapabilities, size: str) -> float | None:
        """USD per second, the operator's price first (`model:720p`, then `model`), then the published one."""
        resolution = resolution_of(size)
        for name in caps.names:
            for key in (f"{name}:{resolution}", name):
                if key in self._prices:
                    return self._prices[key]
        return caps.price_for(size)

    # --- internals --------------------------------------------------------------------------------------

    def _backend_of(self, caps: ModelCapabilities) -> VideoBackend:
        return next(backend for backend, c in self.offers() if c is caps)

    def _model_list(self) -> list[str]:
        return [caps.model + (f" ({', '.join(caps.aliases)})" if caps.aliases else "") for _, caps in self.offers()]

    def _seconds(self, caps: ModelCapabilities, raw: str | None) -> int:
        if raw is None:
            configured = self._settings.default_seconds
            if configured and configured.strip().removesuffix("s").isdigit():
                if int(configured.strip().removesuffix("s")) in caps.durations:
                    return int(configured.strip().removesuffix("s"))
            return caps.default_duration
        return self.check_seconds(caps, raw, caps.durations)

    def _size(self, caps: ModelCapabilities, raw: str | None) -> str:
        if raw is None:
            configured = self._settings.default_size
            if configured and configured in caps.sizes:
                return configured
            return caps.default_size
        text = raw.strip().lower()
        match = _SIZE.fullmatch(text)
        if match:
            candidate = f"{int(match.group(1))}x{int(match.group(2))}"
            if candidate in caps.sizes:
                return candidate
        else:
            # `16:9` keeps the default resolution and `1080p` the default shape, where the model has that size.
            default_aspect, default_resolution = aspect_of(caps.default_size), resolution_of(caps.default_size)
            if text in caps.aspect_ratios:
                same = [s for s in caps.sizes if aspect_of(s) == text]
                return next((s for s in same if resolution_of(s) == default_resolution), same[0])
            if _RESOLUTION.fullmatch(text) and text in caps.resolutions:
                same = [s for s in caps.sizes if resolution_of(s) == text]
                return next((s for s in same if aspect_of(s) == default_aspect), same[0])
        shown = ", ".join(describe_size(s) for s in caps.sizes)
        raise InvalidInput(
            f"{caps.model} does not make {raw.strip()!r} videos.",
            hint=f"Use --size with one of: {shown}.",
        )

    def _check_defaults(self) -> None:
        s = self._settings
        try:
            caps = self.default_model()
        except InvalidInput:
            raise ConfigError(
                f"SORACAST_DEFAULT_MODEL: {s.default_model!r} is not offered; choose one of: "
                f"{', '.join(self.model_names())}"
            ) from None
        for name, value, allowed in (
            ("SORACAST_DEFAULT_SECONDS", s.default_seconds, [str(d) for d in caps.durations]),
            ("SORACAST_DEFAULT_SIZE", s.default_size, list(caps.sizes)),
        ):
            if value is not None and value.strip().removesuffix("s") not in allowed:
                raise ConfigError(f"{name}: {value!r} is not one of {caps.model}'s: {', '.join(allowed)}")

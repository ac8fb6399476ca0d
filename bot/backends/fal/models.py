"""The fal models soracast offers, per fal model id: what each makes and how a character reaches it.

Facts come from fal's model pages (`fal.ai/models/<id>/llms.txt`, the API reference) and the input types fal
publishes for its clients, read 2026-11-25 and again 2026-12-04 (`READ`). Sizes are what each model renders:
fal takes an aspect ratio (and for Vidu and Veo a resolution), never a frame size, so a size here names one
(aspect ratio, resolution) pair. Prices are USD per second as fal publishes them, for the request soracast
sends (audio off); where no price was published for the endpoint the table has none, and the operator may set
one with `SORACAST_PRICES`.

Ids are the ones fal documents today; `aliases` keep older names working, so settings, stored generations and
`--model` that name an id fal has since moved (Kling O1's `fal-ai/kling-video/o1/reference-to-video`) still
find the model.

Kling 4.0 (`kling/v4/reference-to-video`) is not offered: its page read 2026-12-04 says API access is "coming
soon" and does not show the fields of its elements, so there is nothing verified to build requests from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.backends.base import CharacterMode, ModelCapabilities
from bot.errors import ConfigError

READ = "2026-12-04"


class Wire(StrEnum):
    """How a model's request body carries characters and a duration."""

    #: Kling: `elements: [{frontal_image_url, reference_image_urls}]`, cited as `@Element1`; duration "5".
    KLING = "kling"
    #: Vidu Q3: `reference_image_urls` (1–4), `resolution`; duration as a whole number.
    VIDU = "vidu"
    #: Veo 3.1: `image_urls`, `resolution`; duration as "8s".
    VEO = "veo"


@dataclass(frozen=True)
class FalModel:
    """One fal endpoint: its capabilities for the core, and the facts its request body is built from."""

    caps: ModelCapabilities
    wire: Wire
    #: Longest prompt the model takes (checked before submitting).
    max_prompt_chars: int
    #: The field that switches the model's soundtrack, sent off (the prices are for silent videos).
    audio_field: str | None = None
    #: Images one Kling element carries: a front view and 1–3 more ("at least one is required").
    min_element_images: int = 2
    max_element_images: int = 4

    @property
    def id(self) -> str:
        return self.caps.model

    @property
    def label(self) -> str:
        return self.caps.label or self.caps.model

    @property
    def needs_reference(self) -> bool:
        """Whether the model refuses a request without a reference image (no @handle, no video)."""
        return self.wire is not Wire.KLING


def _sizes(resolutions: Sequence[int], aspects: Sequence[str]) -> tuple[str, ...]:
    frames = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1)}
    found = []
    for short in resolutions:
        for aspect in aspects:
            a, b = frames[aspect]
            long = short * max(a, b) // min(a, b)
            found.append(f"{long}x{short}" if a > b else f"{short}x{long}" if a < b else f"{short}x{short}")
    return tuple(found)


def _kling(
    model: str,
    aliases: tuple[str, ...],
    label: str,
    *,
    durations: range,
    short: int,
    price: dict[str, float],
    audio_field: str | None = None,
) -> FalModel:
    # Kling counts inputs, not stills: elements + image_urls + a start image ≤ 7 (≤ 4 with a video), and one
    # element is one input whatever number of stills it carries. soracast sends one element per character and
    # neither reference images, a start image nor a video, so up to 7 characters fit in one video.
    inputs = 7
    return FalModel(
        caps=ModelCapabilities(
            model=model,
            aliases=aliases,
            label=label,
            durations=tuple(durations),
            default_duration=5,
            sizes=_sizes([short], ["16:9", "9:16", "1:1"]),
            default_size=_sizes([short], ["16:9"])[0],
            character_mode=CharacterMode.ELEMENTS,
            max_characters=inputs,
            max_reference_images=4,
            max_inputs=inputs,
            max_inputs_with_video=4,
            price_per_second=price,
            price_source=(
                f"fal model page, read {READ}" if price else f"no price for this endpoint on fal's pages read {READ}"
            ),
        ),
        wire=Wire.KLING,
        max_prompt_chars=2500,
        audio_field=audio_field,
    )


_TABLE: tuple[FalModel, ...] = (
    _kling(
        "fal-ai/kling-video/o1/standard/reference-to-video",
        # The id soracast sent before fal documented the standard endpoint: settings and stored generations
        # that name it keep working.
        ("kling-o1", "fal-ai/kling-video/o1/reference-to-video"),
        "Kling O1 reference-to-video (standard)",
        durations=range(3, 11),
        short=720,
        price={},
    ),
    _kling(
        "fal-ai/kling-video/o3/standard/reference-to-video",
        ("kling-o3",),
        "Kling O3 reference-to-video (standard)",
        durations=range(3, 16),
        short=720,
        price={},
        audio_field="generate_audio",
    ),
    _kling(
        "fal-ai/kling-video/o3/pro/reference-to-video",
        ("kling-o3-pro",),
        "Kling O3 reference-to-video (pro)",
        durations=range(3, 16),
        short=1080,
        price={},
        audio_field="generate_audio",
    ),
    FalModel(
        caps=ModelCapabilities(
            model="fal-ai/vidu/q3/reference-to-video/mix",
            aliases=("vidu-q3",),
            label="Vidu Q3 reference-to-video (mix)",
            durations=tuple(range(1, 17)),
            default_duration=5,
            sizes=_sizes([720, 1080], ["16:9", "9:16", "1:1"]),
            default_size="1280x720",
            character_mode=CharacterMode.REFERENCES,
            max_characters=4,
            max_reference_images=4,
            # $0.07/s at 360p and 540p, 2.2 times that at 720p and 1080p.
            price_per_second={"720p": 0.154, "1080p": 0.154},
            price_source=f"fal model page, read {READ}",
        ),
        wire=Wire.VIDU,
        max_prompt_chars=2000,
        audio_field="audio",
    ),
    FalModel(
        caps=ModelCapabilities(
            model="fal-ai/veo3.1/reference-to-video",
            aliases=("veo-3.1",),
            label="Veo 3.1 reference-to-video",
            durations=(8,),
            default_duration=8,
            sizes=_sizes([720, 1080, 2160], ["16:9", "9:16"]),
            default_size="1280x720",
            character_mode=CharacterMode.REFERENCES,
            # Google's limit for asset references (fal's page states none).
            max_characters=3,
            max_reference_images=3,
            # Audio off: $0.20/s at 720p and 1080p, $0.40/s at 4k (with audio $0.40 and $0.60).
            price_per_second={"720p": 0.20, "1080p": 0.20, "4k": 0.40},
            price_source=f"fal model page, read {READ}",
        ),
        wire=Wire.VEO,
        max_prompt_chars=4000,
        audio_field="generate_audio",
    ),
)

#: Every model this table knows, by id.
KNOWN: dict[str, FalModel] = {m.id: m for m in _TABLE}


def find_model(name: str) -> FalModel | None:
    """A known model by fal id or short name (case-insensitive)."""
    wanted = name.strip().lower()
    return next((m for m in _TABLE if wanted in (n.lower() for n in m.caps.names)), None)


def fal_models(names: Sequence[str]) -> list[FalModel]:
    """The configured models (`SORACAST_FAL_MODELS`), in order; an unknown one stops start-up, named."""
    chosen: list[FalModel] = []
    for name in names:
        model = find_model(name)
        if model is None:
            known = ", ".join(f"{m.id} ({', '.join(m.caps.aliases)})" for m in _TABLE)
            raise ConfigError(
                f"SORACAST_FAL_MODELS: {name!r} is not a fal model soracast knows the limits of; use: {known}"
            )
        if model not in chosen:
            chosen.append(model)
    if not chosen:
        raise ConfigError("SORACAST_FAL_MODELS is empty: name at least one fal model.")
    return chosen

"""What each Gemini Omni Flash model makes, as Google's guide and pricing describe it (read 2026-11-25 and
2026-12-04; the second reading wins)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.backends.base import CharacterMode, ModelCapabilities

#: Frame sizes the Interactions API makes: 16:9 and 9:16 at 360p, 720p, 1080p and 4k.
SIZES = (
    "1280x720",
    "720x1280",
    "640x360",
    "360x640",
    "1920x1080",
    "1080x1920",
    "3840x2160",
    "2160x3840",
)

#: About $0.10 per second at 720p: video output tokens at $17.50 per million, ~5,800 tokens a second.
PRICE = {"720p": 0.10}
PRICE_SOURCE = "Gemini API pricing for Omni Flash video output (third-party copies), read 2026-11-25"

#: Seconds one `extend` call may add, for every Omni model (Google's guide, read 2026-12-04).
EXTEND_SECONDS = tuple(range(3, 11))
#: The model soracast (and google-genai since 3.1.0) picks when none is named.
DEFAULT_MODEL = "gemini-omni-1.2-flash"


@dataclass(frozen=True)
class OmniModel:
    """One Omni model's published limits."""

    label: str
    aliases: tuple[str, ...]
    durations: tuple[int, ...]
    #: Reference stills and clips one request may carry. Google's own example sends more than three stills;
    #: the ceilings are the ones read for each model (an operator setting can lower them).
    max_images: int
    max_videos: int
    #: The longest a video may grow through extensions (None: no total was published for the model).
    max_total_seconds: int | None
    #: The longest uploaded (inline) source an edit or extension accepts (None: no cap was published).
    max_uploaded_source_seconds: int | None


MODELS: dict[str, OmniModel] = {
    "gemini-omni-1.2-flash": OmniModel(
        label="Gemini Omni 1.2 Flash",
        aliases=("omni-1.2",),
        durations=tuple(range(3, 16)),
        max_images=6,
        max_videos=3,
        max_total_seconds=30,
        max_uploaded_source_seconds=None,
    ),
    "gemini-omni-1.1-flash": OmniModel(
        label="Gemini Omni 1.1 Flash",
        aliases=("omni-1.1",),
        durations=tuple(range(3, 11)),
        max_images=7,
        max_videos=3,
        max_total_seconds=None,
        max_uploaded_source_seconds=10,
    ),
}


def omni_model(name: str) -> OmniModel:
    """The published limits of a model; one this table does not know gets 1.1's (the GA model's)."""
    return MODELS.get(name, MODELS["gemini-omni-1.1-flash"])


def gemini_models(
    names: list[str], *, max_images: int | None = None, max_videos: int | None = None
) -> list[ModelCapabilities]:
    """Capabilities of the configured models; `max_images` / `max_videos` lower every model's own ceiling."""
    found = []
    for name in names:
        model = omni_model(name)
        images = min(model.max_images, max_images) if max_images else model.max_images
        videos = min(model.max_videos, max_videos) if max_videos is not None else model.max_videos
        found.append(
            ModelCapabilities(
                model=name,
                aliases=model.aliases if name in MODELS else (),
                label=model.label if name in MODELS else name,
                durations=model.durations,
                default_duration=6,
                sizes=SIZES,
                default_size="1280x720",
                character_mode=CharacterMode.REFERENCES,
                # Every character gets at least one still, so the image ceiling is the character ceiling.
                max_characters=images,
                max_reference_images=images,
                max_reference_videos=videos,
                max_reference_video_seconds=3.0,
                can_remix=True,
                can_extend=True,
                extend_durations=EXTEND_SECONDS,
                max_total_seconds=model.max_total_seconds,
                price_per_second=PRICE,
                price_source=PRICE_SOURCE,
            )
        )
    return found

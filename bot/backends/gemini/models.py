"""What each Gemini Omni Flash model makes, as Google's guide and pricing describe it (read 2026-11-25)."""

from __future__ import annotations

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

_DURATIONS = {
    "gemini-omni-1.1-flash": tuple(range(3, 11)),
    "gemini-omni-1.2-flash": tuple(range(3, 16)),
}
_LABELS = {
    "gemini-omni-1.1-flash": "Gemini Omni 1.1 Flash",
    "gemini-omni-1.2-flash": "Gemini Omni 1.2 Flash",
}
_ALIASES = {"gemini-omni-1.1-flash": ("omni-1.1",), "gemini-omni-1.2-flash": ("omni-1.2",)}


def gemini_models(names: list[str], *, max_images: int, max_videos: int) -> list[ModelCapabilities]:
    """Capabilities of the configured models; a model this table does not know gets 1.1's limits."""
    found = []
    for name in names:
        durations = _DURATIONS.get(name, _DURATIONS["gemini-omni-1.1-flash"])
        found.append(
            ModelCapabilities(
                model=name,
                aliases=_ALIASES.get(name, ()),
                label=_LABELS.get(name, name),
                durations=durations,
                default_duration=6,
                sizes=SIZES,
                default_size="1280x720",
                character_mode=CharacterMode.REFERENCES,
                # Every character gets at least one still, so the image ceiling is the character ceiling.
                max_characters=max_images,
                max_reference_images=max_images,
                max_reference_videos=max_videos,
                max_reference_video_seconds=3.0,
                can_remix=True,
                can_extend=True,
                price_per_second=PRICE,
                price_source=PRICE_SOURCE,
            )
        )
    return found

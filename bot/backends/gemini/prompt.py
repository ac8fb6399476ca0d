"""How characters ride along with a Gemini Omni request: reference parts, and the prompt that names them.

Each character gets its clip while reference-video slots remain, and the stills are dealt round-robin, best
first, until the image slots are used: one character gets three stills, three characters get one each. The
prompt keeps every character's name where the user wrote its @handle and opens with a line that ties each
name to its reference tags (`<VIDEO_REF_0>`, `<IMAGE_REF_0>`, numbered per kind in the order the parts are
sent), since the API reads roles from tags in the prompt, not from fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bot.backends.base import CharacterInput, VideoRequest, name_prompt, standing_instructions


@dataclass
class CharacterParts:
    """The references one character gets in one request."""

    character: CharacterInput
    clip: Path | None = None
    stills: list[Path] = field(default_factory=list)


def allocate(characters: list[CharacterInput], max_images: int, max_videos: int) -> list[CharacterParts]:
    """Share the request's reference slots fairly between its characters, in order of mention."""
    parts = [CharacterParts(c) for c in characters]
    videos = max_videos
    for part in parts:
        if videos > 0 and part.character.clip is not None:
            part.clip = part.character.clip
            videos -= 1
    images = max_images
    depth = 0
    while images > 0 and any(depth < len(p.character.stills) for p in parts):
        for part in parts:
            if images > 0 and depth < len(part.character.stills):
                part.stills.append(part.character.stills[depth])
                images -= 1
        depth += 1
    return parts


def compose(request: VideoRequest, parts: list[CharacterParts], *, video_offset: int = 0) -> str:
    """The prompt Gemini gets: a line naming each character's references, then the user's words with names.

    `video_offset` counts video parts sent before the characters' (the source video of an edit or extension).
    """
    text = name_prompt(request)
    lines = []
    video_index, image_index = video_offset, 0
    for part in parts:
        tags = []
        if part.clip is not None:
            tags.append(f"<VIDEO_REF_{video_index}>")
            video_index += 1
        for _ in part.stills:
            tags.append(f"<IMAGE_REF_{image_index}>")
            image_index += 1
        if tags:
            lines.append(f"{part.character.name} is the character shown in {' '.join(tags)}.")
    # Standing instructions go with the line that ties each name to its references.
    rules = standing_instructions([p.character for p in parts], lambda c: c.name)
    if rules:
        lines.append(rules)
    if not lines:
        return text
    return " ".join(lines) + "\n\n" + text

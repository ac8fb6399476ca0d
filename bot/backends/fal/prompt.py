"""The prompt a fal model reads: each @handle cited as `@Element1` for Kling, or named for the others.

Kling reference-to-video reads `@Element1`, `@Element2` … (and `@Image1`, `@Video1`) in the prompt as citations
of the request's elements, numbered in the order they are sent. soracast sends one element per character in
order of first mention, so every mention of `@mascot` becomes the same `@ElementN`. Text the user wrote that
merely looks like a citation — `team@Element1`, `@@Image2`, which are not @handles — would be read by Kling as
one, pointing at the wrong character or at nothing; its `@` is dropped so that it stays words. The user's own
prompt is kept unchanged for the reply; only what fal reads is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.backends.base import CharacterInput, VideoRequest, with_instructions

#: What Kling reads as a citation of a request's element, image or video (any case, to be safe).
_CITATION = re.compile(r"@(?=(?:element|image|video)\d)", re.IGNORECASE)


def defuse_citations(text: str) -> str:
    """`text` with the `@` of anything Kling would read as a citation removed (`@Element1` → `Element1`)."""
    return _CITATION.sub("", text)


def element_prompt(request: VideoRequest, order: Sequence[str]) -> str:
    """The prompt with each @handle as `@ElementN`, N its place in `order` (handles, in the order sent)."""
    numbers = {handle: index for index, handle in enumerate(order, 1)}
    pieces: list[str] = []
    cursor = 0
    for mention in sorted(request.mentions, key=lambda m: m.start):
        number = numbers.get(mention.handle)
        if number is None:
            continue
        pieces.append(defuse_citations(request.prompt[cursor : mention.start]))
        pieces.append(f"@Element{number}")
        cursor = mention.end
        # A citation must end where the handle ended: `@Element1` followed by a digit would cite another.
        if request.prompt[cursor : cursor + 1].isalnum():
            pieces.append(" ")
    pieces.append(defuse_citations(request.prompt[cursor:]))
    return "".join(pieces).strip()


def add_instructions(prompt: str, characters: Sequence[CharacterInput], *, elements: bool) -> str:
    """The characters' standing instructions after the prompt: Kling reads each character as its `@ElementN`
    (numbered in the order sent, like the prompt's citations), the other models by name. Nothing in them is left
    for Kling to read as a citation."""
    if not elements:
        return with_instructions(prompt, characters, lambda c: c.name)
    numbers = {c.handle: index for index, c in enumerate(characters, 1)}
    defused = [c.model_copy(update={"instructions": defuse_citations(c.instructions)}) for c in characters]
    return with_instructions(prompt, defused, lambda c: f"@Element{numbers[c.handle]}")

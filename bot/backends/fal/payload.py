"""The body of a fal submit: which stills each character sends, the checks fal would fail, the JSON itself.

Stills travel as base64 data URIs inside the submit, not as uploads to fal's storage: a character's stills
are a few small JPEGs (7 at most per request), so inlining them costs one request instead of an upload per
still to two more hosts (`rest.fal.ai`, `v3.fal.media`), leaves no copies in fal's storage after the job,
and keeps the submit the only call that can reach fal — the one soracast sends exactly once.

Every limit is checked here, before anything is sent, with a message that names the model and the limit:
the images an element request may carry (Kling O1: 7 in total), the references a plain-image model needs
(Vidu and Veo take one to four stills and refuse none), the prompt length, and that fal's reference models
make new videos only.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.backends.base import CharacterInput, VideoRequest, aspect_of, name_prompt, resolution_of
from bot.backends.fal.models import FalModel, Wire
from bot.backends.fal.prompt import add_instructions, element_prompt
from bot.errors import InvalidInput, TooManyCharacters
from bot.models import GenerationKind


@dataclass
class CharacterStills:
    """The stills one character sends in one request, best first."""

    character: CharacterInput
    stills: list[Path] = field(default_factory=list)


@dataclass
class Plan:
    """What a request sends: the prompt fal reads and each character's stills."""

    prompt: str
    characters: list[CharacterStills]

    @property
    def image_count(self) -> int:
        return sum(len(c.stills) for c in self.characters)


def plan_request(model: FalModel, request: VideoRequest) -> Plan:
    """The prompt and stills for `request` on `model`, or InvalidInput saying which limit it breaks."""
    if request.kind is not GenerationKind.CREATE:
        raise InvalidInput(
            f"{model.label} makes new videos from references; it cannot {request.kind.value} a finished one.",
            hint="Describe the change in a new /sora prompt instead.",
        )
    for character in request.characters:
        if not character.stills:
            raise InvalidInput(
                f"@{character.handle} has no stills for {model.label} to work from.",
                hint=f"Register it again: `/character remove @{character.handle}`, then `/character add`.",
            )
    if model.wire is Wire.KLING:
        characters = _elements(model, request.characters)
        prompt = element_prompt(request, [c.character.handle for c in characters])
    else:
        characters = _references(model, request.characters)
        prompt = name_prompt(request)
    prompt = add_instructions(prompt, [c.character for c in characters], elements=model.wire is Wire.KLING)
    if len(prompt) > model.max_prompt_chars:
        raise InvalidInput(
            f"{model.label} takes prompts of at most {model.max_prompt_chars:,} characters; this one is "
            f"{len(prompt):,} as sent.",
            hint="Shorten it and try again.",
        )
    return Plan(prompt=prompt, characters=characters)


def _elements(model: FalModel, characters: list[CharacterInput]) -> list[CharacterStills]:
    """A front view for every character, then more stills in turns until the model's image total is used."""
    budget = model.caps.max_total_images
    needed = sum(min(model.min_element_images, len(c.stills)) for c in characters)
    if needed > budget:
        raise TooManyCharacters(
            f"{model.label} takes at most {budget} images per video, and each character needs a front view and "
            f"at least one more still: {len(characters)} characters need {needed}.",
            hint=f"Use at most {budget // model.min_element_images} @handles with this model.",
        )
    return _deal(characters, budget)


def _references(model: FalModel, characters: list[CharacterInput]) -> list[CharacterStills]:
    """Stills dealt in turns, best first, up to the model's reference limit; one per character at least."""
    budget = model.caps.max_reference_images
    if not characters and model.needs_reference:
        raise InvalidInput(
            f"{model.label} makes videos from reference pictures, and this prompt has no @handle.",
            hint="Mention a character (e.g. `@mascot`), or choose a Kling model with --model.",
        )
    if len(characters) > budget:
        raise TooManyCharacters(
            f"{model.label} takes at most {budget} reference images, one per character at least; this prompt "
            f"has {len(characters)} characters.",
            hint=f"Use at most {budget} @handles with this model.",
        )
    return _deal(characters, budget)


def _deal(characters: list[CharacterInput], budget: int) -> list[CharacterStills]:
    dealt = [CharacterStills(c) for c in characters]
    depth = 0
    while budget > 0 and any(depth < len(d.character.stills) for d in dealt):
        for entry in dealt:
            if budget > 0 and depth < len(entry.character.stills):
                entry.stills.append(entry.character.stills[depth])
                budget -= 1
        depth += 1
    return dealt


def data_uri(path: Path) -> str:
    """A still as a `data:` URI (read from disk: call it in a worker thread)."""
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def build_arguments(model: FalModel, request: VideoRequest, plan: Plan, prompt: str) -> dict[str, Any]:
    """The JSON body of the submit (reads the stills: call it in a worker thread)."""
    arguments: dict[str, Any] = {"prompt": prompt, "aspect_ratio": aspect_of(request.size)}
    if model.wire is Wire.KLING:
        arguments["duration"] = str(request.seconds)
        elements = [
            {
                "frontal_image_url": data_uri(entry.stills[0]),
                "reference_image_urls": [data_uri(still) for still in entry.stills[1:]],
            }
            for entry in plan.characters
        ]
        if elements:
            arguments["elements"] = elements
    elif model.wire is Wire.VIDU:
        arguments["duration"] = request.seconds
        arguments["resolution"] = resolution_of(request.size)
        arguments["reference_image_urls"] = [data_uri(s) for entry in plan.characters for s in entry.stills]
    else:
        arguments["duration"] = f"{request.seconds}s"
        arguments["resolution"] = resolution_of(request.size)
        arguments["image_urls"] = [data_uri(s) for entry in plan.characters for s in entry.stills]
    if model.audio_field:
        # Sound costs more (Veo: twice as much) and the price table is for silent videos.
        arguments[model.audio_field] = False
    return arguments

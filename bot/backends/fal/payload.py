"""The body of a fal submit: which stills each character sends, the checks fal would fail, the JSON itself.

Stills travel as URLs on fal's CDN (uploaded once per still and account, see `backend.py`): fal's docs say URLs
work with every model and data URIs only with some, and none of the pages of the models soracast offers says
it takes them.

Every limit is checked here, before anything is uploaded or sent, with a message that names the model and the
limit: the inputs a Kling request may carry (elements + reference images + a start image ≤ 7; one element is
one input however many stills it has), the stills an element needs (a front view and at least one more), the
references a plain-image model needs (Vidu and Veo take one to four stills and refuse none), the prompt length,
and that fal's reference models make new videos only.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def stills(self) -> list[tuple[CharacterInput, Path]]:
        """Every still the request sends, with its character, in the order sent."""
        return [(entry.character, still) for entry in self.characters for still in entry.stills]


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


def count_inputs(elements: int, images: int = 0, start_image: bool = False) -> int:
    """Kling's inputs as Kling counts them: one per element (whatever its stills), image and start image."""
    return elements + images + int(start_image)


def _elements(model: FalModel, characters: list[CharacterInput]) -> list[CharacterStills]:
    """One element per character: its best still as the front view, then up to three more."""
    limit = model.caps.max_inputs
    used = count_inputs(len(characters))
    if used > limit:
        raise TooManyCharacters(
            f"{model.label} takes at most {limit} inputs per video (elements, reference images and a start "
            f"frame together; each character is one element): this prompt has {used} characters.",
            hint=f"Use at most {limit} @handles with this model.",
        )
    for character in characters:
        if len(character.stills) < model.min_element_images:
            raise InvalidInput(
                f"@{character.handle} has one still; a {model.label} element needs a front view and at least one "
                "more.",
                hint=f"Register it again from a clip with more to see: `/character remove @{character.handle}`, "
                "then `/character add`.",
            )
    return [CharacterStills(c, c.stills[: model.max_element_images]) for c in characters]


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


def build_arguments(model: FalModel, request: VideoRequest, plan: Plan, prompt: str, urls: Mapping[Path, str]) -> dict[
    str, Any
]:
    """The JSON body of the submit, each still given by the URL fal reads it from (`urls`)."""
    arguments: dict[str, Any] = {"prompt": prompt, "aspect_ratio": aspect_of(request.size)}
    if model.wire is Wire.KLING:
        arguments["duration"] = str(request.seconds)
        elements = [
            {
                "frontal_image_url": urls[entry.stills[0]],
                "reference_image_urls": [urls[still] for still in entry.stills[1:]],
            }
            for entry in plan.characters
        ]
        if elements:
            arguments["elements"] = elements
    elif model.wire is Wire.VIDU:
        arguments["duration"] = request.seconds
        arguments["resolution"] = resolution_of(request.size)
        arguments["reference_image_urls"] = [urls[s] for entry in plan.characters for s in entry.stills]
    else:
        arguments["duration"] = f"{request.seconds}s"
        arguments["resolution"] = resolution_of(request.size)
        arguments["image_urls"] = [urls[s] for entry in plan.characters for s in entry.stills]
    if model.audio_field:
        # Sound costs more (Veo: twice as much) and the price table is for silent videos.
        arguments[model.audio_field] = False
    return arguments

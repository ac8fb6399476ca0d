"""Asking for a video: make one, remix or extend a finished one. Each request is checked (prompt, model,
characters, the person's place in line, the budget), stored, then sent at once or left to wait in the
line; and what a finished video offers to build on (its buttons, its extensions)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.actions import FINISHED_ACTIONS, VideoAction
from bot.backends.base import ModelCapabilities, VideoBackend
from bot.backends.catalog import Choice, describe_durations
from bot.characters.access import characters_in, check_use
from bot.characters.handles import resolve_prompt
from bot.characters.likeness import explain_refusal
from bot.errors import GenerationNotReady, HumanLikenessRefused, InvalidInput, LineFull, SoracastError
from bot.models import (
    Actor,
    Character,
    DeliveryTarget,
    Generation,
    GenerationKind,
    GenerationOptions,
    GenerationStatus,
    Scope,
)
from bot.videos.generations.state import ServiceState

log = logging.getLogger(__name__)


class VideoRequests(ServiceState):
    """Make, remix and extend: checked, stored, then sent or left in line (the runner's `send_now_if_free`)."""

    def resolve_options(self, options: GenerationOptions) -> Choice:
        """Backend, model, seconds and size after defaults, each checked against what the model makes."""
        return self._catalog.resolve(options)

    def _check_prompt(self, prompt: str) -> str:
        text = prompt.strip()
        if not text:
            raise InvalidInput("The prompt is empty.", hint="Describe the video, e.g. `@mascot surfing at sunset`.")
        if len(text) > self._settings.max_prompt_chars:
            raise InvalidInput(
                f"The prompt is {len(text)} characters; the limit is {self._settings.max_prompt_chars}.",
                hint="Shorten it and try again.",
            )
        return text

    async def generate(
        self,
        scope: Scope,
        actor: Actor,
        prompt: str,
        options: GenerationOptions,
        target: DeliveryTarget,
        *,
        announce: bool = False,
    ) -> Generation:
        """Resolve the prompt's @handles, persist the request, submit it and start tracking it.

        `announce`: the adapter will post a first message and record it with `attach_message`; until then (at
        most ANNOUNCE_WAIT) the tracker holds its reports, so a fast job never overtakes that message.
        """
        text = self._check_prompt(prompt)
        choice = self.resolve_options(options)
        characters = await self._registry.by_handle(scope)
        resolved = resolve_prompt(text, characters, self._catalog.max_characters(choice.caps), choice.caps.model)
        used = [characters[c.handle] for c in resolved.characters]
        check_use(used, actor)
        self._registry.check_usable(used, choice.caps)
        generation = Generation(
            scope=scope,
            requester_id=actor.id,
            prompt=text,
            api_prompt=resolved.text,
            characters=resolved.characters,
            backend=choice.backend.name,
            model=choice.caps.model,
            seconds=str(choice.seconds),
            size=choice.size,
            target=target,
        )
        return await self._admit(generation, announce, used)

    async def remix(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        prompt: str,
        target: DeliveryTarget,
        *,
        announce: bool = False,
    ) -> Generation:
        """A new video from a finished one, changed as the prompt says."""
        return await self._derive(
            scope, actor, generation_id, prompt, target, GenerationKind.REMIX, None, announce
        )

    async def extend(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        prompt: str,
        target: DeliveryTarget,
        seconds: str | None = None,
        *,
        announce: bool = False,
    ) -> Generation:
        """Continue a finished video by `seconds` more, as the prompt says."""
        return await self._derive(
            scope, actor, generation_id, prompt, target, GenerationKind.EXTEND, seconds, announce
        )

    async def _derive(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        prompt: str,
        target: DeliveryTarget,
        kind: GenerationKind,
        seconds: str | None,
        announce: bool,
    ) -> Generation:
        parent = await self._finished_parent(scope, generation_id)
        backend, caps = self.derivable(parent, kind)
        text = self._check_prompt(prompt)
        length = await self.runner.total_seconds(parent)
        if kind is GenerationKind.EXTEND:
            allowed = self._extensions_left(parent, caps, length)
            added = self._catalog.check_seconds(caps, seconds, caps.allowed_extensions()) if seconds else None
            if added is not None and added not in allowed:
                raise InvalidInput(
                    f"Video {parent.id} is {length} s long and {caps.label or caps.model} extends a video to "
                    f"{caps.max_total_seconds} s at most: {added} s more would make it {length + added} s.",
                    hint=f"Use --seconds with {describe_durations(allowed)}.",
                )
            seconds = str(added or min(allowed, key=lambda d: abs(d - int(parent.seconds))))
        else:
            # An edit keeps its source's length (the price is for that many seconds).
            seconds = str(length)
        characters = await self._registry.by_handle(scope)
        resolved = resolve_prompt(text, characters, self._catalog.max_characters(caps), caps.model)
        named = [characters[c.handle] for c in resolved.characters]
        # The source video carries its own characters into the new one: they must be the person's to use too.
        carried = await characters_in(self._storage, scope, [c.character_id for c in parent.characters])
        check_use([*named, *carried], actor)
        self._registry.check_usable(named, caps)
        generation = Generation(
            scope=scope,
            requester_id=actor.id,
            kind=kind,
            parent_id=parent.id,
            prompt=text,
            api_prompt=resolved.text,
            # The backend keeps the source's characters; recording them keeps the posted card truthful.
            characters=resolved.characters or parent.characters,
            backend=backend.name,
            model=parent.model,
            seconds=seconds or parent.seconds,
            size=parent.size,
            target=target,
        )
        return await self._admit(generation, announce, named or carried)

    @staticmethod
    def _extensions_left(parent: Generation, caps: ModelCapabilities, length: int) -> list[int]:
        """The lengths an extension of a `length`-second video may add, within the model's total."""
        allowed = list(caps.allowed_extensions())
        if caps.max_total_seconds is None:
            return allowed
        room = caps.max_total_seconds - length
        fitting = [d for d in allowed if d <= room]
        if not fitting:
            raise GenerationNotReady(
                f"Video {parent.id} is {length} s long; {caps.label or caps.model} extends a video to "
                f"{caps.max_total_seconds} s at most, so there is no room for {min(allowed)} s more.",
                hint="Make a new video with /sora instead.",
            )
        return fitting

    async def _admit(self, generation: Generation, announce: bool, used: Sequence[Character]) -> Generation:
        """Check the person's place in line and the budget, store the request, and send it or let it wait."""
        backend = self._catalog.backend(generation.backend)
        caps = self._catalog.capabilities_of(generation.backend, generation.model)
        assert backend is not None and caps is not None
        waiting = await self._storage.count_waiting(generation.scope, generation.requester_id)
        if waiting >= self._settings.max_queued_per_user:
            raise LineFull(
                f"You already have {waiting} videos waiting in line; {self._settings.max_queued_per_user} is the "
                "most one person may have waiting.",
                hint="The next one can join as soon as one of yours starts. `/sora queue` shows the line.",
            )
        # The characters' references are read (and native ids made) now: a problem is told before storing.
        request = await self.runner.build_request(generation, backend)
        generation.api_prompt = backend.compose_prompt(request)
        generation.cost_usd = self._budgets.estimate(caps, int(generation.seconds), generation.size).usd
        await self._budgets.reserve(generation)
        try:
            # Where the video appears, and the notes its characters' owners get, are stored first: an owner can
            # always find it (rows of a request that is then refused go with it; see `delete_generation`).
            await self._storage.add_appearances(generation.id, [c.id for c in used])
            await self.notices.expect(generation, used)
            await self._storage.save_generation(generation)
        except BaseException:
            await self._budgets.release(generation.id)
            raise
        if announce:
            self.runner.announce(generation.id)
        try:
            outcome = await self.runner.send_now_if_free(generation)
        except HumanLikenessRefused as exc:
            self.runner.announced(generation.id)
            raise explain_refusal(exc, used) from None
        except SoracastError:
            self.runner.announced(generation.id)
            raise
        if outcome is None:
            self.runner.wake_line(generation.backend)
        log.info("generation %s accepted (%s)", generation.id, outcome or "waiting in line")
        return await self._storage.get_generation(generation.id) or generation

    async def check_characters(self, scope: Scope, actor: Actor, generation_id: str) -> Generation:
        """Refuse, before a form opens, building on a video (remix, extend, a character cut from it) whose
        characters `actor` may not use; returns the video."""
        generation = await self.get(scope, generation_id)
        check_use(await characters_in(self._storage, scope, generation.character_ids), actor)
        return generation

    def derivable(self, parent: Generation, kind: GenerationKind) -> tuple[VideoBackend, ModelCapabilities]:
        """The backend and model a remix or extension of `parent` goes to, or why there is none."""
        backend = self._catalog.backend(parent.backend)
        caps = self._catalog.capabilities_of(parent.backend, parent.model)
        if backend is None or caps is None:
            raise GenerationNotReady(
                f"Video {parent.id} was made with {parent.model} on {parent.backend}, which this bot no longer uses.",
                hint="Make a new video with /sora instead.",
            )
        allowed = caps.can_remix if kind is GenerationKind.REMIX else caps.can_extend
        if not allowed:
            verb = "remix" if kind is GenerationKind.REMIX else "extend"
            raise GenerationNotReady(
                f"{caps.label or caps.model} cannot {verb} a finished video.",
                hint="Describe the change in a new /sora prompt instead.",
            )
        return backend, caps

    def can_derive(self, generation: Generation, kind: GenerationKind) -> bool:
        """Whether a Remix or Extend button should be offered for this video."""
        try:
            self.derivable(generation, kind)
        except GenerationNotReady:
            return False
        return True

    def offered_actions(self, generation: Generation) -> list[VideoAction]:
        """The buttons a video's message carries now: Cancel while it waits in line; once it is done, Remix and
        Extend (only where its backend can do them), Make character and Delete; none otherwise."""
        if generation.status is GenerationStatus.WAITING:
            return [VideoAction.CANCEL]
        if generation.status is not GenerationStatus.COMPLETED:
            return []
        wanted = {
            VideoAction.REMIX: self.can_derive(generation, GenerationKind.REMIX),
            VideoAction.EXTEND: self.can_derive(generation, GenerationKind.EXTEND),
        }
        return [action for action in FINISHED_ACTIONS if wanted.get(action, True)]

    def extend_choices(self, generation: Generation) -> list[int]:
        """The lengths an extension of `generation` may add (empty when it cannot be extended)."""
        caps = self._catalog.capabilities_of(generation.backend, generation.model)
        return list(caps.allowed_extensions()) if caps is not None and caps.can_extend else []

"""GenerationService: what a person can ask of a video — make, remix, extend, cancel, delete — and its state.

The order of a request is fixed: check it (prompt, model, characters, the person's place in line, the
workspace's budget), store it, then return to the adapter, which tells the user. It is sent at once when the
line is empty and the backend has room (so a refusal still reaches the person directly and leaves nothing
behind); otherwise it waits in the fair line. Everything after that — the line, leases, tracking, delivering
exactly once — is `bot.videos.jobs.JobRunner`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.actions import FINISHED_ACTIONS, VideoAction
from bot.backends.base import ModelCapabilities, VideoBackend
from bot.backends.catalog import Choice, ModelCatalog, describe_durations
from bot.characters.access import characters_in, check_use
from bot.characters.handles import resolve_prompt
from bot.characters.likeness import explain_refusal, require_rights
from bot.characters.owner_notices import OwnerNotices
from bot.characters.registry import CharacterRegistry
from bot.chat.notify import Notifier
from bot.config import Settings
from bot.errors import (
    APINotFound,
    GenerationNotReady,
    HumanLikenessRefused,
    InvalidInput,
    LineFull,
    PermissionDenied,
    SoracastError,
    UnknownGeneration,
    VideosAPIError,
)
from bot.models import (
    Actor,
    Character,
    CharacterSource,
    DeliveryTarget,
    Generation,
    GenerationKind,
    GenerationOptions,
    GenerationStatus,
    Platform,
    Scope,
    utcnow,
)
from bot.videos.budgets import Budgets
from bot.videos.jobs import JobRunner
from bot.videos.line import Place, fair_order, places
from storage.base import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineEntry:
    """One waiting video of a workspace and its place in its backend's line."""

    generation: Generation
    place: Place
    ahead_total: int


class GenerationService:
    """Everything a person asks of a video job, from the command to the posted result."""

    def __init__(
        self,
        storage: Storage,
        catalog: ModelCatalog,
        registry: CharacterRegistry,
        budgets: Budgets,
        settings: Settings,
        runner: JobRunner,
        notices: OwnerNotices,
    ) -> None:
        self._storage = storage
        self._catalog = catalog
        self._registry = registry
        self._budgets = budgets
        self._settings = settings
        self.runner = runner
        self.notices = notices
        runner.on_delivered = notices.wake

    # --- wiring ----------------------------------------------------------------------------------------

    def register_notifier(self, platform: Platform, notifier: Notifier) -> None:
        """Adapters call this once; generations of that platform are then reported through it."""
        self.runner.register_notifier(platform, notifier)

    async def resume(self, platform: Platform | None = None) -> int:
        """Start serving the registered platforms: take over their unfinished generations, run the line, and send
        the owners' notes that are due."""
        resumed = await self.runner.start(platform)
        self.notices.start()
        return resumed

    async def aclose(self) -> None:
        """Stop the line, the trackers and the owners' notes; all are taken up again on the next start."""
        await self.notices.aclose()
        await self.runner.aclose()

    # --- options ---------------------------------------------------------------------------------------

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

    # --- submitting ------------------------------------------------------------------------------------

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

    async def _finished_parent(self, scope: Scope, generation_id: str) -> Generation:
        parent = await self.get(scope, generation_id)
        if parent.status is not GenerationStatus.COMPLETED or parent.api_video_id is None:
            raise GenerationNotReady(
                f"Video {parent.id} is {parent.status.value.replace('_', ' ')}, not finished.",
                hint="Wait until it is posted, then try again.",
            )
        return parent

    # --- reading and changing ----------------------------------------------------------------------------

    async def get(self, scope: Scope, generation_id: str) -> Generation:
        """A generation of this scope; another scope's id is reported as unknown, never shown."""
        # Ids are shown in backticks; a copied id may keep them.
        generation = await self._storage.get_generation(generation_id.strip().strip("`").lower())
        if generation is None or generation.scope != scope:
            raise UnknownGeneration(
                f"There is no video {generation_id!r} in this workspace.",
                hint="Use the id shown under a posted video.",
            )
        return generation

    async def recent(self, scope: Scope, limit: int = 20) -> list[Generation]:
        return list(await self._storage.recent_generations(scope, limit))

    async def attach_message(self, generation_id: str, message_id: str | None, **extra: str) -> None:
        """Record the platform message that shows this generation (and adapter extras); None: none was posted.

        Either way the tracker stops holding its reports for the announcement.
        """
        try:
            generation = await self._storage.get_generation(generation_id)
            if generation is None or message_id is None:
                return
            merged = {**generation.target.extra, **extra}
            target = generation.target.model_copy(update={"message_id": message_id, "extra": merged})
            await self._storage.update_target(generation_id, target)
        finally:
            self.runner.announced(generation_id)

    async def remember(self, generation_id: str, **extra: str) -> None:
        """Store adapter state of a delivery before the step that could be repeated after a crash."""
        generation = await self._storage.get_generation(generation_id)
        if generation is None:
            return
        target = generation.target.model_copy(update={"extra": {**generation.target.extra, **extra}})
        await self._storage.update_target(generation_id, target)

    # --- the line ----------------------------------------------------------------------------------------

    async def line(self, scope: Scope) -> list[LineEntry]:
        """This workspace's waiting videos with their places in their backends' lines (best first)."""
        entries: list[LineEntry] = []
        for backend in self._catalog.backends():
            order = fair_order(
                await self._storage.waiting_generations(backend.name),
                await self._storage.in_flight_by_person(backend.name),
            )
            found = places(order, slots=self.runner.limiter(backend.name).max_in_flight, job_seconds=60.0)
            for generation in order:
                if generation.scope == scope:
                    entries.append(LineEntry(generation, found[generation.id], len(order)))
        return sorted(entries, key=lambda e: e.place.position)

    async def cancellable(self, scope: Scope, actor: Actor) -> list[LineEntry]:
        """The waiting videos of this workspace `actor` may cancel: their own, or every one for an admin."""
        return [e for e in await self.line(scope) if actor.is_admin or e.generation.requester_id == actor.id]

    async def cancel(self, scope: Scope, actor: Actor, generation_id: str) -> Generation:
        """Take a video out of the line (or out of the backend's own queue, where it can still be stopped);
        its requester or an admin only. Its reserved cost is given back."""
        generation = await self.get(scope, generation_id)
        if actor.id != generation.requester_id and not actor.is_admin:
            raise PermissionDenied("Only the person who asked for this video or an admin can cancel it.", hint=None)
        if generation.status is GenerationStatus.WAITING:
            if not await self._storage.cancel_waiting(generation.id):
                return await self.cancel(scope, actor, generation_id)  # it left the line meanwhile: look again
            await self._budgets.release(generation.id)
            self.runner.wake_line(generation.backend)
        elif generation.status is GenerationStatus.QUEUED and generation.api_video_id is not None:
            backend = self._catalog.backend(generation.backend)
            if backend is None:
                raise GenerationNotReady("This video's backend is no longer in use here.", hint=None)
            self.runner.stop_tracking(generation.id)
            await backend.cancel(generation.api_video_id)
            generation.status = GenerationStatus.CANCELLED
            generation.updated_at = utcnow()
            await self._storage.save_generation(generation)
            await self._budgets.refund(generation.id)
        elif generation.status.finished:
            # There is no /delete command: a posted video's Delete button is the way.
            done = generation.status is GenerationStatus.COMPLETED
            raise GenerationNotReady(
                f"Video {generation.id} is already {generation.status.value}.",
                hint="Use the Delete button under it instead." if done else None,
            )
        else:
            raise GenerationNotReady(
                f"Video {generation.id} is already being made and can no longer be cancelled.",
                hint="Delete it once it is posted.",
            )
        generation = await self.get(scope, generation_id)
        log.info("generation %s cancelled by %s", generation.id, actor.id)
        await self.runner.start()  # its message is updated (to "cancelled") by whoever leases it
        return generation

    async def stop_waiting(self, scope: Scope) -> list[str]:
        """Take every video of a workspace that left out of the line (nothing is sent for it any more); the ids.

        Their reserved cost is given back; each then ends like any cancelled video, through its platform's
        notifier, which says whether it can still be told.
        """
        stopped: list[str] = []
        for backend in self._catalog.backends():
            for generation in await self._storage.waiting_generations(backend.name):
                if generation.scope == scope and await self._storage.cancel_waiting(generation.id):
                    await self._budgets.release(generation.id)
                    stopped.append(generation.id)
            if stopped:
                self.runner.wake_line(backend.name)
        if stopped:
            log.info("%d waiting video(s) of %s taken out of the line: %s", len(stopped), scope.key, ", ".join(stopped))
            await self.runner.start()
        return stopped

    async def delete(self, scope: Scope, actor: Actor, generation_id: str) -> Generation:
        """Delete a video: its post in the chat, its file here and its copy at the backend (where it keeps one).
        Its requester, an admin, or the owner of a character it features may."""
        generation = await self.get(scope, generation_id)
        if actor.id != generation.requester_id and not actor.is_admin:
            owners = {c.owner_id for c in await characters_in(self._storage, scope, generation.character_ids)}
            if actor.id not in owners:
                raise PermissionDenied(
                    "Only the person who asked for this video, the owner of a character in it, or an admin can "
                    "delete it.",
                    hint=None,
                )
        self.runner.stop_tracking(generation.id)
        backend = self._catalog.backend(generation.backend)
        if generation.api_video_id and backend is not None:
            try:
                await backend.delete(generation.api_video_id)
            except APINotFound:
                pass
            except VideosAPIError as exc:
                log.warning("%s could not delete %s at the backend: %s", actor.id, generation.id, exc.code)
        for path in (generation.video_path, generation.thumbnail_path):
            if path is not None:
                path.unlink(missing_ok=True)
        was_waiting = generation.status is GenerationStatus.WAITING
        generation.status = GenerationStatus.DELETED
        generation.updated_at = utcnow()
        await self._storage.save_generation(generation)
        if was_waiting:
            await self._budgets.release(generation.id)
            self.runner.wake_line(generation.backend)
        messenger = self.runner.messenger(generation.platform)
        if messenger is not None:
            try:
                await messenger.remove_post(generation)
            except Exception as exc:
                log.warning("the post of deleted video %s could not be removed: %s", generation.id, type(exc).__name__)
        log.info("generation %s deleted by %s", generation.id, actor.id)
        return generation

    async def character_from_generation(
        self,
        scope: Scope,
        actor: Actor,
        generation_id: str,
        handle: str,
        *,
        name: str | None = None,
        start: float = 0.0,
        rights_confirmed: bool,
    ) -> Character:
        """The Sora app's "character from a video": cut a finished generation and register it. The video's own
        characters must be the person's to use (a cut of them is their likeness too)."""
        generation = await self._finished_parent(scope, generation_id)
        check_use(await characters_in(self._storage, scope, generation.character_ids), actor)
        require_rights(rights_confirmed)
        path = generation.video_path
        if path is None or not path.exists():
            path = await self._download(generation)
        return await self._registry.register(
            scope,
            actor,
            handle,
            path,
            name=name,
            start=start,
            source=CharacterSource.GENERATION,
            source_ref=generation.id,
            rights_confirmed=rights_confirmed,
        )

    async def wait_finished(self, generation_id: str, within: float | None = None) -> Generation:
        """Block until a generation is finished and its outcome delivered (for the console and tests)."""
        current = await self._storage.get_generation(generation_id)
        if current is None:
            raise UnknownGeneration(f"There is no video {generation_id!r}.")
        if not (current.status.finished and current.delivered_at is not None):
            await self.runner.wait_finished(generation_id, within)
        final = await self._storage.get_generation(generation_id)
        assert final is not None
        return final

    async def on_video_event(self, api_video_id: str) -> bool:
        """Handle a backend's webhook about a job: wake its tracker, here or in whichever process holds it."""
        generation = await self._storage.find_generation_by_video(api_video_id)
        if generation is None:
            return False
        await self._wake_holder(generation)
        return True

    async def on_provider_event(self, backend_name: str, provider_id: str, generation_id: str | None = None) -> bool:
        """Handle a provider's webhook about its job `provider_id`, which names soracast's generation where the
        provider carries it (Gemini's `user_metadata`, fal's URL path). A generation whose create's answer was
        lost is given that job here (after asking the provider that it exists and, where it can say, that it was
        made for this generation), then tracked as usual; the holder is woken to look at once. False when no
        generation of that backend is concerned.

        Raises a retryable `VideosAPIError` when the provider could not be asked (its webhook is retried)."""
        backend = self._catalog.backend(backend_name)
        if backend is None:
            return False
        generation = await self._storage.get_generation(generation_id) if generation_id else None
        if generation is None or generation.backend != backend_name:
            generation = await self._storage.find_generation_by_video(provider_id)
            if generation is None or generation.backend != backend_name:
                return False
        if generation.api_video_id is not None:
            if backend.provider_id_of(generation.api_video_id) != provider_id:
                # An earlier create of this generation made a job after all; the one soracast tracks is another.
                log.warning("a webhook names %s for %s, which tracks another job; ignored", provider_id[:80],
                            generation.id)
                return True
            await self._wake_holder(generation)
            return True
        if generation.status not in (GenerationStatus.SUBMITTING, GenerationStatus.ACCEPTED):
            return True
        await self._adopt(backend, generation, backend.job_id_of(provider_id, generation.model))
        return True

    async def _adopt(self, backend: VideoBackend, generation: Generation, job_id: str) -> None:
        """Give a generation whose create's answer was lost the job its webhook announced."""
        owner = await self._storage.find_generation_by_video(job_id)
        if owner is not None:
            if owner.id != generation.id:
                log.warning("a webhook gives %s the job of %s; ignored", generation.id, owner.id)
            return
        try:
            state = await self.runner.call(backend, lambda: backend.poll(job_id))
        except VideosAPIError as exc:
            if exc.retryable:
                raise
            log.warning("the job a webhook names for %s cannot be read (%s); not adopted", generation.id, exc.code)
            return
        if state.request_key is not None and state.request_key != generation.id:
            log.warning("the job a webhook names for %s was made for %s; not adopted", generation.id,
                        state.request_key[:40])
            return
        if await self._storage.adopt_job(generation.id, job_id):
            log.info("the lost create of %s had made %s (its webhook said so): adopted", generation.id, job_id[:120])
            await self._wake_holder(generation)

    async def _wake_holder(self, generation: Generation) -> None:
        if self.runner.wake(generation.id):
            return
        if generation.delivered_at is None:
            if await self.runner.take_over_if_dead(generation):
                return  # its holder died: this process looks at it now instead of after the lease runs out
            # Another process holds it (the Discord worker, say, for a webhook received by `web`): wake it there.
            self.runner.tell_holder(generation.id)
            if generation.platform in self.runner.platforms:
                await self.runner.start()  # …and take it up here if nobody holds it any more

"""A workspace's videos once asked for: the messages that show them, their places in line, and what their
people can do to them (cancel, delete, a character cut from one, wait until one is posted)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.characters.access import characters_in, check_use
from bot.characters.likeness import require_rights
from bot.errors import APINotFound, GenerationNotReady, PermissionDenied, UnknownGeneration, VideosAPIError
from bot.models import Actor, Character, CharacterSource, Generation, GenerationStatus, Scope, utcnow
from bot.videos.generations.state import ServiceState
from bot.videos.line import Place, fair_order, places

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineEntry:
    """One waiting video of a workspace and its place in its backend's line."""

    generation: Generation
    place: Place
    ahead_total: int


class VideoChanges(ServiceState):
    """Reads a workspace's videos and changes them at their people's word."""

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
        path = await self.runner.finished_video(generation)
        if path is None:
            raise GenerationNotReady(
                f"Video {generation.id} is no longer kept here or by {generation.backend}, so there is nothing to cut.",
                hint="Make a character from a newer video, or upload the clip itself.",
            )
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

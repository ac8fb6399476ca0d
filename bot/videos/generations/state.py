"""What every part of the generation service uses: its wiring, and finding a workspace's video (a finished
one, for what builds on it)."""

from __future__ import annotations

from bot.backends.catalog import ModelCatalog
from bot.characters.owner_notices import OwnerNotices
from bot.characters.registry import CharacterRegistry
from bot.config import Settings
from bot.errors import GenerationNotReady, UnknownGeneration
from bot.models import Generation, GenerationStatus, Scope
from bot.videos.budgets import Budgets
from bot.videos.jobs import JobRunner
from storage.base import Storage


class ServiceState:
    """The generation service's wiring, declared once, and the reads every part makes."""

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

    async def _finished_parent(self, scope: Scope, generation_id: str) -> Generation:
        parent = await self.get(scope, generation_id)
        if parent.status is not GenerationStatus.COMPLETED or parent.api_video_id is None:
            raise GenerationNotReady(
                f"Video {parent.id} is {parent.status.value.replace('_', ' ')}, not finished.",
                hint="Wait until it is posted, then try again.",
            )
        return parent

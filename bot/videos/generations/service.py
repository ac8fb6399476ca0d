"""GenerationService: the parts put together, with the adapters' notifiers and its start and stop."""

from __future__ import annotations

from bot.chat.notify import Notifier
from bot.models import Platform
from bot.videos.generations.changing import VideoChanges
from bot.videos.generations.provider_events import ProviderEvents
from bot.videos.generations.requesting import VideoRequests


class GenerationService(VideoRequests, VideoChanges, ProviderEvents):
    """Everything a person asks of a video job, from the command to the posted result."""

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

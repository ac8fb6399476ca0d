"""What the Slack listeners share: the core, the Web API client and the helpers around it, and the two flows
several ways in end in (register a clip from a Slack file, post a new generation)."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from adapters.slack.background import Background
from adapters.slack.files import FileFetcher, SlackFile, StillUploads
from adapters.slack.notifier import SlackNotifier
from adapters.slack.origin import Origin
from adapters.slack.replies import ActorDirectory, Replier
from adapters.slack.workspaces import WorkspaceClients
from bot.app import Soracast
from bot.errors import SoracastError
from bot.models import Generation


class SlackCannotPost(SoracastError):
    """The video was accepted but Slack would not let soracast post in the channel."""

    code = "slack_cannot_post"


@dataclass
class Services:
    """Everything a listener needs, assembled once in `adapters.slack.app`."""

    core: Soracast
    clients: WorkspaceClients
    notifier: SlackNotifier
    replier: Replier
    actors: ActorDirectory
    files: FileFetcher
    background: Background
    stills: StillUploads

    async def client(self, origin: Origin) -> AsyncWebClient:
        """The Web API client speaking for soracast in the origin's workspace."""
        return await self.clients.client(origin.workspace)

    async def register_clip(
        self,
        origin: Origin,
        file: SlackFile,
        handle: str,
        *,
        name: str | None = None,
        start: float = 0.0,
        rights_confirmed: bool,
    ) -> None:
        """Check, download and register a Slack file as `@handle` in the origin's workspace, then say so."""
        actor = await self.actors.get(origin)
        # Cheap refusals first: nothing is downloaded for a taken handle, someone who may not register, or a
        # registration whose right to use the subject was not confirmed.
        canonical = await self.core.registry.precheck(
            origin.scope, actor, handle, name, rights_confirmed=rights_confirmed
        )
        described = await self.files.describe(origin.workspace, file)
        self.files.check(described)
        await self.replier.ephemeral(origin, render.working_message(f"Registering @{canonical} from {described.name}…"))
        async with self.files.fetched(origin.workspace, described) as clip:
            character = await self.core.registry.register(
                origin.scope,
                actor,
                canonical,
                clip,
                name=name,
                start=start,
                source_ref=described.name,
                rights_confirmed=rights_confirmed,
            )
        await self.replier.ephemeral(origin, render.registered_message(character))

    async def post_generation(self, generation: Generation) -> None:
        """Post the progress message of a generation the core has accepted."""
        try:
            await self.notifier.post(generation)
        except SlackApiError as exc:
            raise SlackCannotPost(
                f"Video `{generation.id}` is being made, but Slack would not let soracast post here "
                f"({exc.response.get('error')}).",
                hint="Invite soracast to this channel with `/invite @soracast`; the video is posted here when done.",
            ) from None

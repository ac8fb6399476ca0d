"""What adapters implement for the core: the Notifier (a generation's messages) and the Messenger (private
messages to one person, and a posted video's link and removal)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.models import AccessRequest, Character, DeliveryReceipt, Generation, Scope


class DestinationGone(Exception):
    """Where a generation was to be posted is gone for good (the app was removed from that workspace, its token
    revoked): the core ends the job without posting it, with one log line, and never tries again."""


class Notifier(Protocol):
    """Implemented by each adapter; the core calls it, never the other way round.

    `progress` is already rate-bounded by the core. `completed` must post the video (or explain why it could
    not be attached) and return a receipt; raising means "not delivered", and the core will try again later —
    except `DestinationGone`, which ends the job quietly.
    """

    async def progress(self, generation: Generation) -> None: ...

    async def completed(self, generation: Generation) -> DeliveryReceipt: ...

    async def failed(self, generation: Generation) -> None: ...


@dataclass(frozen=True)
class VideoNotice:
    """One video someone else made with an owner's characters: what the owner's private note is about."""

    generation: Generation
    #: The owner's characters it features (handles as they are now).
    handles: tuple[str, ...]


@runtime_checkable
class Messenger(Protocol):
    """Private messages to one person, and what the core needs of a posted video. Each adapter's notifier
    implements it too; wording comes from `bot.chat.present`. A send returns False where the person cannot be
    reached privately (direct messages closed); raising means "try again later"."""

    async def ask_owner(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        """Ask a character's owner to approve or decline a request (Approve / Decline buttons)."""
        ...

    async def tell_requester(self, scope: Scope, request: AccessRequest, character: Character) -> bool:
        """Tell whoever asked what the owner decided."""
        ...

    async def tell_owner(self, scope: Scope, owner_id: str, notices: Sequence[VideoNotice]) -> bool:
        """Tell an owner about videos other people made with their characters (one, or a digest of many), each
        with a link to its post."""
        ...

    async def remove_post(self, generation: Generation) -> None:
        """Take a deleted video's post (and its uploaded file) out of the chat; best effort."""
        ...

"""The core's vocabulary: scopes, actors, characters and generations (pydantic models)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    """Timezone-aware now; every stored time is UTC."""
    return datetime.now(UTC)


class Platform(StrEnum):
    """Where a request came from and where its result goes back to."""

    DISCORD = "discord"
    SLACK = "slack"
    CONSOLE = "console"


class Scope(BaseModel):
    """A workspace whose characters are private to it: a Discord guild, a Slack team, a console user."""

    model_config = ConfigDict(frozen=True)

    platform: Platform
    id: str = Field(min_length=1, max_length=64)

    @property
    def key(self) -> str:
        """The one string storage keys everything of this workspace by."""
        return f"{self.platform.value}:{self.id}"

    @classmethod
    def from_key(cls, key: str) -> Scope:
        platform, _, ident = key.partition(":")
        return cls(platform=Platform(platform), id=ident)


class Actor(BaseModel):
    """Who is acting, as the adapter knows them; `is_admin` means Manage Server / workspace admin."""

    model_config = ConfigDict(frozen=True)

    id: str
    display_name: str = ""
    is_admin: bool = False
    role_ids: frozenset[str] = frozenset()


class CharacterSource(StrEnum):
    UPLOAD = "upload"
    GENERATION = "generation"


class ReferenceKind(StrEnum):
    """What a stored reference of a character is."""

    CLIP = "clip"
    STILL = "still"


class CharacterReference(BaseModel):
    """One stored reference of a character (its bytes live in storage, beside the character)."""

    model_config = ConfigDict(frozen=True)

    kind: ReferenceKind
    #: Order within its kind: the best still is 0.
    position: int = 0
    mime_type: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    #: Clips only.
    seconds: float | None = None

    @property
    def suffix(self) -> str:
        return ".mp4" if self.kind is ReferenceKind.CLIP else ".jpg"


class ReferenceBlob(BaseModel):
    """A reference with its bytes, as it goes into and comes out of storage."""

    reference: CharacterReference
    data: bytes = Field(repr=False)


class Sharing(StrEnum):
    """Who besides its owner (and admins, who always may) may use a character in their videos."""

    EVERYONE = "everyone"
    #: The people its owner approved (`Character.approved`).
    APPROVED = "approved"
    ONLY_ME = "only_me"


def new_character_id() -> str:
    """A stable id that survives renames: `c` + 12 hex characters."""
    return "c" + secrets.token_hex(6)


class HostedReference(BaseModel):
    """A reference file a provider account reads from a URL it hosts (fal's CDN), until `expires_at`."""

    #: Whose storage holds it (the backend names it: host and key fingerprint).
    account: str
    #: The reference's content hash: the same bytes are uploaded once per account, whatever character has them.
    sha256: str
    url: str
    expires_at: datetime

    def usable_until(self, moment: datetime) -> bool:
        """Whether the URL still serves the file at `moment`."""
        return self.expires_at > moment


class Character(BaseModel):
    """A registered @handle in one scope: its name and the references every backend builds on."""

    id: str = Field(default_factory=new_character_id)
    scope: Scope
    handle: str
    name: str
    owner_id: str
    source: CharacterSource = CharacterSource.UPLOAD
    #: The uploaded file's name, or the generation id a character was cut from.
    source_ref: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    #: The stored clip and stills (metadata; the bytes are read from storage when a backend needs them).
    references: list[CharacterReference] = Field(default_factory=list)
    #: Ids that backends' accounts gave this character, by the backend's account key.
    native_ids: dict[str, str] = Field(default_factory=dict)
    #: Who may use it (its owner and admins always may), and the people its owner approved.
    sharing: Sharing = Sharing.EVERYONE
    approved: list[str] = Field(default_factory=list)
    #: Standing instructions added to every prompt that uses it ("always wears the red scarf"); "" for none.
    instructions: str = ""
    #: Whether its owner is told privately when someone else's video uses it.
    notify_owner: bool = True
    #: Who confirmed, when registering it, having the right to use its subject, and when (None: registered
    #: before soracast asked).
    rights_confirmed_by: str | None = None
    rights_confirmed_at: datetime | None = None

    @property
    def clip(self) -> CharacterReference | None:
        return next((r for r in self.references if r.kind is ReferenceKind.CLIP), None)

    @property
    def stills(self) -> list[CharacterReference]:
        return sorted((r for r in self.references if r.kind is ReferenceKind.STILL), key=lambda r: r.position)

    @property
    def has_references(self) -> bool:
        """False for a character registered before soracast kept references and whose clip is gone."""
        return self.clip is not None


class BudgetKind(StrEnum):
    """The spending limits an admin can set for a workspace."""

    #: USD a workspace may spend in a calendar month (UTC).
    MONTHLY_USD = "monthly_usd"
    #: Seconds of video one person may ask for in a day (UTC).
    DAILY_SECONDS = "daily_seconds"


class ScopeSettings(BaseModel):
    """Per-workspace choices an admin makes (`/soracast config`, `/soracast limits`)."""

    scope: Scope
    #: When set, only members with this role (or admins) may register characters.
    register_role_id: str | None = None
    #: Limits set for this workspace: absent means the operator's default, None means no limit.
    budget: dict[BudgetKind, float | None] = Field(default_factory=dict)


class GenerationKind(StrEnum):
    CREATE = "create"
    REMIX = "remix"
    EXTEND = "extend"


class GenerationStatus(StrEnum):
    """Our lifecycle. Every request is stored before anything is sent, so a crash never loses one:
    `waiting` in soracast's line, `submitting` while its create is out (or its outcome is not known yet), then
    the backend's own states."""

    #: Stored by versions before the line existed: the create may or may not have been sent (like SUBMITTING).
    ACCEPTED = "accepted"
    WAITING = "waiting"
    SUBMITTING = "submitting"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DELETED = "deleted"

    @property
    def finished(self) -> bool:
        return self in _FINISHED

    @property
    def at_backend(self) -> bool:
        """Sent (or possibly sent) and not finished: it holds one of the backend's in-flight slots."""
        return self in _AT_BACKEND


_FINISHED = frozenset(
    {GenerationStatus.COMPLETED, GenerationStatus.FAILED, GenerationStatus.CANCELLED, GenerationStatus.DELETED}
)
_AT_BACKEND = frozenset(
    {GenerationStatus.ACCEPTED, GenerationStatus.SUBMITTING, GenerationStatus.QUEUED, GenerationStatus.IN_PROGRESS}
)


class DeliveryTarget(BaseModel):
    """Where a generation's messages go; `extra` carries what only the adapter understands."""

    channel_id: str
    thread_id: str | None = None
    #: The message showing progress, set by the adapter once it has posted it.
    message_id: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)


class CharacterRef(BaseModel):
    """A character as used by one generation: frozen at request time, so a later rename changes nothing."""

    handle: str
    name: str
    #: The stored character's id, to find its references when the request is sent.
    character_id: str = ""


def new_generation_id() -> str:
    """Short, unambiguous ids users can type: `g` + 8 lowercase base32 characters."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "g" + "".join(secrets.choice(alphabet) for _ in range(8))


class Generation(BaseModel):
    """One video job, from the user's request to the posted result."""

    id: str = Field(default_factory=new_generation_id)
    scope: Scope
    requester_id: str
    kind: GenerationKind = GenerationKind.CREATE
    parent_id: str | None = None
    #: The prompt as the user typed it (with @handles) and as sent to the backend (its own rewrite).
    prompt: str
    api_prompt: str
    #: The backend the job was sent to (`SORACAST_BACKEND` names); jobs stay with it when the operator switches.
    backend: str = "openai"
    characters: list[CharacterRef] = Field(default_factory=list)
    model: str
    seconds: str
    size: str
    status: GenerationStatus = GenerationStatus.WAITING
    progress: int = 0
    #: The estimated cost in USD (seconds × the model's price), or None where no price is known.
    cost_usd: float | None = None
    #: Where it stands in soracast's line while waiting (1 is next), and a rough wait in seconds.
    line_position: int | None = None
    line_eta: float | None = None
    #: When its create last went out (to find out whether an unanswered create made a job).
    submitted_at: datetime | None = None
    submit_attempts: int = 0
    #: Place in the provider's own queue, when it says (fal).
    queue_position: int | None = None
    #: When the backend started rendering (for an elapsed time where it reports no progress).
    started_at: datetime | None = None
    #: The backend's id of the job.
    api_video_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    video_path: Path | None = None
    thumbnail_path: Path | None = None
    target: DeliveryTarget
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None
    delivered_at: datetime | None = None

    @property
    def platform(self) -> Platform:
        return self.scope.platform

    @property
    def handles(self) -> list[str]:
        return [c.handle for c in self.characters]

    @property
    def character_ids(self) -> list[str]:
        """The stored characters it features (empty ids of very old generations left out)."""
        return [c.character_id for c in self.characters if c.character_id]


class WaitingSpot(BaseModel):
    """A generation waiting in line, as the line reads it: only what fair order and places need, not the row."""

    model_config = ConfigDict(frozen=True)

    id: str
    scope: Scope
    requester_id: str
    created_at: datetime
    #: The place last recorded for it (None before the line first placed it).
    line_position: int | None = None

    @property
    def platform(self) -> Platform:
        return self.scope.platform


class PlaceInLine(BaseModel):
    """A place to record for a waiting generation (1 is next), with a rough wait in seconds."""

    model_config = ConfigDict(frozen=True)

    generation_id: str
    position: int
    eta_seconds: float


class GenerationOptions(BaseModel):
    """What a user may choose per video; None means the configured default."""

    seconds: str | None = None
    size: str | None = None
    model: str | None = None


class DeliveryReceipt(BaseModel):
    """What an adapter returns once a finished video is in the chat."""

    message_id: str | None = None
    attached: bool = True
    note: str | None = None


class SpendState(StrEnum):
    """Where a generation's cost stands in the workspace's ledger."""

    RESERVED = "reserved"
    SPENT = "spent"
    REFUNDED = "refunded"
    RELEASED = "released"

    @property
    def counts(self) -> bool:
        """Whether it counts against a limit."""
        return self in (SpendState.RESERVED, SpendState.SPENT)


class SpendEntry(BaseModel):
    """One generation's line in the ledger."""

    generation_id: str
    scope: Scope
    person: str
    backend: str
    model: str
    seconds: int
    usd: float | None
    state: SpendState = SpendState.RESERVED
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def month(self) -> str:
        return self.created_at.strftime("%Y-%m")

    @property
    def day(self) -> str:
        return self.created_at.strftime("%Y-%m-%d")


class SpendTotals(BaseModel):
    """What counts against a workspace's limits now: this month's USD and one person's seconds today."""

    month_usd: float = 0.0
    person_day_seconds: int = 0


class UsageRow(BaseModel):
    """A month's spending of one person on one model."""

    person: str
    model: str
    videos: int
    seconds: int
    usd: float | None


class StoredInstallation(BaseModel):
    """A chat app's installation in one workspace or one organisation, as storage keeps it: the ids in the
    clear (to find it), everything else — tokens included — sealed by the adapter (`bot.sealing`)."""

    platform: Platform
    #: The organisation (Slack Enterprise Grid) it belongs to, "" for none.
    org_id: str = ""
    #: The workspace; "" for an installation across a whole organisation.
    workspace_id: str = ""
    sealed: str = Field(repr=False)
    installed_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RetiredScope(BaseModel):
    """A workspace that removed soracast: its characters and videos are deleted after `purge_after`."""

    scope: Scope
    #: What retired it (`app_uninstalled`, `tokens_revoked`, `team_access_revoked`, `operator`).
    reason: str
    retired_at: datetime
    purge_after: datetime


class PurgedScope(BaseModel):
    """What deleting a workspace's data removed; `still_running` generations were left for a later sweep."""

    scope: Scope
    characters: int = 0
    generations: list[Generation] = Field(default_factory=list)
    still_running: int = 0


class AccessRequestStatus(StrEnum):
    """Where a request to use someone's character stands."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


def new_request_id() -> str:
    """`r` + 8 lowercase base32 characters, like generation ids (they travel in button ids)."""
    return "r" + new_generation_id()[1:]


class AccessRequest(BaseModel):
    """Someone asking a character's owner to let them use it; decided once, by the owner or an admin."""

    id: str = Field(default_factory=new_request_id)
    scope: Scope
    character_id: str
    requester_id: str
    status: AccessRequestStatus = AccessRequestStatus.PENDING
    created_at: datetime = Field(default_factory=utcnow)
    decided_by: str | None = None
    decided_at: datetime | None = None
    #: Whether the owner's private message went out (False: their direct messages are closed to the bot).
    owner_told: bool = False


class NoticeState(StrEnum):
    """Where the owner's private note about one video with their character stands."""

    #: The video is not posted yet, or the note waits for the owner's digest window.
    WAITING = "waiting"
    SENT = "sent"
    #: The owner could not be reached (direct messages closed).
    UNDELIVERED = "undelivered"
    #: Not to be sent: the video failed, was cancelled or deleted, or the owner turned notes off.
    DROPPED = "dropped"


class OwnerNotice(BaseModel):
    """A character owner to be told that someone else's video used their character(s)."""

    generation_id: str
    owner_id: str
    scope: Scope
    created_at: datetime = Field(default_factory=utcnow)
    state: NoticeState = NoticeState.WAITING
    sent_at: datetime | None = None

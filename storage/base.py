"""The Storage protocol: everything soracast keeps, behind one async interface."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.models import (
    AccessRequest,
    AccessRequestStatus,
    Character,
    DeliveryTarget,
    Generation,
    HostedReference,
    NoticeState,
    OwnerNotice,
    PlaceInLine,
    Platform,
    PurgedScope,
    ReferenceBlob,
    RetiredScope,
    Scope,
    ScopeSettings,
    SpendEntry,
    SpendState,
    SpendTotals,
    StoredInstallation,
    UsageRow,
    WaitingSpot,
)


@dataclass(frozen=True)
class LeaseHolder:
    """Which process holds a generation's lease, and until when."""

    owner: str
    until: datetime


class Storage(Protocol):
    """Persistence for characters, generations and per-scope settings. Implementations must be safe to
    call concurrently from one event loop; Postgres also from many processes sharing one database."""

    #: Whether processes on other machines may share this storage (Postgres): then limits that hold for a
    #: backend account, such as its create rate, are kept in the database instead of in each process.
    shared_between_machines: bool

    async def open(self) -> None:
        """Connect, then apply pending migrations (`migrate`)."""

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]:
        """Apply the engine's pending numbered migrations under a lock, so processes starting together apply
        each once; returns the names this call applied."""

    # characters ---------------------------------------------------------------------------------------
    async def add_character(self, character: Character, references: Sequence[ReferenceBlob] = ()) -> None:
        """Insert with its references and native ids, all or nothing; `HandleTaken` if the handle exists."""

    async def get_character(self, scope: Scope, handle: str) -> Character | None: ...

    async def get_character_by_id(self, character_id: str) -> Character | None: ...

    async def list_characters(self, scope: Scope) -> list[Character]: ...

    async def all_characters(self) -> list[Character]:
        """Every scope's characters (for start-up maintenance, never shown to a user)."""

    async def load_references(self, character_id: str) -> list[ReferenceBlob]:
        """A character's stored references with their bytes."""

    async def replace_references(self, character_id: str, references: Sequence[ReferenceBlob]) -> None:
        """Store a character's references in place of any it had."""

    async def save_native_id(self, character_id: str, account: str, native_id: str) -> None:
        """Remember the id a backend account gave a character (replacing an older one)."""

    async def hosted_references(self, account: str, sha256s: Sequence[str]) -> dict[str, HostedReference]:
        """What `account` hosts of these reference files (by content hash), expired ones included."""

    async def save_hosted_reference(self, hosted: HostedReference) -> None:
        """Remember where an account hosts a reference file (replacing an older URL; expired rows are dropped)."""

    async def rename_character(self, scope: Scope, handle: str, new_handle: str) -> Character:
        """Raises `HandleTaken` if `new_handle` exists, `UnknownHandle` if `handle` does not."""

    async def remove_character(self, scope: Scope, handle: str) -> bool:
        """Forget a character with its references and native ids."""

    # who may use a character, and requests to use it --------------------------------------------------
    async def save_character_options(self, character: Character) -> None:
        """Store a character's sharing, instructions and owner-notice switch (nothing else of it)."""

    async def grant_access(self, character_id: str, person_id: str, by: str, at: datetime) -> bool:
        """Add a person to the people a character's owner approved; False if they were already."""

    async def revoke_access(self, character_id: str, person_id: str) -> bool:
        """Take a person off a character's approved people; False if they were not on it."""

    async def clear_access(self, character_id: str) -> None:
        """Empty a character's approved people."""

    async def add_access_request(self, request: AccessRequest) -> AccessRequest:
        """Store a new pending request, unless one is pending already for this person and character: then that
        one is returned and nothing is stored."""

    async def get_access_request(self, request_id: str) -> AccessRequest | None: ...

    async def latest_access_request(self, character_id: str, requester_id: str) -> AccessRequest | None:
        """This person's newest request to use this character, whatever its status."""

    async def decide_access_request(
        self, request_id: str, status: AccessRequestStatus, by: str, at: datetime
    ) -> AccessRequest | None:
        """Decide a pending request, once: approving also adds the requester to the character's approved people,
        in the same transaction. None if it was decided already (by anyone, in any process)."""

    async def mark_owner_told(self, request_id: str, told: bool) -> None:
        """Record whether the owner's private message about a request went out."""

    async def pending_access_requests(self, scope: Scope) -> list[AccessRequest]:
        """The workspace's undecided requests, oldest first."""

    # appearances and owner notices ------------------------------------------------------------------------
    async def add_appearances(self, generation_id: str, character_ids: Sequence[str]) -> None:
        """Record that a generation features these characters (stored before the generation itself)."""

    async def videos_with(self, character_id: str) -> list[Generation]:
        """Every stored generation featuring a character, newest first, whatever its status."""

    async def add_owner_notices(self, notices: Sequence[OwnerNotice], platform: Platform) -> None:
        """Keep notes for owners about a new generation (one per generation and owner; repeats are ignored)."""

    async def waiting_owner_notices(self, platforms: Sequence[Platform]) -> list[OwnerNotice]:
        """Notes not sent yet for generations of these platforms, oldest first."""

    async def settle_owner_notices(
        self, scope: Scope, owner_id: str, generation_ids: Sequence[str], state: NoticeState, at: datetime
    ) -> list[str]:
        """Move an owner's waiting notes to `state` (sent, undelivered, dropped); returns the generation ids this
        call moved, so two processes never send one note twice."""

    async def reopen_owner_notices(self, scope: Scope, owner_id: str, generation_ids: Sequence[str]) -> None:
        """Put notes back to waiting after a send that failed for now (tried again at the next sweep)."""

    async def take_undelivered_notices(self, scope: Scope, owner_id: str, at: datetime) -> list[str]:
        """The generation ids of an owner's notes that could not be sent privately, marked sent now (a platform
        showed them another way); each is returned to one caller only."""

    async def last_owner_message(self, scope: Scope, owner_id: str) -> datetime | None:
        """When an owner was last sent (or meant to be sent) a note about videos with their characters."""

    # generations --------------------------------------------------------------------------------------
    async def save_generation(self, generation: Generation) -> None:
        """Insert or replace the whole row."""

    async def get_generation(self, generation_id: str) -> Generation | None: ...

    async def delete_generation(self, generation_id: str) -> None:
        """Forget a generation the API refused before accepting it."""

    async def find_generation_by_video(self, api_video_id: str) -> Generation | None: ...

    async def unfinished_generations(self, platform: Platform | None = None) -> list[Generation]:
        """Generations not yet finished at the API, or finished but not yet delivered."""

    async def claim_delivery(self, generation_id: str, claimed_at: datetime, owner: str | None = None) -> bool:
        """Mark a generation as being delivered: with `owner`, only by the holder of its lease (who may deliver
        again after a crash); without, only the first claim wins. False if already delivered."""

    async def release_delivery(self, generation_id: str) -> None:
        """Undo a claim after a failed delivery, so it is tried again."""

    async def mark_delivered(self, generation_id: str, delivered_at: datetime, message_id: str | None) -> None:
        ...

    async def update_target(self, generation_id: str, target: DeliveryTarget) -> None:
        """Replace only where a generation is posted (adapters record their message ids here)."""

    async def recent_generations(self, scope: Scope, limit: int = 20) -> Sequence[Generation]: ...

    # the line and leases -------------------------------------------------------------------------------
    async def waiting_generations(self, backend: str) -> list[Generation]:
        """Every generation waiting in soracast's line for this backend, oldest first."""

    async def waiting_line(self, backend: str) -> list[WaitingSpot]:
        """The same generations as `waiting_generations`, oldest first, read lightly: who asked, when, and the
        place last recorded (the line reads this after every round of sends)."""

    async def count_waiting(self, scope: Scope, requester: str) -> int: ...

    async def in_flight_by_person(self, backend: str) -> dict[tuple[str, str], int]:
        """How many generations each (workspace key, person) has at this backend and not finished."""

    async def count_in_flight(self, backend: str) -> int:
        """Generations sent (or being sent) to this backend and not finished there."""

    async def claim_for_submit(self, generation_id: str, owner: str, until: datetime) -> Generation | None:
        """Atomically move a waiting generation to `submitting` under `owner`'s lease; None if it is not waiting
        any more (another process took it, or it was cancelled)."""

    async def adopt_job(self, generation_id: str, api_video_id: str) -> bool:
        """Atomically give a generation whose create went out (`submitting`) and has no job id yet the job a
        provider announced for it; False (nothing written) if it has a job by now, left that state, or another
        generation owns that job."""

    async def stamp_resend(self, generation_id: str, at: datetime | None) -> Generation | None:
        """Atomically record that a create is sent again (`submitted_at`, one more attempt) — or, with None, that
        it never left after all — only while the generation is `submitting` without a job id; None (nothing
        written) otherwise: say, a webhook gave it its job meanwhile."""

    async def cancel_waiting(self, generation_id: str) -> bool:
        """Atomically cancel a generation that is still waiting; False if it left the line already."""

    async def place_in_line(self, generation_id: str, position: int, eta_seconds: float) -> bool:
        """Atomically record where a generation that is still waiting stands; False (nothing written) if it left
        the line already (sent or cancelled)."""

    async def places_in_line(self, places: Sequence[PlaceInLine]) -> set[str]:
        """Record many places at once, in one transaction, each only where its generation still waits; returns
        the ids written (the others left the line meanwhile and are untouched)."""

    async def lease_generations(
        self,
        owner: str,
        platforms: Sequence[Platform],
        now: datetime,
        until: datetime,
        limit: int = 500,
        *,
        dead: Sequence[str] = (),
    ) -> list[Generation]:
        """Take (or keep) the leases of unfinished or undelivered generations of these platforms that nobody
        holds, whose lease expired before `now`, or whose holder is one of the `dead` processes; waiting ones
        are left to the line."""

    async def lease_holder(self, generation_id: str) -> LeaseHolder | None:
        """Who holds a generation's lease; None when nobody does (or there is no such generation)."""

    async def take_over(
        self, generation_id: str, owner: str, holder: str | None, now: datetime, until: datetime
    ) -> Generation | None:
        """Atomically give `owner` the lease of an undelivered generation still held by `holder` (a process the
        caller found dead; None: nobody), or whose lease expired before `now`; None (nothing written) when it
        moved to another holder meanwhile, was delivered, or waits in line (the line's, not a lease's)."""

    async def renew_leases(self, owner: str, generation_ids: Sequence[str], until: datetime) -> set[str]:
        """Extend `owner`'s leases; returns the ids it still holds."""

    async def release_lease(self, owner: str, generation_id: str) -> None: ...

    # processes sharing this storage -----------------------------------------------------------------------
    async def beat(self, owner: str, at: datetime, every: float) -> None:
        """Record that process `owner` is alive at `at` and beats every `every` seconds (its row is made on the
        first beat; on Postgres it also holds an advisory lock while its connection lives)."""

    async def end_process(self, owner: str, at: datetime) -> None:
        """A process stopped cleanly: it counts as dead at once (and its lock, if any, is let go)."""

    async def dead_processes(self, now: datetime) -> set[str]:
        """Processes that ended, missed three beats by `now`, or (Postgres) lost their lock and missed half a
        beat more than one; rows of processes gone for a day are forgotten."""

    # one create rate per backend account, for every process ---------------------------------------------------
    async def take_submit_turn(self, account: str, now: datetime, every: float, burst: int = 1) -> float:
        """Take a turn to send a create on `account`: turns come one per `every` seconds, up to `burst` at once
        after a quiet spell. 0 when taken; otherwise the seconds until one is free (nothing is taken)."""

    async def hold_submits(self, account: str, until: datetime) -> None:
        """The provider said 429: no process takes a turn on `account` before `until` (a later hold wins)."""

    # spending -------------------------------------------------------------------------------------------
    async def reserve_spend(
        self, entry: SpendEntry, *, monthly_usd: float | None, daily_seconds: float | None
    ) -> SpendTotals | None:
        """Record the entry if it keeps the workspace within both limits (atomically); else the totals that
        it would go over, and nothing is recorded."""

    async def set_spend_state(self, generation_id: str, state: SpendState) -> None: ...

    async def spend_totals(self, scope: Scope, person: str, month: str, day: str) -> SpendTotals: ...

    async def usage(self, scope: Scope, month: str) -> list[UsageRow]:
        """Spent entries of a month, per person and model."""

    # wake-ups between processes ---------------------------------------------------------------------
    async def notify(self, message: str) -> None:
        """Tell every process sharing this storage something changed (Postgres NOTIFY; SQLite: nothing —
        its processes find out at their next poll)."""

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call `callback(message)` for every `notify` from any process (the same one included)."""

    # webhook de-duplication ---------------------------------------------------------------------------
    async def remember_webhook(self, webhook_id: str) -> bool:
        """True the first time a webhook id is seen, False on redelivery."""

    # forms waiting for their answer ------------------------------------------------------------------
    async def put_pending_form(self, key: str, body: str, expires_at: datetime) -> None:
        """Keep what a form opened in chat needs once it is submitted (replacing anything kept under `key`)."""

    async def take_pending_form(self, key: str, now: datetime) -> str | None:
        """Remove and return what is kept under `key`, unless it expired before `now` (expired ones are dropped)."""

    # scope settings -----------------------------------------------------------------------------------
    async def get_scope_settings(self, scope: Scope) -> ScopeSettings: ...

    async def save_scope_settings(self, settings: ScopeSettings) -> None: ...

    # chat apps installed in many workspaces (secrets sealed by the caller) --------------------------------
    async def save_installation(self, installation: StoredInstallation) -> None:
        """Insert or replace the installation of (platform, org_id, workspace_id)."""

    async def find_installation(self, platform: Platform, org_id: str, workspace_id: str) -> StoredInstallation | None:
        """The installation with exactly these ids ("" for none)."""

    async def delete_installation(self, platform: Platform, org_id: str, workspace_id: str) -> bool:
        """Forget an installation; False if there was none."""

    async def installations(self, platform: Platform) -> list[StoredInstallation]:
        """Every installation of a platform (for sealing them again under a new key)."""

    async def link_org_workspace(self, platform: Platform, org_id: str, workspace_id: str) -> None:
        """Remember that a workspace was served through its organisation's installation."""

    async def org_workspaces(self, platform: Platform, org_id: str) -> list[str]:
        """The workspaces seen through an organisation's installation."""

    # workspaces that removed soracast -------------------------------------------------------------------
    async def retire_scope(self, retired: RetiredScope) -> RetiredScope:
        """Mark a workspace as gone; a workspace retired already keeps its first date. Returns what is stored."""

    async def get_retired_scope(self, scope: Scope) -> RetiredScope | None: ...

    async def reinstate_scope(self, scope: Scope) -> bool:
        """The workspace is back: its data is kept. False if it was not retired."""

    async def retired_scopes(self, due_by: datetime | None = None) -> list[RetiredScope]:
        """Retired workspaces, oldest first; with `due_by`, only those whose data may be deleted by then."""

    async def purge_scope(self, scope: Scope) -> PurgedScope:
        """Delete everything kept for exactly this workspace — characters with their references, generations,
        spending, settings, its organisation link — in one transaction; generations still at a backend are left
        (a tracker may still write them) and counted. The retirement mark goes once nothing is left. Never
        touches another workspace. The deleted generations' media files are the caller's to remove."""

"""Every failure a user can meet, as a type with a message they can act on.

Adapters render these (privately where the platform allows); they never invent their own wording for a
core failure. `message` is for the user, `hint` says what to do next, `log_detail` is for the operator only.
"""

from __future__ import annotations

from bot.actions import VideoAction


class SoracastError(Exception):
    """Base of every user-facing error: `message` says what went wrong, `hint` what to do next."""

    code: str = "error"
    #: Whether trying the same thing again later can succeed without the user changing anything.
    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None, log_detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log_detail = log_detail
        #: People the text names as `<@id>` (chat adapters may show these, and only these, as mentions).
        self.people: tuple[str, ...] = ()
        #: Buttons that act on the refusal, as (action, the id it acts on, label): an Ask button for a character
        #: not shared with the person.
        self.offers: tuple[tuple[VideoAction, str, str], ...] = ()

    def user_text(self) -> str:
        """The message and the next step, as one plain paragraph."""
        return f"{self.message} {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        return self.user_text()


# --- configuration -----------------------------------------------------------------------------------------


class ConfigError(SoracastError):
    """A setting is missing or malformed; raised once at start-up."""

    code = "config"


# --- input from the user -----------------------------------------------------------------------------------


class InvalidInput(SoracastError):
    """The user's command itself is wrong (an option out of range, a missing argument)."""

    code = "invalid_input"


class InvalidHandle(InvalidInput):
    """A @handle that does not follow the grammar or is reserved."""

    code = "invalid_handle"


class HandleTaken(InvalidInput):
    """The handle is already registered in this workspace."""

    code = "handle_taken"


class UnknownHandle(InvalidInput):
    """No character with that handle in this workspace; carries the closest known handles."""

    code = "unknown_handle"

    def __init__(self, handle: str, suggestions: list[str]) -> None:
        self.handle = handle
        self.suggestions = suggestions
        hint = (
            "Did you mean " + ", ".join(f"@{s}" for s in suggestions) + "?"
            if suggestions
            else "Register it first with `/character add`, or see `/character list`."
        )
        super().__init__(f"There is no character @{handle} in this workspace.", hint=hint)


class CharacterNeedsClip(InvalidInput):
    """A character registered before soracast kept references, whose clip is gone, used where one is needed."""

    code = "character_needs_clip"


class TooManyCharacters(InvalidInput):
    """More characters in one prompt than a video may use."""

    code = "too_many_characters"


class InvalidClip(InvalidInput):
    """An upload that is not a usable video clip (wrong type, unreadable, too long, too short, too big)."""

    code = "invalid_clip"


class NotAVideo(InvalidClip):
    code = "not_a_video"


class ClipTooLarge(InvalidClip):
    code = "clip_too_large"


class ClipWrongLength(InvalidClip):
    code = "clip_wrong_length"


class UnknownGeneration(InvalidInput):
    """No generation with that id in this workspace."""

    code = "unknown_generation"


class GenerationNotReady(InvalidInput):
    """The generation is not finished (or failed), so it cannot be remixed, extended or cut."""

    code = "generation_not_ready"


class LineFull(SoracastError):
    """The person already has as many videos waiting in line as one may."""

    code = "line_full"


class BudgetExceeded(SoracastError):
    """The request would go over the workspace's monthly spend or the person's daily seconds."""

    code = "budget_exceeded"


class MassMention(InvalidInput):
    """Text that would notify a whole channel, workspace or group (`@everyone`, `<!here>`, a role ping)."""

    code = "mass_mention"


class WorkspaceFull(InvalidInput):
    """The workspace already keeps as many characters as the operator allows."""

    code = "workspace_full"


class MalformedRequest(SoracastError):
    """A chat platform sent something in a shape soracast does not understand (a missing or mistyped option)."""

    code = "malformed_request"


class PermissionDenied(SoracastError):
    """The actor may not do this here (remove someone else's character, register without the role)."""

    code = "permission_denied"


class CharacterNotShared(PermissionDenied):
    """A character whose owner has not shared it with the person asking (checked before anything is stored).

    Carries the owners to ask and an Ask button per character."""

    code = "character_not_shared"


class RightsNotConfirmed(InvalidInput):
    """A character registered without confirming the right to use its subject (a person, a pet, a product)."""

    code = "rights_not_confirmed"


class UnknownRequest(InvalidInput):
    """No request to use a character with that id (here)."""

    code = "unknown_request"


class AlreadyDecided(InvalidInput):
    """A request to use a character that was approved or declined already."""

    code = "already_decided"


# --- storage -----------------------------------------------------------------------------------------------


class StorageUnavailable(SoracastError):
    """The database cannot be reached or refused the connection (raised when storage opens)."""

    code = "storage_unavailable"
    retryable = True


# --- the Videos API ----------------------------------------------------------------------------------------


class VideosAPIError(SoracastError):
    """The Videos API answered with an error (or did not answer)."""

    code = "api_error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        api_code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        api_message: str | None = None,
        log_detail: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, log_detail=log_detail)
        #: The API's own wording, before soracast explained it (the emulator sends this back as-is).
        self.api_message = api_message
        #: For a create that failed: whether the request may have reached the provider (a job may exist).
        self.maybe_sent = True
        self.status = status
        self.api_code = api_code
        self.param = param
        self.retry_after = retry_after


class APIRequestRejected(VideosAPIError):
    """400: the API refused the request; `param` names the field when the API said which."""

    code = "api_invalid_request"


class HumanLikenessRefused(APIRequestRejected):
    """The API refused a character clip because it shows a real person."""

    code = "human_likeness"


class ModerationBlocked(VideosAPIError):
    """The prompt or the result was blocked by the API's moderation."""

    code = "moderation_blocked"


class APIAuthError(VideosAPIError):
    """401/403: the key is wrong or the account may not use this model or feature."""

    code = "api_auth"


class APINotFound(VideosAPIError):
    """404: the video or character no longer exists at the API (expired or deleted)."""

    code = "api_not_found"


class RateLimited(VideosAPIError):
    """429 rate limit: retryable after `retry_after` seconds."""

    code = "rate_limited"
    retryable = True


class QuotaExhausted(VideosAPIError):
    """429 insufficient_quota: no retry will help until billing changes."""

    code = "quota_exhausted"


class APIUnavailable(VideosAPIError):
    """5xx, a connection failure or a timeout: retryable."""

    code = "api_unavailable"
    retryable = True


class GenerationFailed(VideosAPIError):
    """The API accepted the job and later reported it failed."""

    code = "generation_failed"

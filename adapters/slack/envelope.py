"""What each kind of Slack request must carry before bolt or a listener reads it, and how bolt's refusals are
logged.

`check_envelope` runs in the HTTP door before bolt sees the body (bolt itself indexes some fields of every
request, e.g. a submitted view's `type`), and again as a bolt middleware so Socket Mode requests are checked
alike: a slash command without a user, a button click without an action id, a view without its state are
answered 400 with one log line instead of failing inside bolt or a listener. Kinds soracast does not handle are
left to bolt, which finds no listener; `on_bolt_error` answers those 404, again in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.response import BoltResponse

from bot.errors import MalformedRequest

log = logging.getLogger(__name__)

#: How much of an id from a request a log line quotes.
_SHOWN = 60


class _Loose(BaseModel):
    """Fields soracast reads are typed; everything else Slack sends is kept as it came."""

    model_config = ConfigDict(extra="allow")


class _Id(_Loose):
    id: str


class _Message(_Loose):
    ts: str | None = None
    thread_ts: str | None = None
    files: list[dict[str, Any]] = Field(default_factory=list)
    blocks: list[dict[str, Any]] = Field(default_factory=list)


class SlashCommand(_Loose):
    """A `/sora` or `/character` invocation (form fields)."""

    command: str
    user_id: str
    team_id: str
    text: str = ""
    channel_id: str | None = None
    trigger_id: str | None = None
    response_url: str | None = None
    user_name: str = ""


class _Action(_Loose):
    action_id: str


class BlockActions(_Loose):
    """A click on a button of a posted message."""

    user: _Id
    actions: list[_Action] = Field(min_length=1)
    trigger_id: str = ""
    channel: _Id | None = None
    message: _Message | None = None
    response_url: str | None = None


class _Option(_Loose):
    value: str


class _InputValue(_Loose):
    value: str | None = None
    files: list[dict[str, Any]] = Field(default_factory=list)
    selected_option: _Option | None = None


class _State(_Loose):
    values: dict[str, dict[str, _InputValue]] = Field(default_factory=dict)


class _View(_Loose):
    type: str  # bolt reads it on every view submission
    callback_id: str
    private_metadata: str = ""
    state: _State = Field(default_factory=_State)


class ViewSubmission(_Loose):
    """A submitted modal."""

    user: _Id
    view: _View


class MessageAction(_Loose):
    """A message shortcut ("Make Sora character") on a message."""

    user: _Id
    callback_id: str
    trigger_id: str
    message: _Message
    channel: _Id | None = None
    response_url: str | None = None


class _Event(_Loose):
    type: str


class _AppMention(_Loose):
    type: Literal["app_mention"]
    user: str
    text: str
    channel: str
    thread_ts: str | None = None
    files: list[dict[str, Any]] = Field(default_factory=list)


class EventCallback(_Loose):
    """An Events API delivery; app mentions are checked in full."""

    event: _Event


class UrlVerification(_Loose):
    """Slack checking the request URL."""

    challenge: str


_INTERACTIONS: dict[str, type[_Loose]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
    "message_action": MessageAction,
    "event_callback": EventCallback,
    "url_verification": UrlVerification,
}


def check_envelope(body: dict[str, Any]) -> None:
    """Raise `MalformedRequest` when a kind of request soracast handles lacks what its listener reads."""
    try:
        if "command" in body:
            SlashCommand.model_validate(body)
            return
        model = _INTERACTIONS.get(str(body.get("type", "")))
        if model is None:
            return  # not one of ours: bolt finds no listener and answers 404
        model.model_validate(body)
        event = body.get("event")
        if model is EventCallback and isinstance(event, dict) and event.get("type") == "app_mention":
            _AppMention.model_validate(event)
    except ValidationError as exc:
        where = ".".join(str(part) for part in exc.errors()[0]["loc"])
        raise MalformedRequest(f"{describe(body)}: {where or 'body'} is missing or of the wrong type") from None


def describe(body: dict[str, Any]) -> str:
    """A short, one-line name of a request for the log: its kind and the id listeners match on."""
    if "command" in body:
        return f"command {str(body['command'])[:_SHOWN]!r}"
    kind = str(body.get("type", "?"))[:_SHOWN]
    detail: object = None
    if kind == "block_actions":
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions else None
        detail = first.get("action_id") if isinstance(first, dict) else None
    elif kind in ("view_submission", "view_closed"):
        view = body.get("view")
        detail = view.get("callback_id") if isinstance(view, dict) else None
    elif kind in ("message_action", "shortcut"):
        detail = body.get("callback_id")
    elif kind == "event_callback":
        event = body.get("event")
        detail = event.get("type") if isinstance(event, dict) else None
    return f"{kind} {str(detail)[:_SHOWN]!r}" if detail is not None else f"{kind!r}"


async def envelope_middleware(body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
    """Bolt global middleware: refuse a malformed request of a kind soracast handles with 400."""
    try:
        check_envelope(body)
    except MalformedRequest as err:
        log.warning("refused a malformed Slack request: %s", err.message)
        return BoltResponse(status=400, body="")
    await next()
    return None


async def on_bolt_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
    """Bolt's global error handler: a request no listener handles is a 404 in one line; a listener that
    refuses its payload is a 400 in one line; anything else is a bug, logged with its traceback."""
    if isinstance(error, BoltUnhandledRequestError):
        log.warning("refused a Slack request soracast does not handle: %s", describe(body))
        return BoltResponse(status=404, body="")
    if isinstance(error, MalformedRequest):
        log.warning("refused a malformed Slack request: %s (%s)", describe(body), error.message)
        return BoltResponse(status=400, body="")
    log.error("slack listener failed unexpectedly for %s", describe(body), exc_info=error)
    return None

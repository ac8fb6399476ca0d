"""Where a Slack request came from, and where its answers go; also what a modal carries in `private_metadata`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from bot.errors import MalformedRequest
from bot.models import DeliveryTarget, Platform, Scope

#: Slack's limit for a view's private_metadata.
METADATA_MAX = 3000


@dataclass(frozen=True)
class Origin:
    """The workspace, channel, thread and person of one request, plus its `response_url` when Slack gave one."""

    team_id: str
    user_id: str
    channel_id: str | None = None
    thread_ts: str | None = None
    response_url: str | None = None
    user_name: str = ""

    @property
    def scope(self) -> Scope:
        """Characters are private to a Slack team (workspace)."""
        return Scope(platform=Platform.SLACK, id=self.team_id)

    def target(self) -> DeliveryTarget:
        """Where a generation asked for here is posted."""
        if not self.channel_id:
            raise ValueError("this request has no channel to post a video to")
        return DeliveryTarget(channel_id=self.channel_id, thread_id=self.thread_ts)


def team_of(body: dict[str, Any], context_team: str | None) -> str:
    """The team id of any payload (bolt's context first; org-wide installs put it on the user)."""
    team = body.get("team")
    return (
        context_team
        or (team.get("id") if isinstance(team, dict) else None)
        or body.get("team_id")
        or (body.get("user") or {}).get("team_id")
        or body.get("enterprise_id")
        or "unknown"
    )


def from_command(command: dict[str, Any], context_team: str | None) -> Origin:
    """A slash command's form fields."""
    return Origin(
        team_id=team_of(command, context_team),
        user_id=command["user_id"],
        channel_id=command.get("channel_id"),
        response_url=command.get("response_url"),
        user_name=command.get("user_name", ""),
    )


def from_interaction(body: dict[str, Any], context_team: str | None) -> Origin:
    """A block action or message shortcut: the message's channel, and its thread if it sits in one."""
    user = body.get("user") or {}
    channel = (body.get("channel") or {}).get("id")
    message = body.get("message") or {}
    return Origin(
        team_id=team_of(body, context_team),
        user_id=user.get("id", ""),
        channel_id=channel,
        thread_ts=message.get("thread_ts"),
        response_url=body.get("response_url"),
        user_name=user.get("username") or user.get("name", ""),
    )


def from_event(event: dict[str, Any], context_team: str | None) -> Origin:
    """An `app_mention` event; answers stay in the mention's thread when it was in one."""
    return Origin(
        team_id=context_team or event.get("team") or "unknown",
        user_id=event.get("user", ""),
        channel_id=event.get("channel"),
        thread_ts=event.get("thread_ts"),
    )


@dataclass
class ModalState:
    """What a modal remembers between opening and submit: the origin and what it acts on."""

    origin: Origin
    generation_id: str | None = None
    file: dict[str, Any] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        data = {"o": asdict(self.origin), "g": self.generation_id, "f": self.file, "x": self.extra}
        text = json.dumps(data, separators=(",", ":"))
        if len(text) > METADATA_MAX:
            # A response_url is the only long optional part; without it replies fall back to chat.postEphemeral.
            data["o"] = asdict(self.origin) | {"response_url": None}
            text = json.dumps(data, separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, text: str, *, team_id: str, user_id: str) -> ModalState:
        """Read `private_metadata`; the submitting user and team always come from the signed payload itself.

        Raises `MalformedRequest` for metadata soracast did not write.
        """
        try:
            data = _Metadata.model_validate_json(text or "{}")
        except ValidationError:
            raise MalformedRequest("the view's private_metadata is not soracast's") from None
        origin = Origin(team_id=team_id, user_id=user_id, **data.o.model_dump())
        file = data.f.model_dump() if data.f is not None else None
        return cls(origin=origin, generation_id=data.g, file=file, extra=data.x)


class _OriginFields(BaseModel):
    channel_id: str | None = None
    thread_ts: str | None = None
    response_url: str | None = None
    user_name: str = ""


class _FileFields(BaseModel):
    id: str
    name: str
    mimetype: str = ""
    size: int | None = None
    url: str | None = None
    filetype: str = ""


class _Metadata(BaseModel):
    """`private_metadata` as `ModalState.encode` writes it (team and user ids in it are ignored)."""

    o: _OriginFields = Field(default_factory=_OriginFields)
    g: str | None = None
    f: _FileFields | None = None
    x: dict[str, str] = Field(default_factory=dict)

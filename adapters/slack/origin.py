"""Where a Slack request came from, and where its answers go; also what a modal carries in `private_metadata`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from slack_bolt.context.async_context import AsyncBoltContext

from adapters.slack.workspaces import Workspace
from bot.errors import MalformedRequest
from bot.models import DeliveryTarget, Scope

#: Slack's limit for a view's private_metadata.
METADATA_MAX = 3000


@dataclass(frozen=True)
class Origin:
    """The workspace, channel, thread and person of one request, plus its `response_url` when Slack gave one.

    `enterprise_id` and `org_install` (Enterprise Grid) say which installation speaks for soracast there."""

    team_id: str
    user_id: str
    channel_id: str | None = None
    thread_ts: str | None = None
    response_url: str | None = None
    user_name: str = ""
    enterprise_id: str | None = None
    org_install: bool = False

    @property
    def workspace(self) -> Workspace:
        return Workspace(team_id=self.team_id, enterprise_id=self.enterprise_id, org_install=self.org_install)

    @property
    def scope(self) -> Scope:
        """Characters are private to a Slack team (workspace)."""
        return self.workspace.scope

    def target(self) -> DeliveryTarget:
        """Where a generation asked for here is posted (and through which installation, in OAuth mode)."""
        if not self.channel_id:
            raise ValueError("this request has no channel to post a video to")
        return DeliveryTarget(channel_id=self.channel_id, thread_id=self.thread_ts, extra=self.workspace.target_extra())


def _installation(context: AsyncBoltContext) -> dict[str, Any]:
    """The Grid fields of a request, from bolt's context (read from the signed body)."""
    return {"enterprise_id": context.enterprise_id or None, "org_install": bool(context.is_enterprise_install)}


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


def from_command(command: dict[str, Any], context: AsyncBoltContext) -> Origin:
    """A slash command's form fields."""
    return Origin(
        team_id=team_of(command, context.team_id),
        user_id=command["user_id"],
        channel_id=command.get("channel_id"),
        response_url=command.get("response_url"),
        user_name=command.get("user_name", ""),
        **_installation(context),
    )


def from_interaction(body: dict[str, Any], context: AsyncBoltContext) -> Origin:
    """A block action or message shortcut: the message's channel, and its thread if it sits in one."""
    user = body.get("user") or {}
    channel = (body.get("channel") or {}).get("id")
    message = body.get("message") or {}
    return Origin(
        team_id=team_of(body, context.team_id),
        user_id=user.get("id", ""),
        channel_id=channel,
        thread_ts=message.get("thread_ts"),
        response_url=body.get("response_url"),
        user_name=user.get("username") or user.get("name", ""),
        **_installation(context),
    )


def from_event(event: dict[str, Any], context: AsyncBoltContext) -> Origin:
    """An `app_mention` event; answers stay in the mention's thread when it was in one."""
    return Origin(
        team_id=context.team_id or event.get("team") or "unknown",
        user_id=event.get("user", ""),
        channel_id=event.get("channel"),
        thread_ts=event.get("thread_ts"),
        **_installation(context),
    )


@dataclass
class ModalState:
    """What a modal remembers between opening and submit: the origin and what it acts on."""

    origin: Origin
    generation_id: str | None = None
    file: dict[str, Any] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        # Who and where the submit comes from is read from its signed payload, not from here.
        origin = {k: v for k, v in asdict(self.origin).items() if k in _OriginFields.model_fields}
        data = {"o": origin, "g": self.generation_id, "f": self.file, "x": self.extra}
        text = json.dumps(data, separators=(",", ":"))
        if len(text) > METADATA_MAX:
            # A response_url is the only long optional part; without it replies fall back to chat.postEphemeral.
            data["o"] = origin | {"response_url": None}
            text = json.dumps(data, separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, text: str, *, team_id: str, user_id: str, context: AsyncBoltContext) -> ModalState:
        """Read `private_metadata`; the submitting user, team and installation always come from the signed
        payload itself.

        Raises `MalformedRequest` for metadata soracast did not write.
        """
        try:
            data = _Metadata.model_validate_json(text or "{}")
        except ValidationError:
            raise MalformedRequest("the view's private_metadata is not soracast's") from None
        origin = Origin(team_id=team_id, user_id=user_id, **data.o.model_dump(), **_installation(context))
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

"""The hostile-input corpus: what an attacker, a broken proxy or a confused platform may send to each door.

Plain data, one table per door; the tests beside this file send every entry for real and check the answer, the
log (one line, no traceback) and that nothing was stored or posted. Add a case here when a new way in appears.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tests.fixtures.discord import ATTACHMENT, AUTOCOMPLETE, STRING, SUB_COMMAND, Payloads

#: Put in hostile bodies: it must never show up in a log line.
MARKER = "HOSTILE-BODY-MARKER"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

# --- Slack: POST /slack/events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlackCase:
    """One request to `/slack/events`. `signing` is how its headers are made: `signed` (correctly, now),
    `none`, `wrong-secret`, `stale`, `future`, or a literal timestamp header to sign with (`ts:abc`)."""

    name: str
    body: bytes
    content_type: str | None
    status: int
    signing: str = "signed"


def _form(**fields: str) -> bytes:
    return urlencode(fields).encode()


def _payload(value: Any) -> bytes:
    return urlencode({"payload": value if isinstance(value, str) else json.dumps(value)}).encode()


def _who(kind: str, **rest: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "team": {"id": "T0TEAM"},
        "user": {"id": "U0MALLORY", "team_id": "T0TEAM"},
        "trigger_id": "trigger.hostile",
    } | rest


def _command(command: str = "/sora", **fields: str) -> bytes:
    base = {
        "command": command,
        "text": f"{MARKER} dance",
        "team_id": "T0TEAM",
        "user_id": "U0MALLORY",
        "channel_id": "C0GENERAL",
        "trigger_id": "trigger.hostile",
    }
    return _form(**(base | fields))


def _without(body: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in body.items() if k not in keys}


_COMMAND_FIELDS = {"command": "/sora", "text": f"{MARKER} dance", "team_id": "T0TEAM", "channel_id": "C0GENERAL"}
_VIEW = {"type": "modal", "callback_id": "soracast_character", "private_metadata": "{}", "state": {"values": {}}}
_MENTION = {"type": "app_mention", "user": "U0MALLORY", "text": "<@U0BOT> sora dance", "channel": "C0GENERAL"}

SLACK_CASES: list[SlackCase] = [
    # Who sent it: refused on the raw bytes, before anything is parsed.
    SlackCase("unsigned form with a payload that is not JSON", _payload("{not json " + MARKER), FORM, 401, "none"),
    SlackCase("unsigned bytes that are not UTF-8", b"\xff\xfe payload=\xc3\x28 " + MARKER.encode(), FORM, 401, "none"),
    SlackCase("unsigned JSON array", json.dumps([MARKER]).encode(), JSON, 401, "none"),
    SlackCase("a command signed with another secret", _command(), FORM, 401, "wrong-secret"),
    SlackCase("a command signed ten minutes ago (a replay)", _command(), FORM, 401, "stale"),
    SlackCase("a command signed ten minutes from now", _command(), FORM, 401, "future"),
    SlackCase("a timestamp that is not a number", _command(), FORM, 401, "ts:yesterday"),
    SlackCase("a timestamp of fifty digits", _command(), FORM, 401, "ts:" + "9" * 50),
    SlackCase("a signature in another scheme", _command(), FORM, 401, "v1-scheme"),
    SlackCase("an unsigned ssl_check that smuggles a command", b"ssl_check=1&" + _command(), FORM, 401, "none"),
    # Size: refused before the signature is even computed.
    SlackCase("an unsigned body over a megabyte", b"payload=" + b"x" * (1024 * 1024), FORM, 413, "none"),
    # Signed, but not something Slack sends.
    SlackCase("signed bytes that are not UTF-8", b"command=%2Fsora&text=\xff\xfe" + MARKER.encode(), FORM, 400),
    SlackCase("signed text/plain", MARKER.encode(), "text/plain", 415),
    SlackCase("signed without a content type", _command(), None, 415),
    SlackCase("signed form that is not form data", f"just some words {MARKER}".encode(), FORM, 400),
    SlackCase("signed empty body", b"", FORM, 400),
    SlackCase("signed payload that is not JSON", _payload("{not json " + MARKER), FORM, 400),
    SlackCase("signed payload that is a JSON array", _payload([MARKER]), FORM, 400),
    SlackCase("signed payload that is a JSON string", _payload(json.dumps(MARKER)), FORM, 400),
    SlackCase("signed JSON body that is not JSON", ("{" + MARKER).encode(), JSON, 400),
    SlackCase("signed JSON body that is an array", json.dumps([MARKER]).encode(), JSON, 400),
    SlackCase("signed form that repeats its payload", _payload({"type": "x"}) + b"&" + _payload([MARKER]), FORM, 400),
    # Signed, of a kind soracast handles, without what its listener reads.
    SlackCase("a command without a user", _form(**_COMMAND_FIELDS), FORM, 400),
    SlackCase("a command without a team", _form(**_without(_COMMAND_FIELDS, "team_id"), user_id="U0MALLORY"), FORM,
              400),
    SlackCase("/soracast without a user", _form(**(_COMMAND_FIELDS | {"command": "/soracast", "text": "usage"})),
              FORM, 400),
    SlackCase("/soracast limits without a team", _form(**_without(
        _COMMAND_FIELDS | {"command": "/soracast", "text": f"limits --monthly-usd {MARKER}"}, "team_id"),
        user_id="U0MALLORY"), FORM, 400),
    SlackCase("a button click without actions", _payload(_who("block_actions")), FORM, 400),
    SlackCase("a button click whose user is a string", _payload(_who(
        "block_actions", user="U0MALLORY", actions=[{"action_id": "soracast:remix:gabc"}])), FORM, 400),
    SlackCase("a Cancel click whose user is a string", _payload(_who(
        "block_actions", user="U0MALLORY", actions=[{"action_id": "soracast:cancel:gabc"}])), FORM, 400),
    SlackCase("a Cancel click whose action has no id", _payload(_who(
        "block_actions", actions=[{"value": "soracast:cancel:gabc"}])), FORM, 400),
    SlackCase("a view submission without its view", _payload(_who("view_submission")), FORM, 400),
    SlackCase("a view submission whose values are strings", _payload(_who(
        "view_submission", view=_VIEW | {"state": {"values": {"handle": MARKER}}})), FORM, 400),
    SlackCase("a view submission whose metadata is not soracast's", _payload(_who(
        "view_submission", view=_VIEW | {"private_metadata": "{" + MARKER})), FORM, 400),
    SlackCase("a shortcut without its message", _payload(_who(
        "message_action", callback_id="soracast_make_character")), FORM, 400),
    SlackCase("an event callback without an event", json.dumps(
        {"type": "event_callback", "team_id": "T0TEAM", "text": MARKER}).encode(), JSON, 400),
    SlackCase("an app mention whose text is a number", json.dumps(
        {"type": "event_callback", "team_id": "T0TEAM", "event": _MENTION | {"text": 7}}).encode(), JSON, 400),
    SlackCase("a URL check without a challenge", json.dumps({"type": "url_verification"}).encode(), JSON, 400),
    SlackCase("an event whose authorizations bolt cannot read", json.dumps(
        {"type": "event_callback", "authorizations": MARKER, "event": _MENTION}).encode(), JSON, 400),
    # Signed and well formed, but nothing of soracast's: bolt finds no listener.
    SlackCase("an unknown slash command", _command("/nope"), FORM, 404),
    SlackCase("a click on a button that is not soracast's", _payload(_who(
        "block_actions", actions=[{"action_id": "someone_else"}])), FORM, 404),
    SlackCase("a soracast button id with an unknown verb", _payload(_who(
        "block_actions", actions=[{"action_id": "soracast:explode:gabc"}])), FORM, 404),
    SlackCase("a Cancel button without a video id", _payload(_who(
        "block_actions", actions=[{"action_id": "soracast:cancel:"}])), FORM, 404),
    SlackCase("a Cancel button whose video id is not one", _payload(_who(
        "block_actions", actions=[{"action_id": "soracast:cancel:GNOT-HERE"}])), FORM, 404),
    SlackCase("a Cancel button id with something after the video id", _payload(_who(
        "block_actions", actions=[{"action_id": "soracast:cancel:gabc:extra"}])), FORM, 404),
    SlackCase("a view soracast never opened", _payload(_who(
        "view_submission", view=_VIEW | {"callback_id": "someone_else"})), FORM, 404),
    SlackCase("a shortcut that is not soracast's", _payload(_who(
        "message_action", callback_id="someone_else", message={"ts": "1.2"})), FORM, 404),
    SlackCase("an interaction type Slack does not have", _payload(_who("teleport")), FORM, 404),
    SlackCase("an event soracast does not subscribe to", json.dumps(
        {"type": "event_callback", "team_id": "T0TEAM", "event": {"type": "reaction_added"}}).encode(), JSON, 404),
    SlackCase("a form with none of Slack's fields", _form(hello=MARKER), FORM, 404),
]


# --- the Videos API webhook: POST /webhooks/openai -------------------------------------------------------------


@dataclass(frozen=True)
class WebhookCase:
    """One request to `/webhooks/openai`. `signing`: `signed`, `none`, `wrong-secret`, `stale`,
    `ts:<value>`, or `id:<value>` (a webhook-id header to sign with)."""

    name: str
    body: bytes
    status: int
    signing: str = "signed"


def _event(**data: Any) -> bytes:
    return json.dumps({"id": "evt_hostile", "type": "video.completed", "data": data}).encode()


WEBHOOK_CASES: list[WebhookCase] = [
    WebhookCase("unsigned", _event(id=MARKER), 401, "none"),
    WebhookCase("signed with another secret", _event(id=MARKER), 401, "wrong-secret"),
    WebhookCase("signed an hour ago (a replay)", _event(id=MARKER), 401, "stale"),
    WebhookCase("a timestamp that is not a number", _event(id=MARKER), 401, "ts:yesterday"),
    WebhookCase("a webhook id that is not ASCII", _event(id=MARKER), 401, "id:évt"),
    WebhookCase("a body over 64 KiB", _event(id=MARKER, pad="x" * 70_000), 413, "none"),
    WebhookCase("signed bytes that are not UTF-8", b'{"type": "\xff\xfe"}', 400),
    WebhookCase("signed body that is not JSON", ("{" + MARKER).encode(), 400),
    WebhookCase("signed JSON array", json.dumps([MARKER]).encode(), 400),
    WebhookCase("signed event without data", json.dumps({"type": "video.completed", "x": MARKER}).encode(), 400),
    WebhookCase("signed event whose video id is a number", _event(id=12345), 400),
]


# --- every other route `soracast web` answers ----------------------------------------------------------------


@dataclass(frozen=True)
class RouteCase:
    """A request to a route (or a path) that does not take it."""

    name: str
    method: str
    path: str
    status: int
    body: bytes = b""


ROUTE_CASES: list[RouteCase] = [
    RouteCase("a path soracast does not serve", "GET", "/wp-login.php", 404),
    RouteCase("a path with an encoded line break", "GET", "/x%0Aforged-log-line", 404),
    RouteCase("POST to the health check", "POST", "/healthz", 405, MARKER.encode()),
    RouteCase("GET on the Slack door", "GET", "/slack/events", 405),
    RouteCase("PUT on the webhook", "PUT", "/webhooks/openai", 405, MARKER.encode()),
    # The providers' webhooks are off without SORACAST_PUBLIC_URL (or GEMINI_WEBHOOK_SECRET): nothing is read.
    RouteCase("POST to the Gemini webhook while it is off", "POST", "/webhooks/gemini", 404, MARKER.encode()),
    RouteCase("POST to the fal webhook while it is off", "POST", "/webhooks/fal/gabcdefgh", 404, MARKER.encode()),
    RouteCase("GET on the Gemini webhook", "GET", "/webhooks/gemini", 405),
    RouteCase("PUT on the fal webhook", "PUT", "/webhooks/fal/gabcdefgh", 405, MARKER.encode()),
]


@dataclass(frozen=True)
class RawCase:
    """Bytes sent on a bare TCP connection: requests that are not valid HTTP at all."""

    name: str
    data: bytes
    status: int


RAW_CASES: list[RawCase] = [
    RawCase("a header line without a colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400),
    RawCase("a Content-Length that is not a number",
            b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    RawCase("a declared length of a gigabyte", b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\npayload=", 413),
    RawCase("a broken chunked body", b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n0\r\n\r\n", 400),
]


# --- Discord: interaction payloads through discord.py's own parser --------------------------------------------


@dataclass(frozen=True)
class DiscordCase:
    """An INTERACTION_CREATE payload built by `make`; `expect` is `private` (one private answer),
    `autocomplete` (an empty list of choices) or `ignored` (no answer at all); `logged` how many log lines."""

    name: str
    make: Callable[[Payloads], dict[str, Any]]
    expect: str
    logged: int = 1


def _raw_command(p: Payloads, name: str, options: list[dict[str, Any]], kind: int = 2, **data: Any) -> dict[str, Any]:
    return p.interaction(kind, {"id": p.new_id(), "name": name, "type": 1, "options": options} | data)


def _sub(name: str, *options: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": SUB_COMMAND, "options": list(options)}


DISCORD_CASES: list[DiscordCase] = [
    DiscordCase("/sora without its prompt", lambda p: p.slash("sora", {}), "private"),
    DiscordCase("/sora with a prompt that is a number",
                lambda p: _raw_command(p, "sora", [{"name": "prompt", "type": 4, "value": 5}]), "private"),
    DiscordCase("/sora with a null prompt",
                lambda p: _raw_command(p, "sora", [{"name": "prompt", "type": STRING, "value": None}]), "private"),
    DiscordCase("/sora with seconds that are not a choice",
                lambda p: p.slash("sora", {"prompt": MARKER, "seconds": "999"}), "private"),
    DiscordCase("/sora outside a server",
                lambda p: {k: v for k, v in p.slash("sora", {"prompt": MARKER}).items()
                           if k not in ("guild_id", "guild", "member")} | {"user": {
                    "id": "800000000000000009", "username": "dm", "discriminator": "0", "avatar": None}},
                "private"),
    DiscordCase("a command soracast does not have", lambda p: p.slash("nope", {"x": MARKER}), "private"),
    DiscordCase("/character without a subcommand", lambda p: p.slash("character", {}), "private"),
    DiscordCase("/character with an unknown subcommand",
                lambda p: p.slash("character", {}, subcommand="explode"), "private"),
    DiscordCase("/character add without a clip",
                lambda p: p.slash("character", {"handle": "mascot"}, subcommand="add"), "private"),
    DiscordCase("/character add whose clip is not in resolved",
                lambda p: _raw_command(p, "character", [_sub(
                    "add", {"name": "handle", "type": STRING, "value": "mascot"},
                    {"name": "clip", "type": ATTACHMENT, "value": "123"})]), "private"),
    DiscordCase("/character add whose handle is a number",
                lambda p: _raw_command(p, "character", [_sub(
                    "add", {"name": "handle", "type": 4, "value": 7},
                    {"name": "clip", "type": ATTACHMENT, "value": "123"})]), "private"),
    DiscordCase("/character info whose handle is a list",
                lambda p: _raw_command(p, "character", [_sub(
                    "info", {"name": "handle", "type": STRING, "value": [MARKER]})]), "private"),
    DiscordCase("/soracast config with a role that is not in resolved",
                lambda p: _raw_command(p, "soracast", [_sub(
                    "config", {"name": "register_role", "type": 8, "value": "123"})]), "private"),
    DiscordCase("/soracast cancel without its video", lambda p: p.slash("soracast", {}, subcommand="cancel"),
                "private"),
    DiscordCase("/soracast cancel whose video is a number",
                lambda p: _raw_command(p, "soracast", [_sub("cancel", {"name": "video", "type": 4, "value": 7})]),
                "private"),
    DiscordCase("/soracast limits whose monthly_usd is a number",
                lambda p: _raw_command(p, "soracast", [_sub(
                    "limits", {"name": "monthly_usd", "type": 10, "value": 5.5})]), "private"),
    DiscordCase("/soracast with an unknown subcommand",
                lambda p: p.slash("soracast", {"x": MARKER}, subcommand="explode"), "private"),
    DiscordCase("autocomplete of a cancel whose video is a list",
                lambda p: _raw_command(p, "soracast", [_sub(
                    "cancel", {"name": "video", "type": STRING, "value": [MARKER], "focused": True})], AUTOCOMPLETE),
                "autocomplete", 0),
    DiscordCase("Make character without the message it was used on",
                lambda p: p.interaction(2, {"id": p.new_id(), "name": "Make character", "type": 3,
                                            "target_id": "1"}), "private"),
    DiscordCase("autocomplete without a focused option",
                lambda p: _raw_command(p, "sora", [{"name": "prompt", "type": STRING, "value": "@"}], AUTOCOMPLETE),
                "autocomplete"),
    DiscordCase("autocomplete of a prompt that is a number",
                lambda p: _raw_command(p, "sora", [{"name": "prompt", "type": 4, "value": 5, "focused": True}],
                                       AUTOCOMPLETE), "autocomplete", 0),
    DiscordCase("a button of ours with an unknown verb", lambda p: _click(p, "soracast:explode:gabc"), "ignored", 0),
    DiscordCase("a button for a video that does not exist", lambda p: _click(p, "soracast:delete:gnothere"),
                "private"),
    DiscordCase("a Cancel button for a video that does not exist", lambda p: _click(p, "soracast:cancel:gnothere"),
                "private"),
    DiscordCase("a Cancel button whose video id is not one", lambda p: _click(p, "soracast:cancel:GNOT-HERE"),
                "ignored", 0),
    DiscordCase("a form soracast never opened",
                lambda p: p.modal_submit("someone-else", {"handle": MARKER}), "ignored", 0),
    DiscordCase("a Make character form that expired (a restart forgets open forms)",
                lambda p: p.modal_submit("soracast-clip:404", {"handle": "rex"}), "private", 0),
    DiscordCase("a Make character form without its fields",
                lambda p: p.modal_submit("soracast:character:gnothere", {}), "private"),
]


def _click(p: Payloads, custom_id: str) -> dict[str, Any]:
    """A click on a button with `custom_id` under a message of the bot's (discord.py looks the button up there)."""
    button = {"type": 2, "style": 1, "label": "Go", "custom_id": custom_id}
    message = _bot_message(p) | {"components": [{"type": 1, "components": [button]}]}
    return p.interaction(3, {"custom_id": custom_id, "component_type": 2}, message=message)


def _bot_message(p: Payloads) -> dict[str, Any]:
    """A message as Discord includes it in a button click (it need not exist anywhere)."""
    return {
        "id": p.new_id(),
        "channel_id": p.channel_id,
        "author": {"id": "1", "username": "soracast", "discriminator": "0", "avatar": None, "bot": True},
        "content": "",
        "timestamp": "2024-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        "components": [],
    }

"""A local stand-in for Discord's HTTP API (REST, interaction callbacks, webhooks, CDN) that records requests.

discord.py's real HTTP client talks to it once `discord.http.Route.BASE` points at `FakeDiscordAPI.api_base`.
Every request is kept as a `Received`, so tests assert on what actually reached "Discord": paths, JSON bodies,
multipart `payload_json` and the bytes of `files[n]`. Channel messages, interaction responses and followups are
kept as message objects, so later edits and deletes apply to them the way Discord would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

Payload = dict[str, Any]

API_PREFIX = "/api/v10"
#: Discord's snowflakes count milliseconds from 2015-01-01.
DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6
LOADING = 1 << 7

# Interaction callback types (Discord's InteractionResponseType).
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, AUTOCOMPLETE, MODAL = 1, 4, 5, 6, 7, 8, 9


@dataclass
class UploadedFile:
    """One `files[n]` part of a multipart request."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Received:
    """One request as the fake saw it; `json` is the JSON body or the multipart `payload_json`."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    files: list[UploadedFile]
    at: float
    #: When the fake finished answering (after any injected delay).
    answered_at: float | None = None

    @property
    def flags(self) -> int:
        body = self.json if isinstance(self.json, dict) else {}
        data = body.get("data") if isinstance(body.get("data"), dict) else body
        return int((data or {}).get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)


@dataclass
class KnownInteraction:
    """What the fake must know about an interaction a test sends, to answer its callback like Discord."""

    id: str
    token: str
    channel_id: str
    guild_id: str | None
    type: int
    original_id: str | None = None
    responded: bool = False
    #: Messages this interaction created (its response and followups), deleted ones included.
    message_ids: list[str] = field(default_factory=list)


def snowflake_time() -> str:
    return datetime.now(UTC).isoformat()


def _json_response(body: Any, status: int = 200) -> web.Response:
    # discord.py parses JSON only when the content type is exactly `application/json` (no charset).
    return web.Response(status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _error(status: int, code: int, message: str) -> web.Response:
    return _json_response({"code": code, "message": message}, status)


@dataclass
class FakeDiscordAPI:
    """Discord's HTTP API as far as soracast uses it; `await start()` binds a free port on 127.0.0.1."""

    application_id: str = "1100000000000000001"
    bot_user_id: str = "1100000000000000001"
    bot_name: str = "soracast"
    token: str = "fake-discord-bot-token"
    requests: list[Received] = field(default_factory=list)
    #: Message id → message object, for channel messages, interaction responses and followups alike.
    messages: dict[str, Payload] = field(default_factory=dict)
    #: Every message ever created, deleted ones included (the same objects, so edits show here too).
    archive: dict[str, Payload] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    #: Path under `/cdn/` → (bytes, content type): what attachment URLs in payloads download.
    hosted: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    interactions: dict[str, KnownInteraction] = field(default_factory=dict)
    #: (method, path suffix) → (status, Discord error code): fault injection for the next matching requests.
    faults: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    #: (method, path suffix) → seconds to wait before answering (a slow Discord).
    delays: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Requests matching one of these do their work, then lose the answer (the connection drops, as when the
    #: process that asked died); each is used for one request.
    lost_answers: list[Callable[[Received], bool]] = field(default_factory=list)
    #: How long Discord holds to a message nonce sent with `enforce_nonce` ("the past few minutes").
    nonce_window: float = 300.0
    #: Direct-message channel id → the user it is with (`POST /users/@me/channels` opens one per user).
    dm_channels: dict[str, str] = field(default_factory=dict)
    #: Users who do not accept direct messages from the bot: a post to them is refused with 403 / 50007.
    dm_closed: set[str] = field(default_factory=set)
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._last_id = 0
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        #: (author id, nonce) → (message id, when): what a repeated `enforce_nonce` post is answered with.
        self._nonces: dict[tuple[str, str], tuple[str, float]] = {}
        #: Called with each request as it arrives (benchmarks time the defer callback with it).
        self.on_request: Callable[[Received], None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        """What `discord.http.Route.BASE` must be set to."""
        return f"{self.url}{API_PREFIX}"

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # A burst of new connections must not overflow the listen queue (the default 128 drops SYNs for 1 s).
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- helpers for tests -----------------------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh snowflake of now, increasing (searches by time, `after=`, see the order things were made in)."""
        now = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) + next(self._ids) % 4096
        self._last_id = max(now, self._last_id + 1)
        return str(self._last_id)

    def host_file(self, filename: str, data: bytes, content_type: str = "video/mp4") -> str:
        """Serve `data` the way Discord's CDN serves an attachment; returns its URL."""
        key = f"attachments/{self.new_id()}/{filename}"
        self.hosted[key] = (data, content_type)
        return f"{self.url}/cdn/{key}?ex=0&is=0&hm=fake"

    def expect_interaction(
        self, interaction_id: str, token: str, channel_id: str, guild_id: str | None, type_: int
    ) -> None:
        """Tell the fake about an interaction a test is about to dispatch, so its callback can be answered."""
        self.interactions[token] = KnownInteraction(interaction_id, token, channel_id, guild_id, type_)

    def user_object(self) -> Payload:
        return {
            "id": self.bot_user_id,
            "username": self.bot_name,
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
        }

    def add_message(self, channel_id: str, **fields: Any) -> Payload:
        """Put a message into a channel as if someone had posted it (e.g. a user's MP4)."""
        message = self._message(channel_id, **fields)
        self._store(message)
        return message

    def delete_message(self, message_id: str) -> None:
        """Take a message out of its channel, as a member with Manage Messages would."""
        self._delete(message_id)

    def calls(self, method: str | None = None, path_part: str = "") -> list[Received]:
        """Recorded requests, optionally only those of one HTTP method whose path contains `path_part`."""
        return [r for r in self.requests if (method is None or r.method == method) and path_part in r.path]

    def callbacks(self, token: str | None = None) -> list[Received]:
        """Recorded interaction callbacks (of one interaction when `token` is given)."""
        found = [r for r in self.calls("POST", "/callback") if r.path.startswith(f"{API_PREFIX}/interactions/")]
        return [r for r in found if token is None or r.path.split("/")[-2] == token]

    def messages_of(self, token: str) -> list[Payload]:
        """The messages an interaction created (response first, then followups), deleted ones included."""
        known = self.interactions.get(token)
        return [self.archive[i] for i in known.message_ids] if known else []

    def dms_to(self, user_id: str) -> list[Payload]:
        """The direct messages the bot sent a user (that still exist), oldest first."""
        channels = [c for c, user in self.dm_channels.items() if user == user_id]
        return [m for c in channels for m in self.channel_messages(c)]

    def channel_messages(self, channel_id: str) -> list[Payload]:
        """The messages now in a channel (deleted ones gone), oldest first."""
        found = [m for m in self.messages.values() if m["channel_id"] == channel_id]
        return sorted(found, key=lambda m: int(m["id"]))

    async def wait_for(self, predicate: Callable[[], Any], within: float = 30.0) -> Any:
        """Wait until `predicate()` is truthy after some request arrives (a safety net, not a timing check)."""

        async def waiting() -> Any:
            async with self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(waiting(), within)

    # --- request handling ------------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Received:
        arrived = time.perf_counter()
        body: Any = None
        files: list[UploadedFile] = []
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                name = part.name or ""  # type: ignore[union-attr]
                data = await part.read()  # type: ignore[union-attr]
                if name == "payload_json":
                    body = json.loads(data)
                else:
                    files.append(
                        UploadedFile(
                            field=name,
                            filename=part.filename or "",  # type: ignore[union-attr]
                            content_type=part.headers.get("Content-Type", ""),  # type: ignore[union-attr]
                            data=bytes(data),
                        )
                    )
        elif request.can_read_body:
            raw = await request.read()
            if raw:
                is_json = content_type.startswith("application/json")
                body = json.loads(raw) if is_json else raw.decode("utf-8", "replace")
        received = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=body,
            files=files,
            at=arrived,
        )
        self.requests.append(received)
        if self.on_request is not None:
            self.on_request(received)
        return received

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        received = await self._record(request)
        try:
            response = await self._answer(request, received)
            lost = next((match for match in self.lost_answers if match(received)), None)
            if lost is not None:
                self.lost_answers.remove(lost)
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()  # never reaches the client: the connection is gone
            return response
        finally:
            received.answered_at = time.perf_counter()
            async with self._changed:
                self._changed.notify_all()

    async def _answer(self, request: web.Request, received: Received) -> web.StreamResponse:
        path = request.path
        if path.startswith("/cdn/"):
            return self._serve_file(path.removeprefix("/cdn/"))
        if not path.startswith(API_PREFIX):
            return _error(404, 0, "404: Not Found")
        route = path.removeprefix(API_PREFIX)
        for (method, suffix), seconds in list(self.delays.items()):
            if request.method == method and route.endswith(suffix):
                await asyncio.sleep(seconds)
        for (method, suffix), (status, code) in list(self.faults.items()):
            if request.method == method and route.endswith(suffix):
                return _error(status, code, "injected fault")
        parts = route.strip("/").split("/")
        method = request.method
        if parts[0] in ("users", "oauth2", "applications", "channels") and not self._authorized(request):
            return _error(401, 0, "401: Unauthorized")
        match parts:
            case ["users", "@me"]:
                return _json_response(self.user_object())
            case ["users", "@me", "channels"] if method == "POST":
                return _json_response(self._open_dm(received))
            case ["oauth2", "applications", "@me"]:
                return _json_response(self._application_object())
            case ["applications", _, "commands"] | ["applications", _, "guilds", _, "commands"] if method == "PUT":
                return _json_response(self._registered_commands(received.json or [], parts))
            case ["interactions", _, token, "callback"] if method == "POST":
                return self._callback(token, received)
            case ["webhooks", _, token] if method == "POST":
                return self._followup(token, received)
            case ["webhooks", _, token, "messages", message_id]:
                return self._webhook_message(method, token, message_id, received)
            case ["channels", channel_id, "messages"] if method == "POST":
                if self.dm_channels.get(channel_id) in self.dm_closed:
                    return _error(403, 50007, "Cannot send messages to this user")
                return _json_response(self._post(channel_id, received))
            case ["channels", channel_id, "messages"] if method == "GET":
                return _json_response(self._history(channel_id, request.query))
            case ["channels", channel_id, "messages", message_id]:
                return self._channel_message(method, channel_id, message_id, received)
        return _error(404, 0, f"404: no fake route for {method} {route}")

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _serve_file(self, key: str) -> web.Response:
        found = self.hosted.get(key)
        if found is None:
            return web.Response(status=404, text="not found")
        data, content_type = found
        return web.Response(body=data, headers={"Content-Type": content_type})

    # --- objects ---------------------------------------------------------------------------------------------

    def _application_object(self) -> Payload:
        return {
            "id": self.application_id,
            "name": self.bot_name,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": "1000000000000000009", "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
        }

    def _registered_commands(self, commands: list[Payload], parts: list[str]) -> list[Payload]:
        guild = parts[3] if len(parts) > 3 else None
        out = []
        for command in commands:
            # Discord fills in what a command left out (a context menu has no description, for one).
            item = {"description": "", "options": [], "default_member_permissions": None, "nsfw": False}
            item |= dict(command) | {"id": self.new_id(), "application_id": self.application_id, "version": "1"}
            if guild:
                item["guild_id"] = guild
            out.append(item)
        return out

    def _open_dm(self, received: Received) -> Payload:
        """`POST /users/@me/channels {recipient_id}`: the bot's DM channel with that user (the same one again)."""
        body: Payload = received.json if isinstance(received.json, dict) else {}
        user_id = str(body.get("recipient_id", ""))
        channel_id = next((c for c, u in self.dm_channels.items() if u == user_id), None) or self.new_id()
        self.dm_channels[channel_id] = user_id
        recipient = {"id": user_id, "username": f"user{user_id[-4:]}", "discriminator": "0", "global_name": None,
                     "avatar": None}
        return {"id": channel_id, "type": 1, "last_message_id": None, "recipients": [recipient], "flags": 0}

    def _message(self, channel_id: str, **fields: Any) -> Payload:
        message: Payload = {
            "id": self.new_id(),
            "channel_id": channel_id,
            "author": self.user_object(),
            "content": "",
            "timestamp": snowflake_time(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        message.update(fields)
        return message

    def _attachments(self, body: Payload, files: list[UploadedFile], previous: list[Payload]) -> list[Payload]:
        """Resolve `attachments` of a create/edit: new ones refer to `files[n]` by id n, old ones by their id."""
        by_field = {f.field: f for f in files}
        kept = {a["id"]: a for a in previous}
        result: list[Payload] = []
        listed = body.get("attachments")
        if listed is None:
            listed = [{"id": i} for i in range(len(files))] if files else [{"id": a["id"]} for a in previous]
        for item in listed:
            ident = str(item.get("id"))
            upload = by_field.get(f"files[{ident}]")
            if upload is not None:
                new_id = self.new_id()
                key = f"attachments/{new_id}/{upload.filename}"
                self.hosted[key] = (upload.data, upload.content_type or "application/octet-stream")
                result.append(
                    {
                        "id": new_id,
                        "filename": item.get("filename") or upload.filename,
                        "size": len(upload.data),
                        "url": f"{self.url}/cdn/{key}",
                        "proxy_url": f"{self.url}/cdn/{key}",
                        "content_type": upload.content_type,
                    }
                )
            elif ident in kept:
                result.append(kept[ident])
        return result

    def _apply(self, message: Payload, received: Received) -> Payload:
        body: Payload = received.json if isinstance(received.json, dict) else {}
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if "flags" in body and body["flags"] is not None:
            # An edit keeps EPHEMERAL; the loading state ends with the first edit.
            message["flags"] = (message.get("flags", 0) & EPHEMERAL) | (int(body["flags"]) & ~LOADING)
        else:
            message["flags"] = message.get("flags", 0) & ~LOADING
        if "attachments" in body or received.files:
            message["attachments"] = self._attachments(body, received.files, message.get("attachments", []))
        if message.get("content") is None:
            message["content"] = ""
        return message

    def _create(self, channel_id: str, received: Received, **fields: Any) -> Payload:
        body: Payload = received.json if isinstance(received.json, dict) else {}
        message = self._message(channel_id, flags=int(body.get("flags") or 0), **fields)
        self._apply(message, received)
        message["flags"] = int(body.get("flags") or 0) & ~LOADING
        self._store(message)
        return message

    def _post(self, channel_id: str, received: Received) -> Payload:
        """A bot message; with `enforce_nonce`, a nonce seen within `nonce_window` gets its first message back."""
        body: Payload = received.json if isinstance(received.json, dict) else {}
        nonce = body.get("nonce")
        key = (self.bot_user_id, str(nonce))
        if nonce is not None and body.get("enforce_nonce"):
            seen = self._nonces.get(key)
            if seen is not None and time.monotonic() - seen[1] < self.nonce_window:
                return self.archive[seen[0]]
        message = self._create(channel_id, received, author=self.user_object())
        if nonce is not None:
            message["nonce"] = str(nonce)
            self._nonces[key] = (message["id"], time.monotonic())
        return message

    def _history(self, channel_id: str, query: Any) -> list[Payload]:
        """`GET /channels/{id}/messages`: up to `limit` messages after `after` (or before `before`), newest first,
        without nonces (Discord shows them only to whoever sent the message, when it is made)."""
        limit = int(query.get("limit", 50))
        found = self.channel_messages(channel_id)
        if "after" in query:
            found = [m for m in found if int(m["id"]) > int(query["after"])][:limit]
        else:
            if "before" in query:
                found = [m for m in found if int(m["id"]) < int(query["before"])]
            found = found[-limit:]
        return [{k: v for k, v in m.items() if k != "nonce"} for m in reversed(found)]

    def _store(self, message: Payload) -> None:
        self.messages[message["id"]] = message
        self.archive[message["id"]] = message

    def _delete(self, message_id: str) -> None:
        self.messages.pop(message_id, None)
        self.deleted.add(message_id)

    # --- interactions ----------------------------------------------------------------------------------------

    def _interaction_message_fields(self, known: KnownInteraction) -> Payload:
        return {
            "webhook_id": self.application_id,
            "application_id": self.application_id,
            "type": 20 if known.type == 2 else 0,
        }

    def _callback(self, token: str, received: Received) -> web.Response:
        known = self.interactions.get(token)
        if known is None:
            return _error(404, 10062, "Unknown interaction")
        if known.responded:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        known.responded = True
        body: Payload = received.json if isinstance(received.json, dict) else {}
        kind = int(body.get("type", 0))
        data: Payload = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        answer: Payload = {"interaction": {"id": known.id, "type": known.type}, "resource": {"type": kind}}
        if kind == DEFERRED_MESSAGE:
            message = self._message(
                known.channel_id, flags=(flags & EPHEMERAL) | LOADING, **self._interaction_message_fields(known)
            )
            self._store(message)
            known.original_id = message["id"]
            known.message_ids.append(message["id"])
            answer["interaction"] |= {
                "response_message_id": message["id"],
                "response_message_loading": True,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            }
        elif kind == MESSAGE:
            inner = Received(received.method, received.path, {}, {}, data, received.files, received.at)
            message = self._create(known.channel_id, inner, **self._interaction_message_fields(known))
            known.original_id = message["id"]
            known.message_ids.append(message["id"])
            answer["interaction"] |= {
                "response_message_id": message["id"],
                "response_message_loading": False,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            }
            answer["resource"]["message"] = message
        return _json_response(answer)

    def _followup(self, token: str, received: Received) -> web.Response:
        known = self.interactions.get(token)
        if known is None:
            return _error(404, 10015, "Unknown Webhook")
        if not known.responded:
            return _error(400, 40060, "The interaction has not been acknowledged yet.")
        message = self._create(known.channel_id, received, **self._interaction_message_fields(known))
        known.message_ids.append(message["id"])
        return _json_response(message)

    def _webhook_message(self, method: str, token: str, message_id: str, received: Received) -> web.Response:
        known = self.interactions.get(token)
        if known is None:
            return _error(404, 10015, "Unknown Webhook")
        ident = known.original_id if message_id == "@original" else message_id
        message = self.messages.get(ident or "")
        if message is None:
            return _error(404, 10008, "Unknown Message")
        if method == "GET":
            return _json_response(message)
        if method == "DELETE":
            self._delete(message["id"])
            return web.Response(status=204)
        if method == "PATCH":
            message["edited_timestamp"] = snowflake_time()
            return _json_response(self._apply(message, received))
        return _error(405, 0, "405: Method Not Allowed")

    def _channel_message(self, method: str, channel_id: str, message_id: str, received: Received) -> web.Response:
        message = self.messages.get(message_id)
        if message is None or message["channel_id"] != channel_id:
            return _error(404, 10008, "Unknown Message")
        if message.get("flags", 0) & EPHEMERAL:
            # Ephemeral messages exist only for their interaction's webhook, never on channel endpoints.
            return _error(404, 10008, "Unknown Message")
        if method == "GET":
            return _json_response(message)
        if message["author"]["id"] != self.bot_user_id and method == "PATCH":
            return _error(403, 50005, "Cannot edit a message authored by another user")
        if method == "DELETE":
            self._delete(message_id)
            return web.Response(status=204)
        if method == "PATCH":
            message["edited_timestamp"] = snowflake_time()
            return _json_response(self._apply(message, received))
        return _error(405, 0, "405: Method Not Allowed")

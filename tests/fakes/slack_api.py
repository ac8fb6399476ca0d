"""A local stand-in for Slack's Web API (plus file hosting and response URLs) that records what it receives.

slack-sdk's real `AsyncWebClient` talks to it over HTTP on 127.0.0.1: point the client's `base_url` at
`FakeSlackAPI.base_url`. Every request is kept as a `Call` so tests assert on what actually reached "Slack".

Uploads behave as Slack's do: `files.getUploadURLExternal` hands out a file id and an upload URL, the bytes are
POSTed there, and `files.completeUploadExternal` shares the file in the channel (after `share_delay`, as Slack
shares asynchronously); `files.info` then shows the file with its `shares`. A file that was never completed is
unknown to `files.info`. Completing a file twice shares it twice (the pessimistic reading of what Slack does).
`latency` makes every answer take as long as the real Slack's, and `lost_answers` drops the connection after
the work was done, so the answer never arrives.

Many workspaces: every bot token the fake knows belongs to one team (`teams_by_token`; `bot_token` is
`team_id`'s). `grant` prepares what "Add to Slack" in a workspace leads to: a one-time `code` that
`oauth.v2.access` (authenticated with the app's client id and secret, as HTTP Basic) exchanges for a new bot
token of that team; `uninstall` revokes a team's tokens (calls with them answer `token_revoked`). Each `Call`
records the team whose token made it.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

Payload = dict[str, Any]


@dataclass
class Call:
    """One request the fake received: `method` is the Web API method, or `upload` / `download` / `response`."""

    method: str
    path: str
    headers: dict[str, str]
    data: Payload
    body: bytes
    #: The team whose bot token made the call (None: no known token, or not a Web API call).
    team: str | None = None
    #: What the fake answered (Web API methods only).
    answer: Payload | None = None


@dataclass
class HostedFile:
    """A file the fake serves at its `url_private`, as a user's upload to Slack would be."""

    id: str
    name: str
    mimetype: str
    data: bytes
    filetype: str = "mp4"
    url_private: str = ""

    def file_object(self) -> Payload:
        """The file as Slack describes it in payloads and `files.info`."""
        return {
            "id": self.id,
            "name": self.name,
            "title": self.name,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "size": len(self.data),
            "url_private": self.url_private,
            "url_private_download": self.url_private,
            "mode": "hosted",
        }


@dataclass
class Share:
    """One post of an uploaded file in a channel, visible from `visible_at` (monotonic seconds)."""

    file_id: str
    filename: str
    channel: str
    ts: str
    thread_ts: str | None
    visible_at: float

    @property
    def visible(self) -> bool:
        return time.monotonic() >= self.visible_at


@dataclass
class FakeUser:
    """What `users.info` answers for one member."""

    id: str
    name: str = "member"
    is_admin: bool = False
    is_owner: bool = False

    def user_object(self) -> Payload:
        return {
            "id": self.id,
            "name": self.name,
            "real_name": self.name.title(),
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": False,
            "is_bot": False,
            "profile": {"display_name": self.name, "real_name": self.name.title()},
        }


@dataclass
class Grant:
    """What a one-time OAuth code is exchanged for: a new bot token of a team (or of a whole organisation)."""

    team_id: str | None
    token: str
    enterprise_id: str | None = None
    org_install: bool = False
    installer: str = "U0INSTALLER"
    #: With token rotation on, the token expires and comes with a refresh token.
    expires_in: int | None = None
    refresh_token: str | None = None


@dataclass
class FakeSlackAPI:
    """Slack's Web API as far as soracast uses it; start with `await start()`, stop with `await stop()`."""

    bot_token: str = "xoxb-test-token"
    team_id: str = "T0TEAM"
    bot_user_id: str = "U0BOT"
    calls: list[Call] = field(default_factory=list)
    files: dict[str, HostedFile] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    users: dict[str, FakeUser] = field(default_factory=dict)
    #: Web API method → Slack error code to answer with instead of `ok` (fault injection).
    errors: dict[str, str] = field(default_factory=dict)
    #: Web API method (or `upload`) → how many of its next calls do their work, then lose the answer.
    lost_answers: dict[str, int] = field(default_factory=dict)
    #: Seconds each answer takes (half on the way in, half on the way out), like Slack over the internet.
    latency: float = 0.0
    #: Seconds before a completed upload shows as shared (Slack shares files asynchronously).
    share_delay: float = 0.0
    #: Every post of an uploaded file, in order (a file completed twice appears twice).
    shares: list[Share] = field(default_factory=list)
    #: Called once a call's work is done and before its answer leaves (the soak kills soracast here).
    on_handled: Callable[[Call], Awaitable[None] | None] | None = None
    #: Direct-message channel (`D…`) → the user it is with, as `conversations.open` made them.
    dm_channels: dict[str, str] = field(default_factory=dict)
    #: Users soracast cannot open a direct message with (`conversations.open` answers `user_disabled`).
    dm_closed: set[str] = field(default_factory=set)
    url: str = ""
    #: The Slack app's credentials, checked by `oauth.v2.access`.
    client_id: str = "1111.2222"
    client_secret: str = "fake-client-secret"
    #: Every bot token the fake accepts, and the team it belongs to.
    teams_by_token: dict[str, str] = field(default_factory=dict)
    #: Tokens of a Grid organisation's installs: token → enterprise id.
    enterprises_by_token: dict[str, str] = field(default_factory=dict)
    #: Tokens Slack revoked (the app was uninstalled): calls with them answer `token_revoked`.
    revoked: set[str] = field(default_factory=set)
    #: One-time OAuth codes waiting for `oauth.v2.access`, and refresh tokens of rotating installs.
    grants: dict[str, Grant] = field(default_factory=dict)
    refreshes: dict[str, Grant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._pending_uploads: dict[str, str] = {}
        self._deleted: set[str] = set()
        self.teams_by_token.setdefault(self.bot_token, self.team_id)
        self._methods: dict[str, Callable[[Payload], Payload]] = {
            "views.open": self._view,
            "views.update": self._view,
            "views.push": self._view,
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.delete": self._delete_message,
            "chat.getPermalink": self._permalink,
            "conversations.open": self._open_conversation,
            "users.info": self._users_info,
            "files.info": self._files_info,
            "files.delete": self._delete_file,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    # --- lifecycle -------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What `AsyncWebClient(base_url=...)` needs: methods are POSTed to `{base_url}{method}`."""
        return f"{self.url}/api/"

    async def start(self) -> FakeSlackAPI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.post("/api/{method}", self._api),
                web.get("/api/{method}", self._api),
                web.post("/upload/{file_id}", self._upload),
                web.get("/files-pri/{file_id}/{name}", self._download),
                web.post("/response/{key}", self._response_url),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- what tests set up and read ----------------------------------------------------------------------------

    def host_file(self, name: str, data: bytes, mimetype: str = "video/mp4", filetype: str = "mp4") -> HostedFile:
        """Serve `data` as a Slack file (as if a user had uploaded it) and return it."""
        file_id = f"F{next(self._ids):07d}"
        hosted = HostedFile(id=file_id, name=name, mimetype=mimetype, data=data, filetype=filetype)
        hosted.url_private = f"{self.url}/files-pri/{file_id}/{name}"
        self.files[file_id] = hosted
        return hosted

    def add_user(self, user_id: str, name: str = "member", *, is_admin: bool = False) -> FakeUser:
        user = FakeUser(id=user_id, name=name, is_admin=is_admin)
        self.users[user_id] = user
        return user

    def response_url(self, key: str = "cmd") -> str:
        """A `response_url` for a payload; what is sent to it is recorded as a `response` call."""
        return f"{self.url}/response/{key}"

    def grant(
        self,
        code: str,
        team_id: str | None,
        *,
        enterprise_id: str | None = None,
        org_install: bool = False,
        rotating: bool = False,
    ) -> Grant:
        """Prepare what an installer's consent in `team_id` (or across organisation `enterprise_id`) gives the app:
        `code` comes back to the redirect URL, and `oauth.v2.access` trades it for the returned grant's token."""
        owner = team_id if not org_install else enterprise_id
        token = f"xoxb-{owner}-{next(self._ids):04d}-{code[-6:]}"
        found = Grant(team_id=team_id, token=token, enterprise_id=enterprise_id, org_install=org_install)
        if rotating:
            found.expires_in = 43200
            found.refresh_token = f"xoxe-1-{owner}-{next(self._ids):04d}"
        self.grants[code] = found
        return found

    def uninstall(self, team_id: str) -> None:
        """Slack revokes every token of a team (or organisation) when the app is removed there."""
        for token, team in self.teams_by_token.items():
            if team == team_id or self.enterprises_by_token.get(token) == team_id:
                self.revoked.add(token)
    def dms_to(self, user_id: str) -> list[Call]:
        """The `chat.postMessage` calls that went to a user's direct-message channel."""
        channels = {c for c, user in self.dm_channels.items() if user == user_id}
        return [c for c in self.calls_to("chat.postMessage") if c.data.get("channel") in channels]

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def posts_of(self, filename: str) -> list[Share]:
        """The posts of uploaded files with this name (one per completed upload of it, shared or not yet)."""
        return [s for s in self.shares if s.filename == filename]

    # --- HTTP handlers -----------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await request.read()
        data = _parse_body(request, body)
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        call = Call(method, request.path, dict(request.headers), data, body, team=self.teams_by_token.get(token))
        self.calls.append(call)
        await self._travel()
        if method == "oauth.v2.access":
            answer = self._oauth_access(authorization, data)
        elif token in self.revoked:
            answer = {"ok": False, "error": "token_revoked"}
        elif token not in self.teams_by_token:
            answer = {"ok": False, "error": "invalid_auth"}
        elif method == "auth.test":
            answer = self._auth_test(token)
        elif method in self.errors:
            answer = {"ok": False, "error": self.errors[method]}
        elif (handler := self._methods.get(method)) is None:
            answer = {"ok": False, "error": "unknown_method"}
        else:
            answer = handler(data)
        call.answer = answer
        await self._after(request, call)
        return _json(answer)

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        body = await request.read()
        call = Call("upload", request.path, dict(request.headers), {"file_id": file_id}, body)
        self.calls.append(call)
        await self._travel()
        if file_id not in self._pending_uploads:
            return web.Response(status=404, text="unknown upload")
        self.uploads[file_id] = body
        await self._after(request, call)
        return web.Response(text=f"OK - {len(body)}")

    async def _travel(self) -> None:
        if self.latency > 0:
            await asyncio.sleep(self.latency / 2)

    async def _after(self, request: web.Request, call: Call) -> None:
        """The work is done: tell the observer, lose the answer if asked to, else let it travel back."""
        if self.on_handled is not None:
            outcome = self.on_handled(call)
            if inspect.isawaitable(outcome):
                await outcome
        if self.lost_answers.get(call.method, 0) > 0:
            self.lost_answers[call.method] -= 1
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()  # never reaches the client: the connection is gone
        await self._travel()

    async def _download(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        self.calls.append(Call("download", request.path, dict(request.headers), {"file_id": file_id}, b""))
        hosted = self.files.get(file_id)
        if hosted is None:
            return web.Response(status=404)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.teams_by_token or token in self.revoked:
            # Slack answers an unauthenticated url_private fetch with its sign-in page, not the file.
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        return web.Response(body=hosted.data, content_type=hosted.mimetype)

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.read()
        data = json.loads(body or b"{}")
        self.calls.append(Call("response", request.path, dict(request.headers), data, body))
        return web.Response(text="ok")

    # --- Web API methods -----------------------------------------------------------------------------------------

    def _ts(self) -> str:
        return f"1700000000.{next(self._ids):06d}"

    def _auth_test(self, token: str) -> Payload:
        answer: Payload = {
            "ok": True,
            "url": "https://fake.slack.test/",
            "team": "Fake Team",
            "team_id": self.teams_by_token[token],
            "user": "soracast",
            "user_id": self.bot_user_id,
            "bot_id": "B0BOT",
        }
        if token in self.enterprises_by_token:
            answer["enterprise_id"] = self.enterprises_by_token[token]
            answer["is_enterprise_install"] = self.enterprises_by_token[token] == self.teams_by_token[token]
        return answer

    def _oauth_access(self, authorization: str, data: Payload) -> Payload:
        """`oauth.v2.access`: the app authenticates with its client id and secret (HTTP Basic, as slack-sdk
        sends them), then trades a one-time code — or, with token rotation, a refresh token — for a bot token."""
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {expected}":
            return {"ok": False, "error": "invalid_client"}
        if data.get("grant_type") == "refresh_token":
            found = self.refreshes.pop(str(data.get("refresh_token", "")), None)
            if found is None:
                return {"ok": False, "error": "invalid_refresh_token"}
            self.revoked.add(found.token)
            renewed = Grant(**{**found.__dict__, "token": f"{found.token}-r{next(self._ids)}",
                               "refresh_token": f"{found.refresh_token}-r{next(self._ids)}"})
            self._issue(renewed)
            return {"ok": True, "token_type": "bot", "access_token": renewed.token, "expires_in": renewed.expires_in,
                    "refresh_token": renewed.refresh_token}
        found = self.grants.pop(str(data.get("code", "")), None)
        if found is None:
            return {"ok": False, "error": "invalid_code"}
        self._issue(found)
        answer: Payload = {
            "ok": True,
            "app_id": "A0SORA",
            "authed_user": {"id": found.installer},
            "scope": "app_mentions:read,chat:write,commands,files:read,files:write,users:read",
            "token_type": "bot",
            "access_token": found.token,
            "bot_user_id": self.bot_user_id,
            "team": {"id": found.team_id, "name": f"Team {found.team_id}"} if found.team_id else None,
            "enterprise": {"id": found.enterprise_id, "name": "Grid"} if found.enterprise_id else None,
            "is_enterprise_install": found.org_install,
        }
        if found.refresh_token:
            answer |= {"expires_in": found.expires_in, "refresh_token": found.refresh_token}
        return answer

    def _issue(self, found: Grant) -> None:
        owner = found.enterprise_id if found.org_install else found.team_id
        assert owner is not None
        self.teams_by_token[found.token] = owner
        if found.enterprise_id:
            self.enterprises_by_token[found.token] = found.enterprise_id
        if found.refresh_token:
            self.refreshes[found.refresh_token] = found

    def _view(self, data: Payload) -> Payload:
        view = data.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        view = dict(view or {})
        view.setdefault("id", data.get("view_id") or f"V{next(self._ids):07d}")
        return {"ok": True, "view": view}

    def _post_message(self, data: Payload) -> Payload:
        ts = self._ts()
        return {"ok": True, "channel": data.get("channel"), "ts": ts, "message": {"ts": ts, "text": data.get("text")}}

    def _update_message(self, data: Payload) -> Payload:
        return {"ok": True, "channel": data.get("channel"), "ts": data.get("ts"), "text": data.get("text")}

    def _open_conversation(self, data: Payload) -> Payload:
        """A direct message with one user (the same channel each time); several users would be a group DM."""
        users = str(data.get("users", ""))
        if "," in users or not users:
            return {"ok": False, "error": "not_implemented_in_fake"}
        if users in self.dm_closed:
            return {"ok": False, "error": "user_disabled"}
        channel = next((c for c, u in self.dm_channels.items() if u == users), None) or f"D{next(self._ids):07d}"
        self.dm_channels[channel] = users
        return {"ok": True, "channel": {"id": channel}}

    def _permalink(self, data: Payload) -> Payload:
        channel, ts = str(data.get("channel", "")), str(data.get("message_ts", ""))
        if not channel or not ts:
            return {"ok": False, "error": "message_not_found"}
        link = f"https://fake.slack.test/archives/{channel}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _post_ephemeral(self, data: Payload) -> Payload:
        return {"ok": True, "message_ts": self._ts()}

    def _delete_message(self, data: Payload) -> Payload:
        return {"ok": True, "channel": data.get("channel"), "ts": data.get("ts")}

    def _users_info(self, data: Payload) -> Payload:
        user_id = str(data.get("user", ""))
        user = self.users.get(user_id) or FakeUser(id=user_id)
        return {"ok": True, "user": user.user_object()}

    def _files_info(self, data: Payload) -> Payload:
        file_id = str(data.get("file", ""))
        if file_id in self._deleted:
            return {"ok": False, "error": "file_deleted"}
        hosted = self.files.get(file_id)
        if hosted is None:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": hosted.file_object() | self._shares_of(file_id)}

    def _shares_of(self, file_id: str) -> Payload:
        """`shares` and `channels` of a file as `files.info` shows them: only posts already visible."""
        shares: dict[str, dict[str, list[Payload]]] = {}
        channels: list[str] = []
        for share in self.shares:
            if share.file_id != file_id or not share.visible:
                continue
            kind = "public" if share.channel.startswith("C") else "private"
            entry: Payload = {"ts": share.ts, "channel_name": share.channel, "reply_count": 0}
            if share.thread_ts:
                entry["thread_ts"] = share.thread_ts
            shares.setdefault(kind, {}).setdefault(share.channel, []).append(entry)
            if share.channel not in channels:
                channels.append(share.channel)
        return {"shares": shares, "channels": [c for c in channels if c.startswith("C")],
                "groups": [c for c in channels if c.startswith("G")], "ims": [c for c in channels if c[0] == "D"]}

    def _delete_file(self, data: Payload) -> Payload:
        file_id = str(data.get("file", ""))
        if file_id not in self.files:
            return {"ok": False, "error": "file_not_found"}
        self._deleted.add(file_id)
        del self.files[file_id]
        return {"ok": True}

    def _upload_url(self, data: Payload) -> Payload:
        file_id = f"F{next(self._ids):07d}"
        self._pending_uploads[file_id] = str(data.get("filename", "upload"))
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}

    def _complete_upload(self, data: Payload) -> Payload:
        files = data.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        done = []
        for item in files or []:
            file_id = item.get("id")
            if file_id not in self.uploads or file_id in self._deleted:
                return {"ok": False, "error": "file_not_found"}
            done.append({"id": file_id, "title": item.get("title") or self._pending_uploads.get(file_id)})
        channel = str(data.get("channel_id") or "")
        for item in done:
            name = self._pending_uploads[item["id"]]
            hosted = HostedFile(id=item["id"], name=name, mimetype="video/mp4", data=self.uploads[item["id"]])
            hosted.url_private = f"{self.url}/files-pri/{hosted.id}/{name}"
            self.files[hosted.id] = hosted
            if channel:
                thread = str(data.get("thread_ts") or "") or None
                visible_at = time.monotonic() + self.share_delay
                self.shares.append(Share(hosted.id, name, channel, self._ts(), thread, visible_at))
        return {"ok": True, "files": done}


def _parse_body(request: web.Request, body: bytes) -> Payload:
    """Query string, form fields and JSON merged: slack-sdk sends some methods one way, some another."""
    data: Payload = dict(request.query)
    content_type = request.headers.get("Content-Type", "")
    if "json" in content_type and body:
        data.update(json.loads(body))
    elif "form" in content_type and body:
        data.update(parse_qsl(body.decode(), keep_blank_values=True))
    return data


def _json(payload: Payload) -> web.Response:
    return web.json_response(payload)

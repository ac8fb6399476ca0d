"""`POST /slack/events`: what a request must be before slack-bolt sees it.

In this order, each refusal one 4xx and one log line: a body over the size cap (413); Slack's bare
`ssl_check=1` probe is answered 200 and goes no further (bolt answers it before any signature too); a missing,
stale or
wrong signature, checked on the raw bytes (401); bytes that are not UTF-8 (400); a content type Slack does not
send (415); a body that is not form data or JSON, or a `payload=` that is not a JSON object (400); a kind of
request soracast handles without what it must carry (400, see `envelope`). Only then is the request handed to
bolt, which answers kinds nobody handles with 404.

Bolt alone would parse the body before checking the signature (so unsigned garbage raised a traceback), and
reads any form containing the word "payload" as an interaction (so `/sora a payload of bricks` was lost);
the body parsed here is the one bolt's listeners get.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from adapters.slack.envelope import check_envelope, describe
from bot.chat.acks import AckGate
from bot.errors import MalformedRequest
from bot.web.http_door import Refused, read_body

#: Slack's largest requests (a view submission, a shortcut on a long message) are tens of kilobytes.
MAX_BODY_BYTES = 1024 * 1024
#: How old a signed request may be (Slack's own recommendation: five minutes).
TOLERANCE_SECONDS = 300

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v0=` + HMAC-SHA256 of `v0:{timestamp}:` + the raw body, as Slack signs a request."""
    signed = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Raise `Refused(401)` unless the request is signed with `secret` within the replay window.

    Computed on the raw bytes: slack-sdk's `SignatureVerifier` decodes the body as UTF-8 and converts the
    timestamp with `int()` first, so it raises on exactly the requests this must refuse.
    """
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        raise Refused(401, "Slack request without a signature")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Refused(401, "Slack request with a malformed timestamp")
    if abs((now if now is not None else time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        raise Refused(401, "Slack request outside the five-minute window (stale or replayed)")
    expected = slack_signature(secret, timestamp, body)
    if not (signature.isascii() and hmac.compare_digest(expected, signature)):
        raise Refused(401, "Slack request with a wrong signature")


def is_ssl_check(content_type: str, body: bytes) -> bool:
    """Slack's certificate probe (`ssl_check=1`, maybe a `token`, nothing else), which bolt answers before any
    signature check: answered 200 here too, and never dispatched."""
    if content_type != FORM or len(body) > 512:
        return False
    try:
        fields = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError):
        return False
    return fields.get("ssl_check") == "1" and set(fields) <= {"ssl_check", "token"}


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The request as bolt's listeners get it: form fields (an interaction's `payload` decoded) or a JSON event."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "signed Slack request whose body is not UTF-8") from None
    if not text:
        raise Refused(400, "signed Slack request with an empty body")
    if content_type == JSON:
        return _json_object(text, "body")
    if content_type != FORM:
        raise Refused(415, f"signed Slack request of type {content_type[:60]!r}")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise Refused(400, "signed Slack request whose body is not form data") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Refused(400, "signed Slack request that repeats a form field")
    if "payload" in fields:
        return _json_object(fields["payload"], "payload")
    return fields


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise Refused(400, f"signed Slack request whose {what} is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(400, f"signed Slack request whose {what} is not a JSON object")
    return value


def bolt_request(request: web.Request, body: bytes, parsed: dict[str, Any]) -> AsyncBoltRequest:
    """Bolt's request for a checked body, carrying the body as parsed here (bolt does not parse it again)."""
    made = AsyncBoltRequest(body="", query=request.query_string, headers=dict(request.headers))
    made.raw_body = body.decode("utf-8")  # what bolt's own signature check reads
    made.body = parsed
    try:
        made.context = build_async_context(AsyncBoltContext({}), parsed)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):
        # Bolt reads team, user and enterprise ids from the body assuming Slack's types.
        raise Refused(400, "signed Slack request with ids bolt cannot read") from None
    return made


class SlackDoor:
    """The aiohttp handler of `/slack/events`: the checks above, then bolt (acks counted by the AckGate)."""

    def __init__(self, app: AsyncApp, signing_secret: str, gate: AckGate) -> None:
        self._app = app
        self._secret = signing_secret
        self._gate = gate

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        # Counted until answered: work started by earlier requests waits, so a burst's acks go out first.
        self._gate.arrived()
        try:
            body = await read_body(request, MAX_BODY_BYTES)
            if is_ssl_check(request.content_type, body):
                return web.Response(status=200)
            verify_signature(self._secret, request.headers, body)
            parsed = parse_body(request.content_type, body)
            try:
                check_envelope(parsed)
            except MalformedRequest as err:
                raise Refused(400, err.message) from None
            return await to_aiohttp_response(await self._dispatch(bolt_request(request, body, parsed)))
        finally:
            self._gate.acknowledged()

    async def _dispatch(self, request: AsyncBoltRequest) -> BoltResponse:
        try:
            return await self._app.async_dispatch(request)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            # Bolt reads fields of kinds soracast does not handle on every request (and again in its error
            # handler), assuming Slack's shapes: a signed body that breaks that is refused, in one line that
            # says where.
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            raise Refused(
                400, f"{describe(request.body)} that bolt cannot read ({type(exc).__name__} at {where})"
            ) from None


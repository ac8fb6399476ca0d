"""Videos API webhooks: Standard Webhooks signatures, the replay window and redelivery."""

from __future__ import annotations

import base64
import json
import time

import pytest

from bot.signing import WebhookRejected, sign
from bot.web.webhooks import verify

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BODY = json.dumps({"id": "evt_1", "type": "video.completed", "data": {"id": "video_1"}}).encode()


def _headers(body: bytes = BODY, *, at: int | None = None, secret: str = SECRET, wid: str = "msg_1") -> dict[str, str]:
    ts = at if at is not None else int(time.time())
    return {"webhook-id": wid, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, wid, ts, body)}


def test_a_correctly_signed_event_is_accepted() -> None:
    event = verify(SECRET, _headers(), BODY)
    assert (event.type, event.data.id, event.id) == ("video.completed", "video_1", "msg_1")


def test_one_of_several_signatures_may_match() -> None:
    headers = _headers()
    headers["webhook-signature"] = "v1,bm9wZQ== " + headers["webhook-signature"]
    assert verify(SECRET, headers, BODY).data.id == "video_1"


@pytest.mark.parametrize("mutate", [
    lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b),
    lambda h, b: (h, b.replace(b"video_1", b"video_2")),
    lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
    lambda h, b: ({**h, "webhook-timestamp": "yesterday"}, b),
])
def test_tampered_or_incomplete_requests_are_refused(mutate) -> None:
    headers, body = mutate(_headers(), BODY)
    with pytest.raises(WebhookRejected):
        verify(SECRET, headers, body)


def test_an_old_timestamp_is_a_replay() -> None:
    old = int(time.time()) - 3600
    with pytest.raises(WebhookRejected, match="tolerance"):
        verify(SECRET, _headers(at=old), BODY)


def test_another_secret_does_not_verify() -> None:
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    with pytest.raises(WebhookRejected, match="signature"):
        verify(SECRET, _headers(secret=other), BODY)

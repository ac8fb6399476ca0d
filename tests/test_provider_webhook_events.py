"""What soracast reads of a provider's signed event, whatever shape it arrives in: Google's thin event, or one
carrying the interaction itself (as the SDK's stream events do); anything else is refused as not an event."""

from __future__ import annotations

import json

import pytest

from bot.web.http_door import Refused
from bot.web.provider_webhooks import GeminiEvent

META = {"soracast_generation": "gabcdefgh"}


@pytest.mark.parametrize(
    "event",
    [
        {"type": "interaction.completed", "data": {"id": "v1_abc", "user_metadata": META}},
        {"type": "interaction.completed", "data": {"interaction_id": "v1_abc"}, "user_metadata": META},
        {"type": "interaction.completed", "data": {"interaction": {"id": "v1_abc", "webhook_config": {
            "user_metadata": META}}}},
        {"event_type": "interaction.completed", "interaction": {"id": "v1_abc", "status": "completed",
                                                                "webhook_config": {"user_metadata": META}}},
        {"type": "interaction.completed", "data": {"id": "v1_abc", "status": "completed", "webhook_config": {
            "user_metadata": META}, "steps": [{"type": "model_output", "content": [{"type": "video", "data": "AA"}]}]}},
    ],
)
def test_the_interaction_and_its_generation_are_read_from_every_shape(event: dict) -> None:
    parsed = GeminiEvent.parse(json.dumps(event).encode())
    assert (parsed.kind, parsed.interaction_id, parsed.generation_id) == ("interaction.completed", "v1_abc",
                                                                          "gabcdefgh")


def test_metadata_that_is_not_a_generation_id_is_not_taken_for_one() -> None:
    event = {"type": "interaction.failed", "data": {"id": "v1_abc", "user_metadata": {"soracast_generation": "x'; --"}}}
    parsed = GeminiEvent.parse(json.dumps(event).encode())
    assert parsed.interaction_id == "v1_abc" and parsed.generation_id is None


@pytest.mark.parametrize("body", [b"[1]", b'{"data": {}}', b"\xff\xfe", b'{"type": 3}'])
def test_a_body_that_is_not_an_event_is_refused(body: bytes) -> None:
    with pytest.raises(Refused) as caught:
        GeminiEvent.parse(body)
    assert caught.value.status == 400

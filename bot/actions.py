"""Buttons, as ids that survive restarts: `soracast:<action>:<id>` — a generation id for a video's buttons, a
character id for Ask, a request id for Approve / Decline."""

from __future__ import annotations

import re
from enum import StrEnum

PREFIX = "soracast"


class VideoAction(StrEnum):
    """What a button does. Under a video: Cancel while it waits in line; once finished, the others (each opens a
    form or acts at once, like Delete). Under a refusal, Ask (its owner for a character); under a request, Approve
    and Decline."""

    REMIX = "remix"
    EXTEND = "extend"
    CHARACTER = "character"
    DELETE = "delete"
    CANCEL = "cancel"
    ASK = "ask"
    APPROVE = "approve"
    DECLINE = "decline"

    @property
    def label(self) -> str:
        return {
            "remix": "Remix",
            "extend": "Extend",
            "character": "Make character",
            "delete": "Delete",
            "cancel": "Cancel",
            "ask": "Ask to use it",
            "approve": "Approve",
            "decline": "Decline",
        }[self.value]


#: The buttons a finished video may carry, in order (`GenerationService.offered_actions` says which apply).
FINISHED_ACTIONS = (VideoAction.REMIX, VideoAction.EXTEND, VideoAction.CHARACTER, VideoAction.DELETE)


def encode_action(action: VideoAction, generation_id: str) -> str:
    """The custom id / action id a platform stores on the button."""
    return f"{PREFIX}:{action.value}:{generation_id}"


def decode_action(custom_id: str) -> tuple[VideoAction, str] | None:
    """The action and the id it acts on, or None if it is not one of ours."""
    prefix, _, rest = custom_id.partition(":")
    action, _, generation_id = rest.partition(":")
    if prefix != PREFIX or not generation_id:
        return None
    try:
        return VideoAction(action), generation_id
    except ValueError:
        return None


#: A whole button id of ours (`decode_action` also reads a few looser forms); every id it carries is lowercase.
ACTION_ID = re.compile(rf"^{PREFIX}:(?:{'|'.join(a.value for a in VideoAction)}):[a-z0-9]{{1,64}}$")

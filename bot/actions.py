"""Buttons on a video's message, as ids that survive restarts: `soracast:<action>:<generation id>`."""

from __future__ import annotations

import re
from enum import StrEnum

PREFIX = "soracast"


class VideoAction(StrEnum):
    """What a button under a video does: Cancel while it waits in line; once finished, the others (each opens a
    form or acts at once, like Delete)."""

    REMIX = "remix"
    EXTEND = "extend"
    CHARACTER = "character"
    DELETE = "delete"
    CANCEL = "cancel"

    @property
    def label(self) -> str:
        return {
            "remix": "Remix",
            "extend": "Extend",
            "character": "Make character",
            "delete": "Delete",
            "cancel": "Cancel",
        }[self.value]


#: The buttons a finished video may carry, in order (`GenerationService.offered_actions` says which apply).
FINISHED_ACTIONS = (VideoAction.REMIX, VideoAction.EXTEND, VideoAction.CHARACTER, VideoAction.DELETE)


def encode_action(action: VideoAction, generation_id: str) -> str:
    """The custom id / action id a platform stores on the button."""
    return f"{PREFIX}:{action.value}:{generation_id}"


def decode_action(custom_id: str) -> tuple[VideoAction, str] | None:
    """The action and generation id of a button id, or None if it is not one of ours."""
    prefix, _, rest = custom_id.partition(":")
    action, _, generation_id = rest.partition(":")
    if prefix != PREFIX or not generation_id:
        return None
    try:
        return VideoAction(action), generation_id
    except ValueError:
        return None


#: A whole button id of ours (`decode_action` also reads a few looser forms); generation ids are lowercase.
ACTION_ID = re.compile(rf"^{PREFIX}:(?:{'|'.join(a.value for a in VideoAction)}):[a-z0-9]{{1,64}}$")

"""Buttons and forms: persistent video buttons, list paging, and the modals they open.

Buttons are `DynamicItem`s: discord.py matches a click by the pattern of its custom id, so a button posted
before a restart still works after it. Modal submits are routed by custom id too (see `interactions.py`),
because discord.py only routes modals it still holds in memory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

import discord
from discord import ui

from bot.actions import FINISHED_ACTIONS, PREFIX, VideoAction, decode_action, encode_action

#: Field ids inside the modals.
PROMPT, SECONDS, HANDLE, NAME, START, CONFIRM = "prompt", "seconds", "handle", "name", "start", "confirm"
#: The value of the one box registering must have ticked (the right to use the character's subject).
CONFIRMED = "yes"

#: Custom id of the "Make character" form opened on someone's message (not one of our videos).
CLIP_FORM_PREFIX = "soracast-clip:"
#: How long an opened form is kept in discord.py's memory; our router does not need it.
MODAL_TIMEOUT = 900.0

_ACTIONS = "|".join(re.escape(a.value) for a in VideoAction)
_STYLES = {
    VideoAction.DELETE: discord.ButtonStyle.danger,
    VideoAction.REMIX: discord.ButtonStyle.primary,
    VideoAction.ASK: discord.ButtonStyle.primary,
    VideoAction.APPROVE: discord.ButtonStyle.success,
    VideoAction.DECLINE: discord.ButtonStyle.secondary,
}


class ComponentHandlers(Protocol):
    """What the buttons call; the client carries one as `client.soracast`."""

    async def video_button(self, interaction: discord.Interaction, action: VideoAction, generation_id: str) -> None: ...

    async def list_page(self, interaction: discord.Interaction, page: int) -> None: ...


def handlers_of(interaction: discord.Interaction) -> ComponentHandlers:
    return interaction.client.soracast  # type: ignore[attr-defined,no-any-return]


class VideoButton(ui.DynamicItem[ui.Button], template=rf"{PREFIX}:(?P<action>{_ACTIONS}):(?P<generation>[a-z0-9]+)"):
    """Every soracast button: Remix / Extend / Make character / Delete under a posted video, Cancel under a
    waiting one, Ask under a refusal, Approve / Decline under a request. The custom id is `bot.actions`' and
    carries what the button acts on (a generation, character or request id), so it works after a restart."""

    def __init__(self, action: VideoAction, generation_id: str, label: str | None = None) -> None:
        super().__init__(
            ui.Button(
                label=(label or action.label)[:80],
                style=_STYLES.get(action, discord.ButtonStyle.secondary),
                custom_id=encode_action(action, generation_id),
            )
        )
        self.action = action
        #: The id the button acts on (a generation's for a video's buttons).
        self.generation_id = generation_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: ui.Button, match: re.Match[str], /
    ) -> VideoButton:
        decoded = decode_action(item.custom_id or "")
        if decoded is None:  # the template and bot.actions disagree: not ours after all
            raise ValueError(f"not a soracast action: {item.custom_id!r}")
        return cls(*decoded)

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).video_button(interaction, self.action, self.generation_id)


class ListPageButton(ui.DynamicItem[ui.Button], template=r"soracast-list:(?P<direction>prev|next):(?P<page>\d{1,5})"):
    """Prev / Next under `/character list`; the page to show is in the custom id."""

    def __init__(self, direction: str, page: int, *, disabled: bool = False) -> None:
        super().__init__(
            ui.Button(
                label="Prev" if direction == "prev" else "Next",
                style=discord.ButtonStyle.secondary,
                custom_id=f"soracast-list:{direction}:{page}",
                disabled=disabled,
            )
        )
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: ui.Button, match: re.Match[str], /
    ) -> ListPageButton:
        return cls(match["direction"], int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await handlers_of(interaction).list_page(interaction, self.page)


def video_view(generation_id: str, actions: Sequence[VideoAction] = FINISHED_ACTIONS) -> ui.View:
    """The buttons under a video (the core says which: Cancel while it waits, no Remix where the backend cannot
    remix)."""
    view = ui.View(timeout=None)
    for action in actions:
        view.add_item(VideoButton(action, generation_id))
    return view


def offers_view(offers: Sequence[tuple[VideoAction, str, str]]) -> ui.View | None:
    """The buttons a refusal offers (Ask its owner), or None."""
    if not offers:
        return None
    view = ui.View(timeout=None)
    for action, target, label in offers[:25]:
        view.add_item(VideoButton(action, target, label))
    return view


def request_view(request_id: str) -> ui.View:
    """Approve / Decline under a request to use a character."""
    view = ui.View(timeout=None)
    view.add_item(VideoButton(VideoAction.APPROVE, request_id))
    view.add_item(VideoButton(VideoAction.DECLINE, request_id))
    return view


def requests_view(request_ids: Sequence[str]) -> ui.View | None:
    """A row of Approve / Decline per listed request (`/character requests`)."""
    if not request_ids:
        return None
    view = ui.View(timeout=None)
    for row, request_id in enumerate(request_ids[:5]):
        for action in (VideoAction.APPROVE, VideoAction.DECLINE):
            button = VideoButton(action, request_id, f"{action.label} {request_id}")
            button.row = row
            view.add_item(button)
    return view


def delete_view(generation_ids: Sequence[str]) -> ui.View | None:
    """A Delete button per listed video (`/character videos`)."""
    if not generation_ids:
        return None
    view = ui.View(timeout=None)
    for generation_id in generation_ids[:25]:
        view.add_item(VideoButton(VideoAction.DELETE, generation_id, f"Delete {generation_id}"))
    return view


def list_view(page: int, pages: int) -> ui.View | None:
    """Prev / Next for a list of more than one page; None when everything fits on one."""
    if pages <= 1:
        return None
    view = ui.View(timeout=None)
    view.add_item(ListPageButton("prev", max(page - 1, 0), disabled=page <= 0))
    view.add_item(ListPageButton("next", min(page + 1, pages - 1), disabled=page >= pages - 1))
    return view


# --- modals ------------------------------------------------------------------------------------------------


def _field(label: str, custom_id: str, **options: Any) -> ui.Label:
    return ui.Label(text=label, component=ui.TextInput(custom_id=custom_id, **options))


def remix_modal(generation_id: str) -> ui.Modal:
    modal = ui.Modal(
        title="Remix this video", custom_id=encode_action(VideoAction.REMIX, generation_id), timeout=MODAL_TIMEOUT
    )
    modal.add_item(
        _field(
            "What should change?",
            PROMPT,
            style=discord.TextStyle.paragraph,
            max_length=4000,
            placeholder="Same scene, but at night in the rain",
        )
    )
    return modal


def extend_modal(generation_id: str, allowed_seconds: str, default_seconds: int) -> ui.Modal:
    modal = ui.Modal(
        title="Extend this video", custom_id=encode_action(VideoAction.EXTEND, generation_id), timeout=MODAL_TIMEOUT
    )
    modal.add_item(
        _field(
            "What happens next?",
            PROMPT,
            style=discord.TextStyle.paragraph,
            max_length=4000,
            placeholder="@mascot turns and waves at the camera",
        )
    )
    modal.add_item(
        _field(
            "Seconds to add",
            SECONDS,
            required=False,
            max_length=4,
            placeholder=f"{allowed_seconds} (default {default_seconds})",
        )
    )
    return modal


def character_modal(custom_id: str, *, ask_name: bool) -> ui.Modal:
    """Handle (and optionally a display name), a start second, and the box confirming the right to use the
    subject (a required one-option group: Discord's lone checkbox cannot be required)."""
    modal = ui.Modal(title="Make a character", custom_id=custom_id, timeout=MODAL_TIMEOUT)
    modal.add_item(_field("Handle", HANDLE, min_length=2, max_length=33, placeholder="mascot"))
    if ask_name:
        modal.add_item(_field("Display name", NAME, required=False, max_length=80, placeholder="Captain Mascot"))
    modal.add_item(_field("Start second", START, required=False, max_length=8, placeholder="0"))
    confirm = ui.CheckboxGroup(custom_id=CONFIRM, required=True, min_values=1, max_values=1)
    confirm.add_option(label="I have the right to use its subject", value=CONFIRMED, description=RIGHTS_OPTION)
    modal.add_item(ui.Label(text="Rights", component=confirm))
    return modal


#: The checkbox's description (Discord allows 100 characters).
RIGHTS_OPTION = "The person in it agreed, or it is my pet, mascot or product"


def rights_confirmed(values: dict[str, str]) -> bool:
    """Whether a submitted character form has its rights box ticked."""
    return CONFIRMED in values.get(CONFIRM, "").split(",")


def modal_values(data: Any) -> dict[str, str]:
    """The text each field of a submitted modal holds, by field id (labels and legacy action rows alike)."""
    values: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            if "custom_id" in node and "value" in node:
                values[str(node["custom_id"])] = str(node["value"] or "")
            elif "custom_id" in node and isinstance(node.get("values"), list):
                # A checkbox group or select: its chosen values, comma-separated.
                values[str(node["custom_id"])] = ",".join(str(v) for v in node["values"])
            walk(node.get("components"))
            walk(node.get("component"))

    walk((data or {}).get("components"))
    return values

"""The right to use a character's subject: confirmed by whoever registers it (a box in a form, `confirm:` on
Discord, `--confirm` in text), stored with who and when, and named when a video service refuses a likeness."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.chat import present
from bot.errors import HumanLikenessRefused, RightsNotConfirmed
from bot.models import Character

#: Marks a failure text that already names the characters' confirmations (a delivery may be tried again).
_NOTED = "Right to use its subject:"


def require_rights(confirmed: bool) -> None:
    """Refuse a registration whose registrant did not confirm the right to use the subject."""
    if confirmed:
        return
    raise RightsNotConfirmed(
        "Registering a character needs your confirmation that you have the right to use its subject — the person "
        "(with their consent), pet, mascot or product the clip shows.",
        hint="Confirm it and try again: tick the box in the form, choose `confirm: True` on Discord, or add "
        "`--confirm` to the command.",
    )


def confirmation_note(characters: Sequence[Character], person: Callable[[str], str] = present.mention) -> str:
    """Which characters of a refused request had their rights confirmed, by whom and when."""
    parts = [f"@{c.handle}: {present.rights_text(c, person)}" for c in characters]
    return f"{_NOTED} " + "; ".join(parts) + "." if parts else ""


def explain_refusal(error: HumanLikenessRefused, characters: Sequence[Character]) -> HumanLikenessRefused:
    """A provider's likeness refusal that names the rights confirmation: it did not sway the provider, which
    refuses anything that looks like a real person whatever the permission."""
    note = confirmation_note(characters)
    if note and _NOTED not in (error.hint or ""):
        error.hint = (
            f"{note} The video service refuses what looks like a real person even with that confirmation: use "
            "characters that are mascots, objects, pets or drawn characters."
        )
        error.people = tuple(c.rights_confirmed_by for c in characters if c.rights_confirmed_by)
    return error


def explain_failure(message: str, characters: Sequence[Character]) -> str:
    """A failed video's stored message, with the same note (once). It is shown in the channel: the registrant is
    not named there, only that they confirmed."""
    note = confirmation_note(characters, lambda _person: "its registrant")
    if not note or _NOTED in message:
        return message
    return f"{message} {note} The video service refuses what looks like a real person even so."

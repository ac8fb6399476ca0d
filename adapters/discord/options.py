"""What discord.py hands a command, checked before anything is acknowledged or asked of the core.

discord.py matches an interaction to a command and converts its options, but passes a string option that
arrived as a number, or an attachment that is not in `resolved`, straight through. A missing or mistyped
option is answered privately with `MalformedRequest` and one log line, never a traceback or a public message.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot.errors import MalformedRequest

_HINT = (
    "Try again; if it keeps happening, soracast's commands in this server may be out of date — ask an admin to "
    "restart soracast so it publishes them again."
)


def malformed(option: str | None = None) -> MalformedRequest:
    """The refusal of an interaction Discord sent in a shape soracast does not understand."""
    what = f"without a usable `{option}` option" if option else "in a form soracast does not understand"
    return MalformedRequest(f"Discord sent this command {what}.", hint=_HINT)


def text(value: object, option: str) -> str:
    """A required string option."""
    if not isinstance(value, str):
        raise malformed(option)
    return value


def optional_text(value: object, option: str) -> str | None:
    """An optional string option (None when left out)."""
    return None if value is None else text(value, option)


def attachment(value: object, option: str) -> discord.Attachment:
    """An attachment option that Discord also described in `resolved`."""
    if not isinstance(value, discord.Attachment):
        raise malformed(option)
    return value


def flag(value: object, option: str) -> bool:
    """A boolean option."""
    if not isinstance(value, bool):
        raise malformed(option)
    return value


def user(value: object, option: str) -> discord.abc.User:
    """A user option that Discord also described in `resolved` (a member, or a user outside the cache)."""
    if not isinstance(value, discord.User | discord.Member):
        raise malformed(option)
    return value


def optional_user(value: object, option: str) -> discord.abc.User | None:
    return None if value is None else user(value, option)


def optional_role(value: object, option: str) -> discord.Role | None:
    """An optional role option that Discord also described in `resolved`."""
    if value is not None and not isinstance(value, discord.Role):
        raise malformed(option)
    return value


def is_malformed(error: app_commands.AppCommandError) -> bool:
    """Whether discord.py refused the interaction itself: an unknown command or subcommand, options that do not
    fit the command's signature or choices, or data its own parser calls ill-formed."""
    known = (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch, app_commands.TransformerError)
    # discord.py raises the bare base class for "should not happen if Discord sent well-formed data".
    return isinstance(error, known) or type(error) is app_commands.AppCommandError

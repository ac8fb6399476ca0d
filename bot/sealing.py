"""Secrets kept at rest (a workspace's bot token, say) are sealed with Fernet under `SORACAST_SECRET_KEY`.

The variable holds one or more Fernet keys, comma-separated. The first seals everything written from now on;
every one of them opens what is stored, so a key is rotated by putting a new one first and keeping the old one
after it until `soracast rekey` has sealed everything again under the new one. A key that is dropped before
that leaves what it sealed unreadable: for Slack installations, those workspaces must add soracast again.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.config import Settings
from bot.errors import ConfigError

VARIABLE = "SORACAST_SECRET_KEY"


class Unsealable(Exception):
    """No configured key opens a sealed value (the key it was sealed with is gone, or the value was altered)."""


def _split(keys: str) -> list[str]:
    return [part.strip() for part in keys.split(",") if part.strip()]


def check_keys(keys: str) -> list[Fernet]:
    """One Fernet per comma-separated key; ValueError names a malformed one by position, never by value."""
    parts = _split(keys)
    if not parts:
        raise ValueError("holds no key")
    fernets = []
    for position, key in enumerate(parts, 1):
        try:
            fernets.append(Fernet(key.encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            where = f"key {position} of {len(parts)}" if len(parts) > 1 else "the key"
            raise ValueError(
                f"{where} is not a Fernet key (44 characters of url-safe base64; make one with `soracast new-key`)"
            ) from None
    return fernets


def new_key() -> str:
    """A fresh Fernet key for SORACAST_SECRET_KEY."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Seals and opens short secrets (tokens) with the configured keys."""

    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet(check_keys(keys))

    @classmethod
    def from_settings(cls, settings: Settings, why: str) -> SecretBox:
        """The box for `settings`; a missing or malformed key is a ConfigError naming the variable."""
        if settings.secret_key is None or not settings.secret_key.get_secret_value().strip():
            raise ConfigError(f"{VARIABLE} is not set.", hint=f"{why} Make a key with `soracast new-key`.")
        try:
            return cls(settings.secret_key.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"{VARIABLE}: {exc}") from None

    def seal(self, plain: str) -> str:
        """`plain` encrypted and authenticated under the first key."""
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        """What `seal` was given; `Unsealable` when no configured key opens it."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise Unsealable("no key in SORACAST_SECRET_KEY opens this value") from None

    def reseal(self, sealed: str) -> str:
        """The same secret sealed again under the first key (after a key rotation)."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise Unsealable("no key in SORACAST_SECRET_KEY opens this value") from None

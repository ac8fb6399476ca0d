"""Logging set-up: plain lines for operators, with every configured secret masked as a last line of defence."""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import urlsplit

from pydantic import SecretStr

from bot.config import Settings

# Tokens that are not configured secrets but travel in URLs: Discord interaction and webhook tokens, Slack
# response URLs and tokens, API keys. Masked wherever they appear, tracebacks included.
_TOKEN_PATTERNS = [
    re.compile(r"(/webhooks/\d+/)[A-Za-z0-9_.-]{20,}"),
    re.compile(r"(/interactions/\d+/)[A-Za-z0-9_.-]{20,}"),
    re.compile(r"(hooks\.slack\.com/)[A-Za-z0-9_/.-]+"),
    re.compile(r"()\bxox[abpe]-[A-Za-z0-9-]{8,}"),
    re.compile(r"()\bxapp-[A-Za-z0-9-]{8,}"),
    re.compile(r"()\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"()\bwhsec_[A-Za-z0-9+/=]{16,}"),
]


def mask_tokens(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with every configured secret and every token-shaped string replaced by `***`."""
    for secret in secrets:
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class MaskingFormatter(logging.Formatter):
    """A formatter that masks secrets in the finished line, so exception tracebacks are covered too."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return mask_tokens(super().format(record), self._secrets)


class SecretMask(logging.Filter):
    """Replace any configured token or key that slips into a log record with `***`."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        # Short values would mask ordinary words; real tokens are long.
        self._secrets = [s for s in secrets if len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self._secrets:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold: each `SecretStr` field, so a newly added key is masked without a list to
    keep up, plus each key of a rotation list and the database password."""
    secrets: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            secrets.append(value.get_secret_value())
    if settings.secret_key is not None:
        secrets += [key.strip() for key in settings.secret_key.get_secret_value().split(",") if key.strip()]
    try:
        database_password = urlsplit(settings.resolved_database_url).password
    except ValueError:
        database_password = None
    if database_password:
        secrets.append(database_password)
    return secrets


def setup_logging(settings: Settings) -> None:
    """Log to stderr at the configured level; secrets masked on every handler."""
    secrets = configured_secrets(settings)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    handler.addFilter(SecretMask(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # httpx logs every request URL at INFO; keep it for debugging only.
    logging.getLogger("httpx").setLevel(logging.WARNING)

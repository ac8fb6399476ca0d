"""Logging set-up: plain lines for operators, with every configured secret masked as a last line of defence."""

from __future__ import annotations

import logging
import sys

from bot.config import Settings


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
    values = [
        settings.openai_api_key,
        settings.discord_token,
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.webhook_secret,
    ]
    return [v.get_secret_value() for v in values if v is not None]


def setup_logging(settings: Settings) -> None:
    """Log to stderr at the configured level; secrets masked on every handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretMask(configured_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # httpx logs every request URL at INFO; keep it for debugging only.
    logging.getLogger("httpx").setLevel(logging.WARNING)

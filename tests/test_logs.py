"""Secrets never reach the logs, tracebacks included."""

from __future__ import annotations

import io
import logging

from bot.cli.logs import MaskingFormatter, configured_secrets, mask_tokens
from bot.config import Settings


def test_token_shaped_strings_are_masked() -> None:
    text = (
        "POST https://discord.com/api/v10/webhooks/123456/aW50ZXJhY3Rpb246MTIzNDU2Nzg5OnRva2Vu/messages "
        "POST /interactions/99/aW50ZXJhY3Rpb246MTIzNDU2Nzg5OnRva2Vu/callback "
        "url https://hooks.slack.com/commands/T1/123/abcDEF "
        "xoxb-1111-2222-abcdefghijkl sk-proj-abcdefghijklmnopqrstuvwxyz"
    )
    masked = mask_tokens(text, ["my-configured-secret"])
    for leaked in ("aW50ZXJhY3Rpb24", "abcDEF", "xoxb-1111", "sk-proj-abc"):
        assert leaked not in masked
    assert "/webhooks/123456/***" in masked and "/interactions/99/***" in masked


def test_a_traceback_carrying_a_secret_is_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(message)s", ["configured-secret-value"]))
    logger = logging.getLogger("soracast-test-masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise RuntimeError("request failed with token configured-secret-value")
    except RuntimeError:
        logger.exception("boom")
    logger.removeHandler(handler)
    output = stream.getvalue()
    assert "RuntimeError" in output and "configured-secret-value" not in output


def test_every_configured_key_is_masked_including_the_video_backends() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        gemini_api_key="AIzaSy-gemini-key-under-test",
        fal_key="fal-key-id:fal-key-secret-under-test",
        openai_api_key="sk-openai-key-under-test-000",
    )
    secrets = configured_secrets(settings)
    line = mask_tokens(
        "calling with AIzaSy-gemini-key-under-test and fal-key-id:fal-key-secret-under-test", secrets
    )
    assert "gemini-key-under-test" not in line and "fal-key-secret-under-test" not in line
    assert "sk-openai-key-under-test-000" in secrets

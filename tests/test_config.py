"""Settings: environment and .env, validated once, failing with one line that names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import AuthStyle, load_settings
from bot.errors import ConfigError


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DISCORD_TOKEN", "PORT"):
        monkeypatch.delenv(name, raising=False)


def test_no_key_means_the_offline_renderer() -> None:
    settings = load_settings()
    assert settings.use_offline
    assert settings.resolved_database_url == "sqlite:///data/soracast.db"


def test_env_and_dotenv_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-test-123456789\nSORACAST_API_AUTH_STYLE=api-key\n")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://res.openai.azure.com/openai/v1/")
    settings = load_settings()
    assert not settings.use_offline
    assert settings.api_auth_style is AuthStyle.API_KEY
    assert settings.api_base_url == "https://res.openai.azure.com/openai/v1"
    assert "sk-test" not in repr(settings)


def test_lists_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORACAST_ALLOWED_SECONDS", "4, 8, 12, 16")
    assert load_settings().allowed_seconds == ["4", "8", "12", "16"]


@pytest.mark.parametrize("name, value, named", [
    ("SORACAST_POLL_INTERVAL", "soon", "SORACAST_POLL_INTERVAL"),
    ("OPENAI_BASE_URL", "api.openai.com", "OPENAI_BASE_URL"),
    ("PORT", "99999", "PORT"),
    ("SORACAST_DEFAULT_SIZE", "640x480", "SORACAST_DEFAULT_SIZE"),
])
def test_a_malformed_setting_fails_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert named in caught.value.message
    assert "\n" not in caught.value.message

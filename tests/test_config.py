"""Settings: environment and .env, validated once, failing with one line that names the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import build_app, open_storage
from bot.cli.logs import configured_secrets
from bot.config import AuthStyle, BackendChoice, load_settings
from bot.errors import ConfigError, StorageUnavailable
from storage.postgres import PostgresStorage
from storage.sqlite import SQLiteStorage


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DISCORD_TOKEN", "PORT", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                 "GOOGLE_GEMINI_BASE_URL", "FAL_KEY", "SORACAST_BACKEND", "SORACAST_DATABASE_URL", "DATABASE_URL"):
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
    ("SORACAST_BACKEND", "sora", "SORACAST_BACKEND"),
    ("SORACAST_OFFLINE_AS", "offline", "SORACAST_OFFLINE_AS"),
    ("SORACAST_CLIP_SECONDS", "5", "SORACAST_CLIP_SECONDS"),
    ("SORACAST_PRICES", "kling-o1", "SORACAST_PRICES"),
])
def test_a_malformed_setting_fails_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert named in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("variables, expected", [
    ({}, BackendChoice.OFFLINE),
    ({"GEMINI_API_KEY": "g-key"}, BackendChoice.GEMINI),
    ({"GOOGLE_API_KEY": "g-key"}, BackendChoice.GEMINI),
    ({"OPENAI_API_KEY": "sk-key"}, BackendChoice.OPENAI),
    ({"OPENAI_API_KEY": "sk-key", "GEMINI_API_KEY": "g-key"}, BackendChoice.GEMINI),
    ({"GEMINI_API_KEY": "g-key", "SORACAST_OFFLINE": "true"}, BackendChoice.OFFLINE),
    ({"GEMINI_API_KEY": "g-key", "SORACAST_BACKEND": "offline"}, BackendChoice.OFFLINE),
])
def test_auto_picks_the_backend_whose_key_is_set(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: BackendChoice
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert load_settings().active_backend is expected


async def test_a_chosen_backend_without_its_key_stops_start_up_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SORACAST_BACKEND", "gemini")
    with pytest.raises(ConfigError) as caught:
        await build_app(load_settings(data_dir=tmp_path / "data"))
    assert "GEMINI_API_KEY" in caught.value.message


async def test_a_default_the_model_does_not_make_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SORACAST_OFFLINE_AS", "openai")
    monkeypatch.setenv("SORACAST_DEFAULT_SIZE", "640x480")
    with pytest.raises(ConfigError) as caught:
        await build_app(load_settings(data_dir=tmp_path / "data"))
    assert "SORACAST_DEFAULT_SIZE" in caught.value.message and "1280x720" in caught.value.message
    assert "\n" not in caught.value.message


# --- storage: SQLite or Postgres, chosen by the database URL -----------------------------------------------


@pytest.mark.parametrize("variables, engine", [
    ({}, SQLiteStorage),
    ({"SORACAST_DATABASE_URL": "sqlite:///elsewhere/soracast.db"}, SQLiteStorage),
    ({"SORACAST_DATABASE_URL": "postgresql://soracast@db.internal:5432/soracast"}, PostgresStorage),
    ({"DATABASE_URL": "postgres://u:pw@db.internal/app?sslmode=require"}, PostgresStorage),
    ({"SORACAST_DATABASE_URL": "sqlite:///mine.db", "DATABASE_URL": "postgres://db.internal/app"}, SQLiteStorage),
])
def test_the_database_url_picks_the_storage_engine(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], engine: type
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert isinstance(open_storage(load_settings()), engine)


@pytest.mark.parametrize("name, value", [
    ("SORACAST_DATABASE_URL", "mysql://u:hunter2-secret@db/app"),
    ("DATABASE_URL", "mysql://u:hunter2-secret@db/app"),
    ("DATABASE_URL", "postgresql://u:hunter2-secret@db:fivefourthreetwo/app"),
    ("SORACAST_DATABASE_URL", "sqlite://relative.db"),
])
def test_a_bad_database_url_stops_start_up_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        open_storage(load_settings())
    assert caught.value.message.startswith(f"{name}: ")
    assert "hunter2" not in caught.value.user_text() and "\n" not in caught.value.message


async def test_a_postgres_url_the_driver_refuses_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1:1/app?sslmode=sometimes")
    with pytest.raises(ConfigError) as caught:
        await open_storage(load_settings()).open()
    assert caught.value.message.startswith("DATABASE_URL: ") and "sslmode" in caught.value.message


async def test_an_unreachable_postgres_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 on this machine: nothing listens, so the connection is refused at once (no network involved).
    monkeypatch.setenv("SORACAST_DATABASE_URL", "postgresql://soracast:hunter2-secret@127.0.0.1:1/app")
    with pytest.raises(StorageUnavailable) as caught:
        await open_storage(load_settings()).open()
    text = caught.value.user_text()
    assert "soracast@127.0.0.1:1/app" in text and "SORACAST_DATABASE_URL" in text
    assert "hunter2" not in text


def test_the_database_password_is_never_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://soracast:hunter2-secret@db.internal/app")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2-secret" in configured_secrets(settings)

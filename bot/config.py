"""Settings from the environment and an optional `.env`, validated once at start-up."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError

ENV_PREFIX = "SORACAST_"


class AuthStyle(StrEnum):
    """How the key is sent: OpenAI's `Authorization: Bearer`, or Azure's `api-key` header."""

    BEARER = "bearer"
    API_KEY = "api-key"


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything soracast reads from the environment. Names are `SORACAST_*` unless noted."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- Videos API ---
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    api_base_url: str = Field(default="https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL")
    api_auth_style: AuthStyle = AuthStyle.BEARER
    #: Force the built-in offline renderer even with a key set.
    offline: bool = False
    api_timeout: float = Field(default=60.0, gt=0)
    api_max_retries: int = Field(default=4, ge=0, le=10)
    #: Seconds between status polls when the API does not say (`openai-poll-after-ms`).
    poll_interval: float = Field(default=5.0, gt=0)
    #: Offline renderer only: how fast simulated jobs run (2.0 = twice as fast).
    offline_time_scale: float = Field(default=1.0, gt=0)

    # --- videos ---
    default_model: str = "sora-2"
    default_seconds: str = "4"
    default_size: str = "1280x720"
    allowed_models: Annotated[list[str], NoDecode] = ["sora-2", "sora-2-pro"]
    allowed_seconds: Annotated[list[str], NoDecode] = ["4", "8", "12"]
    allowed_sizes: Annotated[list[str], NoDecode] = ["720x1280", "1280x720", "1024x1792", "1792x1024"]
    max_characters_per_video: int = Field(default=2, ge=1, le=10)
    max_prompt_chars: int = Field(default=4000, ge=10, le=32000)

    # --- clips ---
    max_upload_mb: float = Field(default=100.0, gt=0)
    max_clip_input_seconds: float = Field(default=180.0, gt=0)
    clip_seconds: float = Field(default=4.0, gt=0)
    min_clip_seconds: float = Field(default=2.0, gt=0)

    # --- storage ---
    data_dir: Path = Path("data")
    database_url: str | None = None
    media_dir: Path | None = None

    # --- chat ---
    #: Minimum seconds between two progress edits of one message (platform rate limits).
    progress_interval: float = Field(default=3.0, ge=0)
    discord_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN")
    discord_guild_id: int | None = Field(default=None, validation_alias="DISCORD_GUILD_ID")
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    #: Standard Webhooks secret (`whsec_…`) for the Videos API's `video.completed` / `video.failed` calls.
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="OPENAI_WEBHOOK_SECRET")
    host: str = "0.0.0.0"
    port: int = Field(default=3000, validation_alias="PORT", ge=1, le=65535)
    log_level: str = "INFO"

    @field_validator("allowed_models", "allowed_seconds", "allowed_sizes", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _csv(value)

    @field_validator("api_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_defaults(self) -> Settings:
        for name, default, allowed in (
            ("default_model", self.default_model, self.allowed_models),
            ("default_seconds", self.default_seconds, self.allowed_seconds),
            ("default_size", self.default_size, self.allowed_sizes),
        ):
            if default not in allowed:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={default!r} is not one of {allowed}")
        return self

    @property
    def use_offline(self) -> bool:
        """The offline renderer runs when asked to, or when no key is configured."""
        return self.offline or self.openai_api_key is None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'soracast.db'}"

    @property
    def resolved_media_dir(self) -> Path:
        return self.media_dir or self.data_dir / "media"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, str):
        return alias
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Read settings once; a bad value becomes one ConfigError line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc") or ()
        field = str(loc[0]) if loc else ""
        where = _env_name(field) if field else "configuration"
        raise ConfigError(f"{where}: {first.get('msg', 'invalid value')}") from None

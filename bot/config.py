"""Settings from the environment and an optional `.env`, validated once at start-up."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError

ENV_PREFIX = "SORACAST_"
#: Where `soracast web` receives the providers' webhooks (below `SORACAST_PUBLIC_URL`); fal's ends in `/<id>`.
GEMINI_WEBHOOK_PATH = "/webhooks/gemini"
FAL_WEBHOOK_PATH = "/webhooks/fal"


class BackendChoice(StrEnum):
    """Which video API new jobs go to (`SORACAST_BACKEND`)."""

    AUTO = "auto"
    OPENAI = "openai"
    GEMINI = "gemini"
    FAL = "fal"
    OFFLINE = "offline"


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

    # --- which backend ---
    #: auto: the first backend with a key (Gemini, fal, OpenAI-shape); none → the offline renderer.
    backend: BackendChoice = BackendChoice.AUTO
    #: Force the built-in offline renderer even with a key set (the same as SORACAST_BACKEND=offline).
    offline: bool = False
    #: Whose rules the offline renderer plays, so a newcomer meets the limits they will see live.
    offline_as: BackendChoice = BackendChoice.GEMINI
    #: Offline renderer only: how fast simulated jobs run (2.0 = twice as fast).
    offline_time_scale: float = Field(default=1.0, gt=0)
    api_timeout: float = Field(default=60.0, gt=0)
    api_max_retries: int = Field(default=4, ge=0, le=10)
    #: Seconds between status polls when the API does not say (`openai-poll-after-ms`).
    poll_interval: float = Field(default=5.0, gt=0)

    # --- OpenAI-shape Videos API (gateways that serve /v1/videos) ---
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    api_base_url: str = Field(default="https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL")
    api_auth_style: AuthStyle = AuthStyle.BEARER
    #: What the endpoint serves (gateway models vary, so these are the operator's to set).
    allowed_models: Annotated[list[str], NoDecode] = ["sora-2", "sora-2-pro"]
    allowed_seconds: Annotated[list[str], NoDecode] = ["4", "8", "12"]
    allowed_sizes: Annotated[list[str], NoDecode] = ["720x1280", "1280x720", "1024x1792", "1792x1024"]
    #: Characters one OpenAI-shape video may feature (the API states no cap).
    openai_max_characters: int = Field(default=2, ge=1, le=10)

    # --- Gemini API (Gemini Omni Flash through the Interactions API) ---
    gemini_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY")
    )
    #: Another endpoint for the Gemini API (tests point it at the emulator).
    gemini_base_url: str | None = Field(default=None, validation_alias="GOOGLE_GEMINI_BASE_URL")
    gemini_models: Annotated[list[str], NoDecode] = ["gemini-omni-1.2-flash", "gemini-omni-1.1-flash"]
    #: Lower ceilings on reference images and clips per request than each model's own (unset: the model's).
    gemini_max_reference_images: int | None = Field(default=None, ge=1, le=14)
    gemini_max_reference_videos: int | None = Field(default=None, ge=0, le=3)

    # --- fal (one queue API in front of Kling, Vidu, Veo …) ---
    fal_key: SecretStr | None = Field(default=None, validation_alias="FAL_KEY")
    #: Another queue host than fal's `https://queue.fal.run` (`soracast emulate --api fal`, tests).
    fal_queue_url: str | None = None
    #: The fal models offered, by id or short name; the first is the fal backend's default model.
    fal_models: Annotated[list[str], NoDecode] = [
        "fal-ai/kling-video/o1/standard/reference-to-video",
        "fal-ai/kling-video/o3/standard/reference-to-video",
        "fal-ai/kling-video/o3/pro/reference-to-video",
        "fal-ai/vidu/q3/reference-to-video/mix",
        "fal-ai/veo3.1/reference-to-video",
    ]

    # --- videos, whatever the backend ---
    #: Defaults for /sora; unset means the backend's own default (its first model, that model's default).
    default_model: str | None = None
    default_seconds: str | None = None
    default_size: str | None = None
    #: A ceiling on characters per video for every model (each model has its own maximum too).
    max_characters_per_video: int | None = Field(default=None, ge=1, le=10)
    max_prompt_chars: int = Field(default=4000, ge=10, le=32000)

    # --- the line, limits and budgets ---
    #: Jobs one backend may have in flight at once (submitted and not finished).
    max_in_flight: int = Field(default=5, ge=1, le=1000)
    #: Creates per minute per backend; unset starts fast and slows down as the backend's 429s say.
    submits_per_minute: float | None = Field(default=None, gt=0)
    #: Requests per second per backend (polls and downloads included); unset: only the backend's 429s limit.
    requests_per_second: float | None = Field(default=None, gt=0)
    #: Videos one person may have waiting in line at once.
    max_queued_per_user: int = Field(default=3, ge=1, le=10_000)
    #: Default limits for every workspace (admins change them with /soracast limits); unset means none.
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    daily_seconds_per_person: int | None = Field(default=None, ge=0)
    #: How long a process holds a job before another may take it over (renewed while it lives).
    lease_seconds: float = Field(default=60.0, ge=5, le=3600)
    #: How often a process tells the others it is alive; one silent for three beats is dead and its jobs are
    #: taken over before their leases run out (on Postgres, a lost connection shows it within about 1.5 beats).
    heartbeat_seconds: float = Field(default=5.0, ge=0.1, le=600)
    #: Characters one workspace may keep (each keeps a clip and stills); refused before a form opens.
    max_characters_per_workspace: int = Field(default=500, ge=1)
    #: An owner gets at most one private note per this many minutes about videos others made with their
    #: characters; the first goes at once, those within the window together as a digest when it ends.
    owner_digest_minutes: float = Field(default=10.0, ge=0, le=24 * 60)
    #: Operator prices in USD per second, overriding the built-in table: `model=0.1` or `model:720p=0.1`.
    prices: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)

    # --- clips ---
    max_upload_mb: float = Field(default=100.0, gt=0)
    max_clip_input_seconds: float = Field(default=180.0, gt=0)
    #: The reference clip kept for a character: reference-video backends take at most 3 s.
    clip_seconds: float = Field(default=3.0, gt=0, le=3.0)
    min_clip_seconds: float = Field(default=2.0, gt=0)

    # --- storage ---
    data_dir: Path = Path("data")
    #: `sqlite:///path` (the embedded default, under data_dir) or `postgresql://…` / `postgres://…`; secret,
    #: as a Postgres URL may carry a password.
    database_url: SecretStr | None = None
    #: The PaaS convention (`DATABASE_URL`), used where SORACAST_DATABASE_URL is unset.
    paas_database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    #: Most connections one process opens to Postgres.
    database_pool_size: int = Field(default=10, ge=1, le=100)
    media_dir: Path | None = None

    # --- chat ---
    #: Minimum seconds between two progress edits of one message (platform rate limits).
    progress_interval: float = Field(default=3.0, ge=0)
    discord_token: SecretStr | None = Field(default=None, validation_alias="DISCORD_TOKEN")
    discord_guild_id: int | None = Field(default=None, validation_alias="DISCORD_GUILD_ID")
    #: Sharding for big bots: the total number of shards, and the ones this process runs (unset: all).
    discord_shard_count: int | None = Field(default=None, ge=1, validation_alias="DISCORD_SHARD_COUNT")
    discord_shard_ids: Annotated[list[int] | None, NoDecode] = Field(
        default=None, validation_alias="DISCORD_SHARD_IDS"
    )
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    #: Another base URL for Slack's Web API than https://slack.com/api/ (a proxy, or a fake Slack in tests).
    slack_api_url: str | None = None
    #: OAuth mode (many workspaces install soracast with "Add to Slack"): the app's credentials, and the secret
    #: the OAuth `state` is signed with. Setting SLACK_CLIENT_ID turns OAuth mode on.
    slack_client_id: str | None = Field(default=None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_CLIENT_SECRET")
    slack_state_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_STATE_SECRET")
    #: The public URL of `/slack/oauth_redirect`; needed only where the Slack app lists more than one redirect URL.
    slack_redirect_uri: str | None = Field(default=None, validation_alias="SLACK_REDIRECT_URI")
    #: Fernet keys (comma-separated, the first encrypts, every one decrypts) sealing the tokens kept in the
    #: database: each workspace's bot token in OAuth mode.
    secret_key: SecretStr | None = None
    #: Days a workspace's characters and videos are kept after it removed soracast, before the sweep deletes them.
    uninstalled_retention_days: float = Field(default=30.0, ge=0, le=3650)
    #: Standard Webhooks secret (`whsec_…`) for the Videos API's `video.completed` / `video.failed` calls.
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="OPENAI_WEBHOOK_SECRET")

    # --- webhooks from the video providers (served by `soracast web`) ---
    #: The https address where `soracast web` is reachable: turns on per-request webhooks (Gemini, fal).
    public_url: str | None = None
    #: Standard Webhooks secret (`whsec_…`) of a webhook registered with the Gemini API (shown once at creation).
    gemini_webhook_secret: SecretStr | None = Field(default=None, validation_alias="GEMINI_WEBHOOK_SECRET")
    #: Where Google publishes the keys that sign per-request webhooks (RS256 JWTs), and fal its keys (Ed25519).
    gemini_jwks_url: str = "https://generativelanguage.googleapis.com/.well-known/jwks.json"
    fal_jwks_url: str = "https://rest.fal.ai/.well-known/jwks.json"
    #: How long a create whose answer was lost waits for its webhook before it is sent again (seconds).
    webhook_wait: float = Field(default=1800.0, gt=0)
    host: str = "0.0.0.0"
    port: int = Field(default=3000, validation_alias="PORT", ge=1, le=65535)
    log_level: str = "INFO"

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _split_ints(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in _csv(value) or []]  # type: ignore[union-attr]
        return value

    @field_validator(
        "allowed_models", "allowed_seconds", "allowed_sizes", "gemini_models", "fal_models", mode="before"
    )
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _csv(value)

    @field_validator("prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        prices: dict[str, float] = {}
        for item in _csv(value):  # type: ignore[union-attr]
            name, eq, price = str(item).partition("=")
            if not eq or not name.strip():
                raise ValueError(f"{item!r} is not `model=price` or `model:720p=price`")
            try:
                prices[name.strip()] = float(price)
            except ValueError:
                raise ValueError(f"{price.strip()!r} is not a price in USD per second") from None
        return prices

    @field_validator(
        "api_base_url", "gemini_base_url", "fal_queue_url", "slack_api_url", "public_url", "gemini_jwks_url",
        "fal_jwks_url",
    )
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from bot.sealing import check_keys

        check_keys(value.get_secret_value())  # raises ValueError saying which key is malformed, never the key
        return value

    @field_validator("slack_client_id")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    @field_validator("slack_redirect_uri")
    @classmethod
    def _check_redirect_uri(cls, value: str | None) -> str | None:
        # Kept exactly as written (no trailing slash removed): Slack compares it with the app's redirect URLs.
        value = (value.strip() or None) if value is not None else None
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (the public URL of /slack/oauth_redirect)")
        return value

    @field_validator("offline_as")
    @classmethod
    def _check_offline_as(cls, value: BackendChoice) -> BackendChoice:
        if value in (BackendChoice.AUTO, BackendChoice.OFFLINE):
            raise ValueError("must name a live backend: openai, gemini or fal")
        return value

    @property
    def active_backend(self) -> BackendChoice:
        """The backend new jobs go to: the chosen one, or with `auto` the first that has a key."""
        if self.offline:
            return BackendChoice.OFFLINE
        if self.backend is not BackendChoice.AUTO:
            return self.backend
        for choice, key in (
            (BackendChoice.GEMINI, self.gemini_api_key),
            (BackendChoice.FAL, self.fal_key),
            (BackendChoice.OPENAI, self.openai_api_key),
        ):
            if key is not None and key.get_secret_value():
                return choice
        return BackendChoice.OFFLINE

    @property
    def slack_oauth(self) -> bool:
        """Slack in OAuth mode: installed by many workspaces, each with its own bot token in the database."""
        return self.slack_client_id is not None

    @property
    def slack_configured(self) -> bool:
        """Any Slack setting is present: `soracast web` serves Slack (and says what is missing), not webhooks only."""
        return any(
            value is not None for value in (self.slack_signing_secret, self.slack_bot_token, self.slack_client_id)
        )

    @property
    def gemini_webhook_url(self) -> str | None:
        """The address Gemini is asked to announce each job at (per request), when a public URL is set."""
        return f"{self.public_url}{GEMINI_WEBHOOK_PATH}" if self.public_url else None

    @property
    def fal_webhook_url(self) -> str | None:
        """The address fal is asked to announce each job at (followed by `/<generation id>`)."""
        return f"{self.public_url}{FAL_WEBHOOK_PATH}" if self.public_url else None

    @property
    def use_offline(self) -> bool:
        """The offline renderer makes new videos (asked for, or no key is configured)."""
        return self.active_backend is BackendChoice.OFFLINE

    @property
    def resolved_database_url(self) -> str:
        for url in (self.database_url, self.paas_database_url):
            if url is not None and url.get_secret_value():
                return url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'soracast.db'}"

    @property
    def database_url_variable(self) -> str:
        """The variable the database URL came from, to name it in messages about it."""
        if (self.database_url is None or not self.database_url.get_secret_value()) and self.paas_database_url:
            return "DATABASE_URL"
        return "SORACAST_DATABASE_URL"

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

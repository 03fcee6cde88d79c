"""Configuration from the environment, shared by the worker and the `referrals` command."""

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows import TASK_QUEUE


class Settings(BaseSettings):
    """Every variable is documented in docs/operations.md (Configuration)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    temporal_address: str = Field("localhost:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", alias="TEMPORAL_NAMESPACE")
    # The contract's queue is `referrals`; another one isolates a drill or a staging worker.
    task_queue: str = Field(TASK_QUEUE, alias="REFERRALS_TASK_QUEUE", min_length=1)
    sendgrid_api_key: SecretStr | None = Field(None, alias="SENDGRID_API_KEY")
    sendgrid_from: str = Field("Referrals <referrals@example.com>", alias="SENDGRID_FROM")
    sendgrid_api_host: str = Field("https://api.sendgrid.com", alias="SENDGRID_API_HOST")
    outbox_dir: Path = Field(Path(".outbox"), alias="REFERRALS_OUTBOX_DIR")
    database_url: str = Field("sqlite:///.data/referrals.db", alias="REFERRALS_DATABASE_URL")
    partner_directory: Path = Field(
        Path("samples/partners.json"), alias="REFERRALS_PARTNER_DIRECTORY"
    )
    # Payload encryption, and the codec server for the Temporal UI and CLI.
    codec_keys: SecretStr | None = Field(None, alias="REFERRALS_CODEC_KEYS")
    codec_cors_origin: str = Field("http://localhost:8233", alias="REFERRALS_CODEC_CORS_ORIGIN")
    ui_url: str = Field("http://localhost:8233", alias="REFERRALS_UI_URL")
    webhooks_allow_private: bool = Field(False, alias="REFERRALS_WEBHOOKS_ALLOW_PRIVATE")
    codec_token: SecretStr | None = Field(None, alias="REFERRALS_CODEC_TOKEN")
    # The partner web service: the base of every link in emails, and the keys that sign them.
    public_url: str = Field("http://localhost:8000", alias="REFERRALS_PUBLIC_URL")
    link_keys: SecretStr | None = Field(None, alias="REFERRALS_LINK_KEYS")
    # Per link and per client address, in each web service process.
    web_requests_per_minute: int = Field(600, alias="REFERRALS_WEB_REQUESTS_PER_MINUTE", ge=1)
    web_actions_per_minute: int = Field(60, alias="REFERRALS_WEB_ACTIONS_PER_MINUTE", ge=1)
    # Worker tuning and health.
    metrics_port: int | None = Field(None, alias="REFERRALS_METRICS_PORT", ge=1, le=65535)
    # The SDK's default. Activities mostly wait on I/O; with fewer slots than activities
    # due at once, tasks queue on the server (persisted, then matched) and complete
    # further apart, in more workflow tasks (docs/performance.md).
    max_concurrent_activities: int = Field(100, alias="REFERRALS_MAX_CONCURRENT_ACTIVITIES", ge=1)
    max_concurrent_workflow_tasks: int = Field(
        100, alias="REFERRALS_MAX_CONCURRENT_WORKFLOW_TASKS", ge=2
    )
    # Threads for webhook delivery, apart from the referrals': each endpoint takes up to 5.
    webhook_senders: int = Field(20, alias="REFERRALS_WEBHOOK_SENDERS", ge=2)
    max_cached_workflows: int = Field(1000, alias="REFERRALS_MAX_CACHED_WORKFLOWS", ge=0)
    shutdown_grace_s: float = Field(30.0, alias="REFERRALS_SHUTDOWN_GRACE_S", ge=0)

    @field_validator("public_url")
    @classmethod
    def _an_absolute_base(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an absolute http(s) URL without a query")
        return value.strip().rstrip("/")

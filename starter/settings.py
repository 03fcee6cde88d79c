"""Configuration from the environment, shared by the worker and the `referrals` command."""

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every variable is documented in the README's configuration table."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    temporal_address: str = Field("localhost:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", alias="TEMPORAL_NAMESPACE")
    sendgrid_api_key: SecretStr | None = Field(None, alias="SENDGRID_API_KEY")
    sendgrid_from: str = Field("Referrals <referrals@example.com>", alias="SENDGRID_FROM")
    sendgrid_api_host: str = Field("https://api.sendgrid.com", alias="SENDGRID_API_HOST")
    outbox_dir: Path = Field(Path(".outbox"), alias="REFERRALS_OUTBOX_DIR")
    database_url: str = Field("sqlite:///.data/referrals.db", alias="REFERRALS_DATABASE_URL")
    partner_directory: Path = Field(
        Path("samples/partners.json"), alias="REFERRALS_PARTNER_DIRECTORY"
    )

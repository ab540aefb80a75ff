"""Settings of the Streamlit page, read from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebappSettings(BaseSettings):
    """Everything the page reads from the environment (names are the upper-case field names)."""

    model_config = SettingsConfigDict(extra="ignore")

    api_url: str = Field(
        "http://serving-api:8080",
        description="Base URL of the serving API, as the page's server process reaches it",
    )
    api_token: str | None = Field(
        None,
        description="Sent as 'Authorization: Bearer <token>' (feedback needs it); when unset, the "
        "token the stack generated in SECRETS_DIR/api_token",
    )
    secrets_dir: Path = Field(
        Path("secrets"), description="Folder of the stack's generated secrets (read only)"
    )
    public_api_url: str = Field(
        "http://localhost:8080",
        description="Base URL of the API as a person's browser reaches it (for the /docs link)",
    )
    dashboard_url: str = Field(
        "http://localhost:8082", description="URL of the monitoring dashboard, for the link"
    )
    request_timeout_seconds: float = Field(
        10.0, gt=0, description="How long the page waits for the API to answer a request"
    )
    status_timeout_seconds: float = Field(
        2.0, gt=0, description="How long the sidebar waits for the API's status on each rerun"
    )
    max_upload_mb: int = Field(
        4, ge=1, description="Largest file the page accepts, in MB (the API refuses larger bodies)"
    )
    retrain_wait_seconds: float = Field(
        20.0,
        ge=0,
        description="After a feedback starts a retrain, how long the page waits for its outcome",
    )

    @field_validator("api_url", "public_api_url", "dashboard_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("api_token")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _generated_token(self) -> WebappSettings:
        """No API_TOKEN: the one the stack generated at first start, if it is readable."""
        if self.api_token is None:
            try:
                token = (self.secrets_dir / "api_token").read_text().strip()
            except OSError:
                token = ""
            self.api_token = token or None
        return self

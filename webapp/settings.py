"""Settings of the Streamlit page, read from the environment."""

from __future__ import annotations

from pydantic import field_validator, model_validator

from stackconf import ApiTokenSettings, Renamed, setting

PAGE = "Page"


class WebappSettings(ApiTokenSettings):
    """Everything the page reads from the environment."""

    api_url: str = setting(
        "http://127.0.0.1:8080",
        "Base URL of the serving API, as the page's server process reaches it",
        env="WEBAPP_API_URL",
        section=PAGE,
        renamed=("API_URL",),
        container="http://serving-api:8080",
    )
    public_api_url: str = setting(
        "http://localhost:8080",
        "Base URL of the API as a person's browser reaches it (for the /docs link)",
        env="WEBAPP_PUBLIC_API_URL",
        section=PAGE,
        renamed=("PUBLIC_API_URL",),
    )
    dashboard_url: str = setting(
        "http://localhost:8082",
        "URL of the monitoring dashboard, for the link",
        env="WEBAPP_DASHBOARD_URL",
        section=PAGE,
        renamed=("DASHBOARD_URL",),
    )
    request_timeout_seconds: float = setting(
        10.0,
        "How long the page waits for the API to answer a request",
        env="WEBAPP_REQUEST_TIMEOUT_SECONDS",
        section=PAGE,
        renamed=("REQUEST_TIMEOUT_SECONDS",),
        gt=0,
    )
    status_timeout_seconds: float = setting(
        2.0,
        "How long the sidebar waits for the API's status on each rerun",
        env="WEBAPP_STATUS_TIMEOUT_SECONDS",
        section=PAGE,
        renamed=("STATUS_TIMEOUT_SECONDS",),
        gt=0,
    )
    max_upload_bytes: int = setting(
        4 * 1024 * 1024,
        "Largest file the page accepts (the API refuses bodies over SERVING_MAX_BODY_BYTES)",
        env="WEBAPP_MAX_UPLOAD_BYTES",
        section=PAGE,
        renamed=(Renamed("MAX_UPLOAD_MB", "megabytes"),),
        ge=1024 * 1024,
    )
    retrain_wait_seconds: float = setting(
        20.0,
        "After a feedback starts a retrain, how long the page waits for its outcome",
        env="WEBAPP_RETRAIN_WAIT_SECONDS",
        section=PAGE,
        renamed=("RETRAIN_WAIT_SECONDS",),
        ge=0,
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
            # The settings are frozen; this is their own validation, completing them.
            object.__setattr__(self, "api_token", token or None)
        return self

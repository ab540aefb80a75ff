"""`python -m tracking.server`: the MLflow tracking server as the stack runs it.

Basic authentication on (`--app-name basic-auth`): the admin password is the user's
MLFLOW_TRACKING_PASSWORD or the one generated at first start in SECRETS_DIR, like the stack's
other secrets; anyone else reads (`default_permission = READ`). The backend store is SQLite in
MLFLOW_HOME unless MLFLOW_BACKEND_STORE_URI names another (PostgreSQL); the server stores and
serves the artifacts itself (MLFLOW_HOME/artifacts), so clients need only HTTP. The Host headers
it answers are MLFLOW_ALLOWED_HOSTS (MLflow refuses any other since 3.5).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ctloop.credentials import ensure_secret, resolve
from ctloop.util import write_atomic
from tracking.settings import TrackingSettings

# The names of the secrets' files in SECRETS_DIR, not secrets.
ADMIN_PASSWORD = "mlflow_admin_password"  # noqa: S105
FLASK_SECRET = "mlflow_flask_secret"  # noqa: S105


def admin_password(settings: TrackingSettings) -> str:
    return resolve(settings.password, settings.secrets_dir, ADMIN_PASSWORD)


def auth_config(settings: TrackingSettings) -> Path:
    """MLflow's basic-auth configuration, its user store beside the backend store's files."""
    path = settings.home / "basic_auth.ini"
    users = f"sqlite:///{(settings.home / 'basic_auth.db').resolve()}"
    text = (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {users}\n"
        f"admin_username = {settings.username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A checked password is remembered a minute: each request otherwise pays a PBKDF2 hash
        # (the mirror polls every few seconds).
        "auth_cache_ttl_seconds = 60\n"
    )
    settings.home.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())
    return path


def command(settings: TrackingSettings) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", settings.store_uri,
        "--artifacts-destination", str((settings.home / "artifacts").resolve()),
        "--serve-artifacts",
        "--host", settings.host,
        "--port", str(settings.port),
        "--workers", "1",
        "--app-name", "basic-auth",
        "--allowed-hosts", settings.allowed_hosts,
    ]  # fmt: skip


def environment(settings: TrackingSettings) -> dict[str, str]:
    """The server's environment: the auth configuration, the admin password, the CSRF key."""
    return {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(settings)),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password(settings),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": ensure_secret(settings.secrets_dir, FLASK_SECRET),
    }


def main() -> None:
    settings = TrackingSettings()
    env = environment(settings)
    arguments = command(settings)
    os.execve(arguments[0], arguments, env)  # noqa: S606 (a fixed argument list, no shell)


if __name__ == "__main__":
    main()

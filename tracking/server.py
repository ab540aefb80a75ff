"""`python -m tracking.server`: the MLflow tracking server as the stack runs it.

Basic authentication on (`--app-name ctloop`: MLflow's basic-auth app, which also records who
moves an alias, tracking.app): the admin password is the user's MLFLOW_TRACKING_PASSWORD or the one
generated at first start in SECRETS_DIR/mlflow_tracking_password, like the stack's other secrets;
nobody reads without signing in, and every user the admin creates reads everything
(`default_permission = READ`) and changes what they are granted. The backend store is SQLite in
MLFLOW_HOME unless MLFLOW_BACKEND_STORE_URI names another (PostgreSQL); the server stores and
serves the artifacts itself (MLFLOW_HOME/artifacts), so clients need only HTTP. The Host headers
it answers are MLFLOW_ALLOWED_HOSTS (MLflow refuses any other since 3.5).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from ctloop.credentials import resolve
from ctloop.util import write_atomic
from tracking.settings import MlflowAccess, MlflowServerSettings

ADMIN_PASSWORD = "mlflow_tracking_password"  # noqa: S105 (its file's name in SECRETS_DIR)


def admin_password(settings: MlflowAccess) -> str:
    return resolve(settings.password, settings.secrets_dir, ADMIN_PASSWORD)


def flask_secret_key(password: str) -> str:
    """The key of MLflow's CSRF tokens (its sign-up form), derived from the admin password:
    stable across restarts and workers, secret as long as the password is, and one secret less
    to generate, mount and rotate."""
    return hashlib.sha256(b"ctloop mlflow flask secret key\0" + password.encode()).hexdigest()


def auth_config(settings: MlflowServerSettings) -> Path:
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


def command(settings: MlflowServerSettings) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--artifacts-destination", str((settings.home / "artifacts").resolve()),
        "--serve-artifacts",
        "--host", settings.host,
        "--port", str(settings.port),
        "--workers", "1",
        "--app-name", "ctloop",  # basic-auth, and who moved an alias (tracking.app)
        "--allowed-hosts", settings.allowed_hosts,
    ]  # fmt: skip


def environment(settings: MlflowServerSettings) -> dict[str, str]:
    """The server's environment: the auth configuration, the admin password, the CSRF key."""
    password = admin_password(settings)
    return {
        **os.environ,
        # The store's URL (a PostgreSQL one holds a password) in the environment, which `mlflow
        # server` reads too, rather than in its arguments, which any process list shows.
        "MLFLOW_BACKEND_STORE_URI": settings.store_uri,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(settings)),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_secret_key(password),
        # MLflow's job runner (GenAI scoring, trace archival: nothing the stack uses) would start
        # seven huey consumers of about 250 MB each beside the server.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }


def main() -> None:
    settings = MlflowServerSettings()
    env = environment(settings)
    arguments = command(settings)
    os.execve(arguments[0], arguments, env)  # noqa: S606 (a fixed argument list, no shell)


if __name__ == "__main__":
    main()

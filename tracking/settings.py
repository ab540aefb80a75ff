"""Settings of the MLflow service and of the mirror, read from the environment once."""

from __future__ import annotations

from pathlib import Path

from stackconf import SecretsSettings, setting

MLFLOW = "MLflow"


class MlflowAccess(SecretsSettings):
    """The account the mirror signs in with, which the server creates as its admin."""

    username: str = setting(
        "admin",
        "MLflow's admin user, created at the server's first start; the mirror signs in as it "
        "(MLflow's own variable)",
        env="MLFLOW_TRACKING_USERNAME",
        section=MLFLOW,
    )
    password: str | None = setting(
        None,
        "Password of MLFLOW_TRACKING_USERNAME; empty: the one generated at first start in "
        "SECRETS_DIR/mlflow_tracking_password (set before the first start: MLflow keeps the "
        "admin's password it created)",
        env="MLFLOW_TRACKING_PASSWORD",
        section="Secrets",
        secret=True,
    )


class TrackingSettings(MlflowAccess):
    """Where MLflow is and what the mirror writes there."""

    tracking_uri: str = setting(
        "http://127.0.0.1:5000",
        "Address of the MLflow server the mirror logs to (MLflow's own variable)",
        env="MLFLOW_TRACKING_URI",
        section=MLFLOW,
        container="http://mlflow:5000",
    )
    experiment: str = setting(
        "ctloop",
        "MLflow experiment holding a run per model version",
        env="MLFLOW_EXPERIMENT_NAME",
        section=MLFLOW,
    )
    model_name: str = setting(
        "ctloop-classifier",
        "MLflow registered model whose versions are the stack's (aliases champion, challenger)",
        env="MLFLOW_MODEL_NAME",
        section=MLFLOW,
    )
    poll_seconds: float = setting(
        2.0,
        "How often the mirror compares artifacts/ and MLflow",
        env="MLFLOW_MIRROR_POLL_SECONDS",
        section=MLFLOW,
        gt=0,
    )
    figures_url: str = setting(
        "",
        "The dashboard's exporter (/metrics) whose window figures (the served version's accuracy "
        "and F1 on the rows it answered, the drift share) the mirror logs to that version's run "
        "as they change, step = feedback rows; empty: none",
        env="MLFLOW_MIRROR_FIGURES_URL",
        section=MLFLOW,
        container="http://reporting:8083/metrics",
    )


class MlflowServerSettings(MlflowAccess):
    """How the MLflow server keeps its state and whom it answers."""

    backend_store_uri: str | None = setting(
        None,
        "The MLflow server's backend store: a SQLAlchemy URL (sqlite:///..., "
        "postgresql+psycopg://user:password@host/db); empty: MLFLOW_HOME/mlflow.db",
        env="MLFLOW_BACKEND_STORE_URI",
        section=MLFLOW,
    )
    home: Path = setting(
        Path("mlflow"),
        "Folder of the MLflow server's SQLite stores and served artifacts (the image sets it)",
        env="MLFLOW_HOME",
        section="Folders",
        compose="no",
    )
    host: str = setting(
        "127.0.0.1",
        "Address the MLflow server listens on (the image sets 0.0.0.0)",
        env="MLFLOW_HOST",
        section=MLFLOW,
        compose="no",
    )
    port: int = setting(
        5000,
        "Port of the MLflow server: the one it listens on, and under Compose the one published "
        "on the host (the container listens on 5000)",
        env="MLFLOW_PORT",
        section=MLFLOW,
        compose="host",
        services=("mlflow",),
        ge=1,
        le=65535,
    )
    allowed_hosts: str = setting(
        "mlflow,mlflow:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*",
        "Host headers the MLflow server answers (its --allowed-hosts, fnmatch patterns): the "
        "service name and loopback, any port",
        env="MLFLOW_ALLOWED_HOSTS",
        section=MLFLOW,
    )

    @property
    def store_uri(self) -> str:
        return self.backend_store_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

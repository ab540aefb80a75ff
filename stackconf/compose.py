"""Settings only Docker Compose reads: where ports are published, memory limits, retention.

Declared like every other setting; no service instantiates this class (the tests validate its
defaults). Each field's `services` names the Compose services it configures.
"""

from __future__ import annotations

from stackconf.declare import Settings, setting

PORTS = "Ports and memory"
MONITORING = "Prometheus and Grafana"


def _memory(prefix: str, service: str, default: str, note: str = "") -> str:
    return setting(
        default,
        f"Memory limit of the {service} container (Docker's notation: 1536m, 2g){note}",
        env=f"{prefix}_MEMORY",
        section=PORTS,
        compose="host",
        services=(service,),
        pattern=r"^[0-9]+[bkmg]?$",
    )


# The long-running services that publish a port on the host.
PUBLISHING = (
    "serving-api",
    "webapp",
    "reporting",
    "prometheus",
    "alertmanager",
    "grafana",
    "mlflow",
)


def _port(prefix: str, service: str, default: int, description: str) -> int:
    return setting(
        default,
        description,
        env=f"{prefix}_PORT",
        section=PORTS,
        start=prefix in ("WEBAPP", "GRAFANA"),
        compose="host",
        services=(service,),
        ge=1,
        le=65535,
    )


class ComposeSettings(Settings):
    """What `docker compose` itself reads from the environment or .env."""

    bind_address: str = setting(
        "127.0.0.1",
        "Host address every port is published on (127.0.0.1: this machine only; 0.0.0.0 opens "
        "them to the network, behind your own TLS and firewall)",
        env="BIND_ADDRESS",
        section=PORTS,
        start=True,
        compose="host",
        services=PUBLISHING,
    )
    webapp_port: int = _port(
        "WEBAPP", "webapp", 8081, "Port of the page on the host (the container listens on 8081)"
    )
    prometheus_port: int = _port(
        "PROMETHEUS", "prometheus", 9090, "Port of Prometheus on the host (also its external URL)"
    )
    alertmanager_port: int = _port(
        "ALERTMANAGER",
        "alertmanager",
        9093,
        "Port of Alertmanager on the host (also its external URL)",
    )
    grafana_port: int = _port("GRAFANA", "grafana", 3000, "Port of Grafana on the host")
    network_name: str = setting(
        "prod_net",
        "Name of the stack's Docker network",
        env="NETWORK_NAME",
        section=PORTS,
        compose="host",
        services=(*PUBLISHING, "mlflow-mirror"),
    )
    serving_memory: str = _memory(
        "SERVING",
        "serving-api",
        "1536m",
        " (two workers of about 110 MiB and a trainer of about 350 MiB)",
    )
    webapp_memory: str = _memory("WEBAPP", "webapp", "768m")
    reporting_memory: str = _memory(
        "REPORTING",
        "reporting",
        "1536m",
        " (`evidently ui`: about 340 MiB plus 5 MiB per snapshot kept)",
    )
    prometheus_memory: str = _memory("PROMETHEUS", "prometheus", "512m")
    grafana_memory: str = _memory("GRAFANA", "grafana", "512m")
    mlflow_memory: str = _memory(
        "MLFLOW", "mlflow", "768m", " (`mlflow server` and its one uvicorn worker: about 360 MiB)"
    )
    prometheus_retention: str = setting(
        "15d",
        "How long Prometheus keeps its samples (its --storage.tsdb.retention.time)",
        env="PROMETHEUS_RETENTION",
        section=MONITORING,
        compose="host",
        services=("prometheus",),
        pattern=r"^[0-9]+(ms|s|m|h|d|w|y)$",
    )
    grafana_admin_password: str = setting(
        "",
        "Grafana's admin password; empty: generated at the first start into "
        "secrets/grafana_admin_password",
        env="GRAFANA_ADMIN_PASSWORD",
        section="Secrets",
        compose="env",
        services=("init",),
        secret=True,
    )

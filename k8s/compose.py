"""docker-compose.yml and .env.example as Kubernetes sees them: the services, their settings with
the defaults filled in, and which variables are secrets.

Read by the generator (`python -m k8s.generate`) and by the parity tests (tests/k8s), so that
both read Compose the same way. Compose's own interpolation is small: `${VAR}`, `${VAR:-default}`,
`${VAR-default}` and `$$`; that is all this file implements.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import overload

import yaml

from ctloop.credentials import NAMES

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"

# The secrets as environment variables (API_TOKEN...) and as files in SECRETS_DIR (api_token...).
SECRET_VARIABLES = {name.upper(): name for name in NAMES}

_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


class ComposeError(ValueError):
    """docker-compose.yml or .env.example says something k8s/ cannot carry."""


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines in file order (comments and blank lines skipped), as Compose reads .env."""
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ComposeError(f"{path.name}:{number}: not a KEY=VALUE line: {line!r}")
        found[key.strip()] = value.strip()
    return found


def load_compose(path: Path = COMPOSE_FILE) -> dict:
    """The Compose file with its YAML anchors and merge keys resolved (not interpolated)."""
    return yaml.safe_load(path.read_text())


def references(value: str) -> list[tuple[str, str | None]]:
    """The variables a Compose value names, each with its default (None when it has none)."""
    return [
        (match.group(1), match.group(3) if match.group(2) else None)
        for match in _REFERENCE.finditer(value)
        if match.group(1)
    ]


def only_reference(value: str) -> str | None:
    """VAR when the whole value is `${VAR...}`, else None."""
    match = _REFERENCE.fullmatch(value)
    return match.group(1) if match and match.group(1) else None


@overload
def interpolate(value: str, variables: Mapping[str, str]) -> str: ...
@overload
def interpolate(value: object, variables: Mapping[str, str]) -> object: ...
def interpolate(value: object, variables: Mapping[str, str]) -> object:
    """A Compose value with its variables replaced as `docker compose` does (lists, dicts too)."""
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.group(1), match.group(2), match.group(3)
        found = variables.get(name)
        if operator == ":-" and not found:
            return default
        if operator == "-" and found is None:
            return default
        return found or ""

    return _REFERENCE.sub(replace, value)


def environment(service: dict) -> dict[str, str]:
    """A service's `environment:` as a mapping of raw (not interpolated) strings."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def strings(value: object) -> list[str]:
    """Every string inside a Compose structure (keys excluded)."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value] if isinstance(value, str) else []


def defaults_agree(compose: dict, example: Mapping[str, str]) -> list[str]:
    """Variables whose default in docker-compose.yml differs from their value in .env.example."""
    problems = []
    for name, default in (found for text in strings(compose) for found in references(text)):
        if default is not None and name in example and example[name] != default:
            problems.append(
                f"{name}: docker-compose.yml's default is {default!r}, .env.example says "
                f"{example[name]!r}"
            )
    return sorted(set(problems))


# -- how Compose's services map to Kubernetes workloads ------------------------------------------

WORKLOADS = (
    # (kind, name, container, the Compose service whose image, settings and mounts it runs)
    ("Job", "init", "init", "init"),
    ("Deployment", "serving-api", "serving-api", "serving-api"),
    ("Deployment", "webapp", "webapp", "webapp"),
    ("Deployment", "reporting", "reporting", "reporting"),
    ("Deployment", "prometheus", "prometheus", "prometheus"),
    ("Deployment", "alertmanager", "alertmanager", "alertmanager"),
    ("Deployment", "grafana", "grafana", "grafana"),
    ("Deployment", "mlflow", "mlflow", "mlflow"),
    ("Deployment", "mlflow-mirror", "mlflow-mirror", "mlflow-mirror"),
    ("CronJob", "reporting-snapshot", "snapshot", "reporting"),
    ("CronJob", "registry-prune", "prune", "init"),
)

# Containers that run another command than their Compose service (the image stays the same).
COMMANDS = {
    # Compose's init runs `ctloop-docker-init` as root: it grants uid 10001 access to host folders
    # with ACLs, generates the secrets, then runs this as uid 10001. On Kubernetes the volumes are
    # given to that group by fsGroup and the Secret exists before anything starts (make
    # k8s-secrets), so the Job runs only this, as uid 10001, with no capability.
    "init": ["python", "-m", "ctloop", "init"],
    # One Evidently snapshot of reference vs production (what the reporting service's refresher
    # adds when the CSVs change), on a schedule: the workshop's suggestion.
    "snapshot": ["python", "-m", "reporting.project"],
    # The registry's pruning (the trainer also prunes after each decision), on a schedule.
    "prune": ["python", "-m", "ctloop", "registry", "prune"],
}

# Mounts of a Compose service that its Kubernetes container leaves out, and why.
MOUNTS_LEFT_OUT = {
    ("init", "/app/secrets"): "the Secret is made before the stack starts (make k8s-secrets)",
    ("snapshot", "/app/secrets"): "it writes the workspace on disk, not through the UI's API",
    ("prune", "/app/secrets"): "pruning the registry reads no secret",
}

# Folders of the repository that hold the stack's state: a PersistentVolumeClaim each.
STATE_FOLDERS = ("data", "artifacts")
SECRET_NAME = "ctloop-secrets"  # noqa: S105 (the Secret's name, not a value)
SETTINGS_NAME = "ctloop-settings"

"""The Secret's files for an overlay: k8s/overlays/<overlay>/secrets/<name> (ignored by git).

    python -m k8s.secret_files local       (make k8s-secrets OVERLAY=local)

The overlay's kustomization turns the folder into the Secret `ctloop-secrets` (a
secretGenerator: its name carries a hash of the values, so a changed secret rolls the pods that
mount it). As with Compose, a value the user set wins: API_TOKEN, EVIDENTLY_SECRET,
GRAFANA_ADMIN_PASSWORD or MLFLOW_TRACKING_PASSWORD from the environment, else from the .env file
next to docker-compose.yml; a secret nobody set is generated once (ctloop.credentials, 32 random
bytes) and kept. Nothing here is ever committed, and no value is printed.

An overlay may need a secret that no Compose service reads (OVERLAY_SECRETS): production's
PostgreSQL password, POSTGRES_PASSWORD if set, which MLflow's store URL holds as it is: a value of
your own must be URL-safe (letters, digits, - _ . ~), as the generated ones are, and its file
ends without a newline (this rewrites it so).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from ctloop.credentials import ensure_secret
from k8s.compose import REPO, SECRET_VARIABLES, read_env_file

OVERLAYS = REPO / "k8s" / "overlays"
# Secrets of an overlay's own objects (no Compose service reads them): variable -> file name.
OVERLAY_SECRETS = {"production": {"POSTGRES_PASSWORD": "postgres_password"}}
# Secrets that reach a URL through an environment variable (secretKeyRef), as they are: the
# variable holds the file's every byte, so the file has no newline at its end, and the value
# goes unescaped into postgresql+psycopg://mlflow:PASSWORD@postgres/..., so it is URL-safe.
IN_URL = {"postgres_password"}
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")


def secret_variables(overlay: str) -> dict[str, str]:
    """The overlay's secrets: variable -> file name (the stack's, then the overlay's own)."""
    return {**SECRET_VARIABLES, **OVERLAY_SECRETS.get(overlay, {})}


def user_values(
    variables: dict[str, str] = SECRET_VARIABLES, env_file: Path = REPO / ".env"
) -> dict[str, str]:
    """The secrets the user chose: the environment first, then .env (as Compose reads them)."""
    from_file = read_env_file(env_file) if env_file.exists() else {}
    chosen = {}
    for variable, name in variables.items():
        value = (os.environ.get(variable) or from_file.get(variable) or "").strip()
        if value:
            chosen[name] = value
    return chosen


def _write(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def write_secrets(
    folder: Path, chosen: dict[str, str], names: tuple[str, ...] = tuple(SECRET_VARIABLES.values())
) -> dict[str, str]:
    """Each secret's file in `folder` (0600): the chosen value, or the one generated before.

    Raises ValueError, writing nothing of it, for a value IN_URL that is not URL-safe."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    outcome = {}
    for name in names:
        path = folder / name
        ending = "" if name in IN_URL else "\n"
        if name in chosen:
            value = chosen[name]
            existed = path.exists() and path.read_text().strip() == value
            outcome[name] = "yours, unchanged" if existed else "yours, written"
        else:
            existed = path.exists()
            value = (path.read_text().strip() if existed else "") or ensure_secret(folder, name)
            outcome[name] = "kept" if existed else "generated"
        if name in IN_URL and not URL_SAFE.fullmatch(value):
            raise ValueError(
                f"{name}: it goes into MLflow's store URL as it is: use only letters, digits and "
                f"- _ . ~ (or delete {path} and leave its variable unset to have one generated)"
            )
        if outcome[name] == "yours, written" or (name in IN_URL and path.read_text() != value):
            _write(path, value + ending)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overlay", help="a folder of k8s/overlays (local, production)")
    args = parser.parse_args(argv)
    overlay = OVERLAYS / args.overlay
    if not (overlay / "kustomization.yaml").exists():
        print(f"no overlay {overlay}", file=sys.stderr)
        return 1
    variables = secret_variables(args.overlay)
    try:
        written = write_secrets(
            overlay / "secrets", user_values(variables), tuple(variables.values())
        )
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    for name, what in written.items():
        print(f"{(overlay / 'secrets' / name).relative_to(REPO)}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

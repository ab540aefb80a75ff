"""The Secret's files for an overlay: k8s/overlays/<overlay>/secrets/<name> (ignored by git).

    python -m k8s.secret_files local       (make k8s-secrets OVERLAY=local)

The overlay's kustomization turns the folder into the Secret `ctloop-secrets` (a
secretGenerator: its name carries a hash of the values, so a changed secret rolls the pods that
mount it). As with Compose, a value the user set wins: API_TOKEN, EVIDENTLY_SECRET or
GRAFANA_ADMIN_PASSWORD from the environment, else from the .env file next to
docker-compose.yml; a secret nobody set is generated once (ctloop.credentials, 32 random bytes)
and kept. Nothing here is ever committed, and no value is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ctloop.credentials import ensure_secret
from k8s.compose import REPO, SECRET_VARIABLES, read_env_file

OVERLAYS = REPO / "k8s" / "overlays"


def user_values(env_file: Path = REPO / ".env") -> dict[str, str]:
    """The secrets the user chose: the environment first, then .env (as Compose reads them)."""
    from_file = read_env_file(env_file) if env_file.exists() else {}
    chosen = {}
    for variable, name in SECRET_VARIABLES.items():
        value = os.environ.get(variable) or from_file.get(variable) or ""
        if value.strip():
            chosen[name] = value.strip()
    return chosen


def write_secrets(folder: Path, chosen: dict[str, str]) -> dict[str, str]:
    """Each secret's file in `folder` (0600): the chosen value, or the one generated before."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    outcome = {}
    for name in SECRET_VARIABLES.values():
        path = folder / name
        if name in chosen:
            existed = path.exists() and path.read_text().strip() == chosen[name]
            if not existed:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(chosen[name] + "\n")
            outcome[name] = "yours, unchanged" if existed else "yours, written"
        else:
            existed = path.exists()
            ensure_secret(folder, name)
            outcome[name] = "kept" if existed else "generated"
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overlay", help="a folder of k8s/overlays (local, production)")
    args = parser.parse_args(argv)
    overlay = OVERLAYS / args.overlay
    if not (overlay / "kustomization.yaml").exists():
        print(f"no overlay {overlay}", file=sys.stderr)
        return 1
    for name, what in write_secrets(overlay / "secrets", user_values()).items():
        print(f"{(overlay / 'secrets' / name).relative_to(REPO)}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

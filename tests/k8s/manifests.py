"""The Kubernetes manifests as the tests see them: each overlay rendered by `kubectl kustomize`
from a copy of k8s/ with freshly generated Secret files, and the tools that check them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from k8s.compose import REPO
from k8s.secret_files import secret_variables, write_secrets

OVERLAYS = ("local", "production")
KUBERNETES_VERSION = "1.32"  # what docs/kubernetes.md states, kubectl's version, what is validated
TOOLS_VENV = REPO / ".venv-k8s" / "bin"


def tool(name: str) -> str | None:
    """A checker from .venv-k8s (make k8s-tools), else from PATH (kubectl: KUBECTL wins)."""
    if name == "kubectl" and os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    local = TOOLS_VENV / name
    return str(local) if local.exists() else shutil.which(name)


def render(overlay: str, workdir: Path) -> tuple[Path, list[dict]]:
    """The overlay rendered to one file (and parsed), secrets generated in a copy of k8s/."""
    copy = workdir / "k8s"
    shutil.copytree(REPO / "k8s", copy, ignore=shutil.ignore_patterns("secrets", "__pycache__"))
    names = tuple(secret_variables(overlay).values())
    write_secrets(copy / "overlays" / overlay / "secrets", {}, names)
    kubectl = tool("kubectl")
    assert kubectl, "kubectl is needed"
    result = subprocess.run(
        [kubectl, "kustomize", str(copy / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
    output = workdir / f"{overlay}.yaml"
    output.write_text(result.stdout)
    return output, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(workload: dict) -> dict:
    """The pod template's spec of a Deployment, Job or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def container(workload: dict, name: str) -> dict:
    found = [item for item in pod_spec(workload)["containers"] if item["name"] == name]
    assert len(found) == 1, f"{workload['metadata']['name']}: no container {name}"
    return found[0]


def generated_name(docs: list[dict], kind: str, base: str) -> dict:
    """A ConfigMap or Secret whose name kustomize suffixed with its hash."""
    found = [
        doc
        for doc in docs
        if doc["kind"] == kind and doc["metadata"]["name"].rsplit("-", 1)[0] == base
    ]
    assert len(found) == 1, f"{kind} {base}-<hash>: {len(found)} found"
    return found[0]

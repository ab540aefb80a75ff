"""The manifests pass the checkers CI runs without a cluster: kubectl kustomize renders every
overlay (conftest), kubernetes-validate accepts every object strictly for the Kubernetes version
docs/kubernetes.md states, checkov passes with each skipped check justified in the manifests, and
k8s/base/generated/ is what docker-compose.yml, .env.example and monitoring/ give."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from k8s.compose import REPO
from k8s.generate import Generator, stale
from tests.k8s.manifests import KUBERNETES_VERSION, OVERLAYS, tool


def test_generated_files_are_what_compose_and_env_example_give() -> None:
    differences = stale(Generator().run())
    assert not differences, "k8s/base/generated/ is stale: run `make k8s-config`\n" + "\n".join(
        differences
    )


def test_the_readme_states_the_validated_kubernetes_version() -> None:
    assert f"Kubernetes {KUBERNETES_VERSION}" in (REPO / "docs" / "kubernetes.md").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(rendered, overlay: str) -> None:
    validate = tool("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is not installed (make k8s-tools)")
    path, docs = rendered[overlay]
    result = subprocess.run(
        [validate, "--strict", "-k", f"{KUBERNETES_VERSION}.0", "--no-warn", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # One verdict per object: none was left out.
    assert len(re.findall(r"^INFO .* passed for resource", result.stdout, re.M)) == len(docs), (
        result.stdout
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_and_every_skip_says_why(rendered, overlay: str, tmp_path) -> None:
    checkov = tool("checkov")
    if checkov is None:
        pytest.skip("checkov is not installed (make k8s-tools)")
    path, docs = rendered[overlay]
    folder = tmp_path / overlay
    folder.mkdir()
    (folder / path.name).write_text(path.read_text())
    result = subprocess.run(
        [checkov, "-d", str(folder), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 500, report["summary"]
    for check in report["results"]["skipped_checks"]:
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason.split()) >= 8, f"{check['check_id']} skipped without a reason: {reason!r}"
    for doc in docs:
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check) and reason, (key, value)

"""What the issue asks of the manifests, object by object: a Deployment and a Service per long-
running Compose service, the API's replicas, probes, resources, security and HPA, the storage,
the Job and the CronJobs, every pod within the "restricted" Pod Security Standard."""

from __future__ import annotations

from k8s.compose import WORKLOADS, load_compose
from tests.k8s.manifests import container, find, generated_name, one, pod_spec

WORKLOAD_KINDS = ("Deployment", "Job", "CronJob")
ALLOWED_VOLUMES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected"}


def workloads(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def test_every_long_running_compose_service_has_a_deployment_and_a_service(local) -> None:
    compose = load_compose()["services"]
    long_running = [name for name, service in compose.items() if service.get("restart") != "no"]
    assert sorted(long_running) == sorted(
        name for kind, name, _, _ in WORKLOADS if kind == "Deployment"
    )
    for name in long_running:
        deployment = one(local, "Deployment", name)
        service = one(local, "Service", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        ports = {port["containerPort"] for port in container(deployment, name)["ports"]}
        assert {port["port"] for port in service["spec"]["ports"]} == ports, name
    assert one(local, "Job", "init")["metadata"]["namespace"] == "ctloop"
    assert one(local, "Namespace", "ctloop")


def test_the_api(local, production) -> None:
    api = one(local, "Deployment", "serving-api")
    assert api["spec"]["replicas"] == 2
    spec = container(api, "serving-api")
    assert spec["livenessProbe"]["httpGet"]["path"] == "/health"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert spec["startupProbe"]["httpGet"]["path"] == "/health"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= spec["resources"][kind].keys(), kind
    pod = pod_spec(api)["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001
    hpa = one(production, "HorizontalPodAutoscaler", "serving-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "serving-api",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in one(production, "Deployment", "serving-api")["spec"]
    assert not find(local, "HorizontalPodAutoscaler")


def test_every_pod_is_locked_down(rendered) -> None:
    """The restricted Pod Security Standard (the namespace enforces it), and more."""
    for overlay, (_, docs) in rendered.items():
        namespace = one(docs, "Namespace", "ctloop")["metadata"]["labels"]
        assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
        for workload in workloads(docs):
            where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
            pod = pod_spec(workload)
            assert pod["automountServiceAccountToken"] is False, where
            # Service links would set REPORTING_PORT=tcp://... in every pod: the reporting
            # service's own setting, which it refuses.
            assert pod["enableServiceLinks"] is False, where
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["runAsUser"] > 0, where
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys(), where
            for volume in pod.get("volumes") or []:
                assert ALLOWED_VOLUMES & volume.keys(), (where, volume)
            for item in pod["containers"]:
                security = item["securityContext"]
                assert security["allowPrivilegeEscalation"] is False, where
                assert security["capabilities"] == {"drop": ["ALL"]}, where
                # Grafana alone keeps a writable root, as under Compose (parity checks it).
                assert security["readOnlyRootFilesystem"] is (item["name"] != "grafana"), where
                assert {"cpu", "memory"} <= item["resources"]["requests"].keys(), where
                assert {"cpu", "memory"} <= item["resources"]["limits"].keys(), where
                if workload["kind"] == "Deployment":
                    assert "livenessProbe" in item and "readinessProbe" in item, where


def test_storage(local, production) -> None:
    for name in ("data", "artifacts"):
        assert one(local, "PersistentVolumeClaim", name)["spec"]["accessModes"] == ["ReadWriteOnce"]
        shared = one(production, "PersistentVolumeClaim", name)["spec"]
        assert shared["accessModes"] == ["ReadWriteMany"] and shared["storageClassName"]
    claims = {doc["metadata"]["name"] for doc in find(local, "PersistentVolumeClaim")}
    for workload in workloads(local):
        for volume in pod_spec(workload).get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_the_jobs(local) -> None:
    init = container(one(local, "Job", "init"), "init")
    assert init["command"] == ["python", "-m", "ctloop", "init"]
    commands = {
        "reporting-snapshot": ["python", "-m", "reporting.project"],
        "registry-prune": ["python", "-m", "ctloop", "registry", "prune"],
    }
    for name, command in commands.items():
        cron = one(local, "CronJob", name)
        assert cron["spec"]["concurrencyPolicy"] == "Forbid", name
        assert cron["spec"]["successfulJobsHistoryLimit"] >= 1, name
        assert cron["spec"]["failedJobsHistoryLimit"] >= 1, name
        assert len(cron["spec"]["schedule"].split()) == 5, name
        assert pod_spec(cron)["containers"][0]["command"] == command


def test_the_secret_is_generated_and_never_committed(local) -> None:
    import subprocess

    from k8s.compose import REPO

    secret = generated_name(local, "Secret", "ctloop-secrets")
    assert set(secret["data"]) == {"api_token", "evidently_secret", "grafana_admin_password"}
    tracked = subprocess.run(
        ["git", "ls-files", "k8s"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [path for path in tracked if "/secrets/" in path], tracked
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "k8s/overlays/local/secrets/api_token"], cwd=REPO
    )
    assert ignored.returncode == 0

"""What the issue asks of the manifests, object by object: a Deployment per long-running Compose
service and a Service per one that listens, the API's replicas, probes, resources, security and
HPA, MLflow and its mirror (and production's PostgreSQL), the storage, the Job and the CronJobs,
every pod within the "restricted" Pod Security Standard."""

from __future__ import annotations

import base64
import re
from urllib.parse import urlsplit

from k8s.compose import SECRET_VARIABLES, WORKLOADS, load_compose
from tests.k8s.manifests import container, find, generated_name, one, pod_spec

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
ALLOWED_VOLUMES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected"}


def workloads(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def test_every_long_running_compose_service_has_a_deployment_and_a_service(local) -> None:
    """A Service for each that listens, on the ports it listens on under Compose; one that listens
    on nothing (mlflow-mirror: it only calls MLflow and the exporter) has no Service, which would
    select a pod with no port."""
    compose = load_compose()["services"]
    long_running = [name for name, service in compose.items() if service.get("restart") != "no"]
    assert sorted(long_running) == sorted(
        name for kind, name, _, _ in WORKLOADS if kind == "Deployment"
    )
    for name in long_running:
        deployment = one(local, "Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        ports = {port["containerPort"] for port in container(deployment, name).get("ports") or []}
        published = {
            int(str(entry).rsplit(":", 1)[-1]) for entry in compose[name].get("ports") or []
        }
        assert ports == published, name
        if not published:
            selecting = [
                doc["metadata"]["name"]
                for doc in find(local, "Service")
                if doc["spec"]["selector"].items() <= labels.items()
            ]
            assert not selecting, (name, selecting)
            continue
        service = one(local, "Service", name)
        assert service["spec"]["selector"].items() <= labels.items(), name
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


def env_of(spec: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in spec.get("env") or []}


def test_mlflow_and_its_mirror(rendered) -> None:
    for overlay, (_, docs) in rendered.items():
        server = one(docs, "Deployment", "mlflow")
        mirror = one(docs, "Deployment", "mlflow-mirror")
        for deployment in (server, mirror):  # one writer of its volume; one mirror at a time
            assert deployment["spec"]["replicas"] == 1, overlay
            assert deployment["spec"]["strategy"] == {"type": "Recreate"}, overlay
        spec = container(server, "mlflow")
        assert spec["ports"] == [{"name": "http", "containerPort": 5000}]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert spec[kind]["httpGet"] == {"path": "/health", "port": "http"}, kind
        service = one(docs, "Service", "mlflow")
        assert service["spec"]["ports"] == [{"name": "http", "port": 5000, "targetPort": "http"}]
        mounts = {mount["mountPath"]: mount["name"] for mount in spec["volumeMounts"]}
        claims = {
            volume["name"]: volume["persistentVolumeClaim"]["claimName"]
            for volume in pod_spec(server)["volumes"]
            if "persistentVolumeClaim" in volume
        }
        assert claims[mounts["/app/mlflow"]] == "mlflow-data", overlay
        # Compose's health check of the mirror: its loop turned in the last minute.
        watched = container(mirror, "mlflow-mirror")
        assert "ports" not in watched
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert watched[kind]["exec"]["command"] == ["python", "-m", "tracking", "alive"], kind
        assert env_of(watched)["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
        figures = env_of(watched)["MLFLOW_MIRROR_FIGURES_URL"]["value"]
        assert figures == "http://reporting:8083/metrics"


def store_url(production: list[dict]):
    spec = container(one(production, "Deployment", "mlflow"), "mlflow")
    return urlsplit(env_of(spec)["MLFLOW_BACKEND_STORE_URI"]["value"])


def test_mlflow_keeps_its_store_in_postgres_in_production(local, production) -> None:
    """Base and local: SQLite on mlflow-data (the setting empty). Production: PostgreSQL, the URL
    completed by Kubernetes from the Secret's password."""
    local_env = env_of(container(one(local, "Deployment", "mlflow"), "mlflow"))
    assert "configMapKeyRef" in local_env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    settings = generated_name(local, "ConfigMap", "ctloop-settings")["data"]
    assert settings["MLFLOW_BACKEND_STORE_URI"] == ""
    assert "POSTGRES_PASSWORD" not in local_env
    assert not find(local, "StatefulSet") and not find(local, "Service", "postgres")

    spec = container(one(production, "Deployment", "mlflow"), "mlflow")
    names = [entry["name"] for entry in spec["env"]]
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("POSTGRES_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    password = env_of(spec)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    secret = generated_name(production, "Secret", "ctloop-secrets")
    assert password == {"name": secret["metadata"]["name"], "key": "postgres_password"}
    url = store_url(production)
    assert url.scheme == "postgresql+psycopg" and url.password == "$(POSTGRES_PASSWORD)"
    # The variable holds the Secret's every byte: a newline would end up inside the URL.
    value = base64.b64decode(secret["data"]["postgres_password"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", value), "not URL-safe, or a newline at its end"


def test_production_postgres(production) -> None:
    """The user, database and address of MLflow's URL; the password a file of the Secret; the
    upstream image pinned, run as its postgres user under a read-only root."""
    url = store_url(production)
    database = one(production, "StatefulSet", "postgres")
    assert database["spec"]["replicas"] == 1
    pod = pod_spec(database)
    postgres = container(database, "postgres")
    assert re.fullmatch(r"postgres:15\.\d+-bookworm", postgres["image"]), postgres["image"]
    env = {name: entry.get("value") for name, entry in env_of(postgres).items()}
    assert (url.username, url.path) == (env["POSTGRES_USER"], "/" + env["POSTGRES_DB"])
    service = one(production, "Service", "postgres")
    assert database["spec"]["serviceName"] == "postgres" == url.hostname
    assert [port["port"] for port in service["spec"]["ports"]] == [url.port] == [5432]
    labels = database["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # The password as a file of the Secret, read by the image's entrypoint.
    mounts = {mount["mountPath"]: mount for mount in postgres["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    folder, _, key = env["POSTGRES_PASSWORD_FILE"].rpartition("/")
    secret = volumes[mounts[folder]["name"]]["secret"]
    assert secret["items"] == [{"key": "postgres_password", "path": key}]
    # Its data in a folder of the claim (the claim's root may hold lost+found), owned by the
    # image's postgres user; a read-only root, the socket's folder and /tmp in memory.
    (template,) = database["spec"]["volumeClaimTemplates"]
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    data = next(path for path, mount in mounts.items() if mount["name"] == "data")
    assert env["PGDATA"].startswith(data + "/")
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (999, 999, 999)
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"
    assert postgres["securityContext"]["readOnlyRootFilesystem"] is True
    for path in ("/var/run/postgresql", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = postgres[kind]["exec"]["command"]
        assert command[0] == "pg_isready" and "--host=127.0.0.1" in command, kind


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
                if workload["kind"] in ("Deployment", "StatefulSet"):
                    assert "livenessProbe" in item and "readinessProbe" in item, where


def test_storage(local, production) -> None:
    for name in ("data", "artifacts"):
        assert one(local, "PersistentVolumeClaim", name)["spec"]["accessModes"] == ["ReadWriteOnce"]
        shared = one(production, "PersistentVolumeClaim", name)["spec"]
        assert shared["accessModes"] == ["ReadWriteMany"] and shared["storageClassName"]
    for docs in (local, production):  # MLflow's, private to its one pod
        assert one(docs, "PersistentVolumeClaim", "mlflow-data")["spec"]["accessModes"] == [
            "ReadWriteOnce"
        ]
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


def test_the_secret_is_generated_and_never_committed(local, production) -> None:
    import subprocess

    from k8s.compose import REPO

    secret = generated_name(local, "Secret", "ctloop-secrets")
    assert set(secret["data"]) == set(SECRET_VARIABLES.values())
    assert "mlflow_tracking_password" in secret["data"]
    # PostgreSQL's password only where PostgreSQL runs.
    shared = generated_name(production, "Secret", "ctloop-secrets")
    assert set(shared["data"]) == set(SECRET_VARIABLES.values()) | {"postgres_password"}
    tracked = subprocess.run(
        ["git", "ls-files", "k8s"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [path for path in tracked if "/secrets/" in path], tracked
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "k8s/overlays/local/secrets/api_token"], cwd=REPO
    )
    assert ignored.returncode == 0

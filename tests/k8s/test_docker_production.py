"""The production overlay's PostgreSQL, MLflow, init Job and API started with Docker exactly as
their specs say (tests/k8s/docker_pods): PostgreSQL initialises its database on its claim as the
image's user with a read-only root, MLflow reaches it by the Service's name with the URL
Kubernetes completes from the Secret, keeps its runs there (not in SQLite), and the data outlives
a restart; two API replicas keep their feedback rows in it (DATABASE_URL, PGPASSWORD), not in a
file.

The upstream `postgres` image is pulled where a registry answers; CI builds a stand-in from
Debian's packages first (.ci/postgres-image.sh). The project's images are the ones Compose builds,
as in test_docker_run.py (the overlay's `:0.1.0` tags dropped)."""

from __future__ import annotations

import copy
import time

import pytest

from harness import loopback
from harness.compose import image_available
from tests.k8s.docker_pods import (
    HELPER_IMAGE,
    Pods,
    build_images,
    docker,
    feedback_through,
    require_docker,
    wait_probe,
)
from tests.k8s.manifests import container, generated_name, one, pod_spec

pytestmark = pytest.mark.docker
SLACK = 3.0  # probe budgets times this, on a loaded 2-core machine


@pytest.fixture(scope="module")
def pods(rendered, tmp_path_factory):
    require_docker()
    docs = copy.deepcopy(rendered["production"][1])
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob"):
            for item in pod_spec(doc)["containers"]:
                if item["image"].startswith("ctloop-"):
                    item["image"] = item["image"].rsplit(":", 1)[0]
    database = container(one(docs, "StatefulSet", "postgres"), "postgres")["image"]
    if not image_available(database):
        pytest.skip(f"{database} cannot be pulled here: run .ci/postgres-image.sh")
    # The helper gives claims to their fsGroup.
    build_images({"ctloop-tracking", "ctloop-serving", HELPER_IMAGE})
    running = Pods(docs, tmp_path_factory.mktemp("production-pods"))
    try:
        yield running
    finally:
        running.close()


def started(pods: Pods, kind: str, name: str) -> str:
    """The workload's first replica started, its probes passed in the kubelet's order."""
    workload = one(pods.docs, kind, name)
    (spec,) = pod_spec(workload)["containers"]
    container_name = pods.start(workload)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in spec:
            wait_probe(pods, container_name, spec, spec[probe], SLACK)
    return container_name


@pytest.fixture(scope="module")
def postgres(pods) -> str:
    return started(pods, "StatefulSet", "postgres")


@pytest.fixture(scope="module")
def mlflow(pods, postgres) -> str:
    return started(pods, "Deployment", "mlflow")


@pytest.fixture(scope="module")
def api_replicas(pods, postgres) -> list[str]:
    """The init Job run to completion, then two API replicas answering their probes."""
    code, logs = pods.run_to_completion(one(pods.docs, "Job", "init"))
    assert code == 0, logs
    deployment = one(pods.docs, "Deployment", "serving-api")
    (spec,) = pod_spec(deployment)["containers"]
    names = [pods.start(deployment, replica) for replica in range(2)]
    for name in names:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in spec:
                wait_probe(pods, name, spec, spec[probe], SLACK)
    return names


def test_the_api_replicas_keep_feedback_in_postgres(pods, postgres, api_replicas) -> None:
    """Feedback through either replica: one count, the rows in PostgreSQL, no prod_data.csv."""
    token = pods.object_data("Secret", secret_name(pods))["api_token"].strip()
    rows = feedback_through(pods, api_replicas, token)
    assert rows == [1, 2, 3, 4]  # one count, whichever replica wrote
    assert sql(pods, postgres, "SELECT count(*) FROM ctloop_prod_data") == "4"
    listing = docker("exec", api_replicas[0], "ls", "/app/data").stdout.split()
    assert "prod_data.csv" not in listing, listing


def sql(pods: Pods, name: str, query: str) -> str:
    """A query through the server's socket, as its own user (trusted there, as upstream)."""
    return docker("exec", name, "psql", "--username=mlflow", "--dbname=mlflow", "--no-psqlrc",
                  "--tuples-only", "--no-align", "--command", query).stdout.strip()  # fmt: skip


def test_postgres_runs_as_its_spec_says(pods, postgres) -> None:
    workload = one(pods.docs, "StatefulSet", "postgres")
    found = pods.inspect(postgres)
    assert found["Config"]["User"] == "999:999"
    assert found["HostConfig"]["ReadonlyRootfs"] is True
    assert found["HostConfig"]["CapDrop"] == ["ALL"] and not found["HostConfig"]["CapAdd"]
    assert docker("exec", postgres, "id", "-u").stdout.strip() == "999"
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    volume = f"{pods.prefix}-{claim['metadata']['name']}-postgres-0"
    assert volume in {mount.get("Name") for mount in found["Mounts"]}
    # Its data in a folder of the claim, readable by its owner alone.
    (spec,) = pod_spec(workload)["containers"]
    pgdata = next(entry["value"] for entry in spec["env"] if entry["name"] == "PGDATA")
    assert docker("exec", postgres, "stat", "-c", "%u %a", pgdata).stdout.split() == ["999", "700"]
    assert sql(pods, postgres, "SELECT current_database()") == "mlflow"


def create_experiment(pods: Pods, mlflow: str, name: str) -> None:
    """Through MLflow's API, signed in as its admin with the Secret's password."""
    (spec,) = pod_spec(one(pods.docs, "Deployment", "mlflow"))["containers"]
    user = pods.env(spec)["MLFLOW_TRACKING_USERNAME"]
    password = pods.object_data("Secret", secret_name(pods))["mlflow_tracking_password"].strip()
    reply = loopback.post(
        pods.url(mlflow, 5000) + "/api/2.0/mlflow/experiments/create",
        json={"name": name},
        auth=(user, password),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text


def test_mlflow_keeps_its_runs_in_postgres(pods, postgres, mlflow) -> None:
    create_experiment(pods, mlflow, "kept-in-postgres")
    assert "kept-in-postgres" in sql(pods, postgres, "SELECT name FROM experiments").splitlines()
    listing = docker("exec", mlflow, "ls", "/app/mlflow").stdout.split()
    assert "mlflow.db" not in listing, listing  # the store is not SQLite here
    # The URL Kubernetes completed: the Secret's password, never the literal $(...).
    env = dict(item.split("=", 1) for item in pods.inspect(mlflow)["Config"]["Env"])
    stored = pods.object_data("Secret", secret_name(pods))["postgres_password"]
    assert env["MLFLOW_BACKEND_STORE_URI"] == (
        f"postgresql+psycopg://mlflow:{stored}@postgres:5432/mlflow"
    )


def test_the_database_outlives_a_restart(pods, postgres, mlflow) -> None:
    create_experiment(pods, mlflow, "outlives-a-restart")
    (spec,) = pod_spec(one(pods.docs, "StatefulSet", "postgres"))["containers"]
    docker("restart", postgres, timeout=120)
    time.sleep(1)
    wait_probe(pods, postgres, spec, spec["readinessProbe"], SLACK)
    assert "outlives-a-restart" in sql(pods, postgres, "SELECT name FROM experiments").splitlines()


def secret_name(pods: Pods) -> str:
    return generated_name(pods.docs, "Secret", "ctloop-secrets")["metadata"]["name"]

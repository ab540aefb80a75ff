"""Each Kubernetes container runs what Compose runs: image, command, environment (values
included), memory limit, mounts (down to each file's content), user, read-only root,
capabilities; and a change to Compose or .env.example that k8s/ does not carry fails, naming it."""

from __future__ import annotations

import copy

import pytest

from k8s.compose import ComposeError, load_compose, read_env_file
from k8s.generate import Generator
from tests.k8s import parity

POSTGRES_URL = "postgresql+psycopg://mlflow:$(POSTGRES_PASSWORD)@postgres:5432/mlflow"
FEEDBACK_URL = "postgresql://mlflow@postgres:5432/mlflow"  # its password: PGPASSWORD


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_every_container_runs_what_compose_runs(rendered, overlay: str) -> None:
    docs = rendered[overlay][1]
    if overlay == "production":
        # The project's images at a version, MLflow's store and the feedback rows in PostgreSQL;
        # nothing else differs.
        docs = copy.deepcopy(docs)
        for doc in docs:
            if doc["kind"] in ("Deployment", "Job", "CronJob"):
                for item in parity.pod_spec(doc)["containers"]:
                    if item["image"].startswith("ctloop-"):
                        assert item["image"].endswith(":0.1.0"), item["image"]
                        item["image"] = item["image"].rsplit(":", 1)[0]
        mlflow = parity.container(parity.one(docs, "Deployment", "mlflow"), "mlflow")
        password, *others = mlflow["env"]
        assert password["name"] == "POSTGRES_PASSWORD", password
        assert password["valueFrom"]["secretKeyRef"]["key"] == "postgres_password", password
        (store,) = [entry for entry in others if entry["name"] == "MLFLOW_BACKEND_STORE_URI"]
        assert store == {"name": store["name"], "value": POSTGRES_URL}, store
        store["value"] = ""  # Compose's default: SQLite in MLFLOW_HOME
        mlflow["env"] = others
        # The feedback rows in PostgreSQL: the URL in the settings, its password from the Secret.
        settings = parity.generated_name(docs, "ConfigMap", "ctloop-settings")["data"]
        assert settings["DATABASE_URL"] == FEEDBACK_URL
        settings["DATABASE_URL"] = ""  # Compose's default: prod_data.csv
        for doc in docs:
            if doc["kind"] not in ("Deployment", "Job", "CronJob"):
                continue
            for item in parity.pod_spec(doc)["containers"]:
                passwords = [e for e in item.get("env") or [] if e["name"] == "PGPASSWORD"]
                assert all(
                    e["valueFrom"]["secretKeyRef"]["key"] == "postgres_password" for e in passwords
                )
                item["env"] = [e for e in item.get("env") or [] if e["name"] != "PGPASSWORD"]
    found = parity.problems(load_compose(), read_env_file(), docs)
    assert not found, "\n".join(found)


def test_a_setting_added_to_compose_alone_is_named(local) -> None:
    compose, example = load_compose(), read_env_file()
    compose["services"]["serving-api"]["environment"]["COMPOSE_ONLY"] = "${COMPOSE_ONLY:-on}"
    example["COMPOSE_ONLY"] = "on"
    found = parity.problems(compose, example, local)
    assert found == [
        "Deployment/serving-api (serving-api, from Compose's serving-api): COMPOSE_ONLY is set "
        "by Compose, not by Kubernetes: run `make k8s-config`"
    ]
    # ... and the generator carries it: the ConfigMap and the container both get it.
    files = Generator(compose, example).run()
    assert "COMPOSE_ONLY=on" in files["settings.env"]
    assert "key: COMPOSE_ONLY" in files["containers.yaml"]


def test_a_changed_default_is_named(local) -> None:
    example = read_env_file()
    example["RETRAIN_EVERY"] = "50"
    compose = load_compose()
    with pytest.raises(ComposeError, match=r"RETRAIN_EVERY: docker-compose\.yml's default is '20'"):
        Generator(compose, example).run()
    found = parity.problems(compose, example, local)
    assert any("RETRAIN_EVERY='20' on Kubernetes, '50' under Compose" in p for p in found), found


def test_a_variable_no_container_reads_is_named() -> None:
    example = {**read_env_file(), "UNREAD_SETTING": "10"}
    with pytest.raises(ComposeError, match=r"UNREAD_SETTING \(\.env\.example\) reaches no"):
        Generator(load_compose(), example).run()


def test_a_new_compose_service_is_named(local) -> None:
    compose = load_compose()
    compose["services"]["trainer"] = copy.deepcopy(compose["services"]["serving-api"])
    found = parity.problems(compose, read_env_file(), local)
    assert found and "Compose service trainer has no Kubernetes workload" in found[0]


def test_a_monitoring_file_changed_without_regenerating_is_named(local) -> None:
    docs = copy.deepcopy(local)
    rules = next(d for d in docs if d["metadata"]["name"].startswith("prometheus-rules-"))
    rules["data"]["ctloop.rules.yml"] += "# edited\n"
    found = parity.problems(load_compose(), read_env_file(), docs)
    assert found == [
        "Deployment/prometheus (prometheus, from Compose's prometheus): "
        "/etc/prometheus/rules/ctloop.rules.yml differs from the repository's file: "
        "run `make k8s-config`"
    ]

"""The stack's registry mirrored into a real MLflow server (`python -m tracking.server`, basic
authentication on), and the `champion` alias moved in MLflow taken back as a promotion."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import mlflow
import numpy as np
import psycopg
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server.auth.client import AuthServiceClient

from ctloop.config import CoreSettings
from ctloop.predict import load_model
from ctloop.registry import ModelRegistry
from harness import loopback
from harness.data import copy_workspace, flip, served_feedback, write_prod
from harness.delivery import register_challenger
from harness.processes import MlflowServer, free_port, postgres_database
from harness.reporting import reporting_settings
from reporting.exporter import SnapshotCollector, serve_metrics
from reporting.refresher import Refresher
from tracking.mirror import CHALLENGER, CHAMPION, VERSION_TAG, Mirror
from tracking.settings import TrackingSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with MlflowServer(root / "home", root / "mlflow.log") as running:
        yield running


@pytest.fixture
def signed_in(server, monkeypatch):
    """MLflow's client as the mirror runs it: the admin's credentials, no retries."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return server


def mirror_of(workspace: CoreSettings, server: MlflowServer, name: str) -> Mirror:
    """A mirror of `workspace` into its own experiment and registered model, both `name`."""
    settings = TrackingSettings(tracking_uri=server.url, experiment=name, model_name=name)
    return Mirror(workspace, settings)


def runs_by_version(client: MlflowClient, name: str) -> dict[str, list]:
    experiment = client.get_experiment_by_name(name)
    found: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id]):
        found.setdefault(run.data.tags[VERSION_TAG], []).append(run)
    return found


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> the stack's version it names."""
    model = client.get_registered_model(name)
    return {
        alias: client.get_model_version(name, number).tags[VERSION_TAG]
        for alias, number in model.aliases.items()
    }


def promoted_second(built: CoreSettings, root: Path) -> tuple[CoreSettings, ModelRegistry, str]:
    """A copy of the built workspace where a second version was trained and promoted."""
    workspace = copy_workspace(built, root)
    registry = ModelRegistry(workspace.artifacts_dir)
    second = register_challenger(workspace)
    registry.promote(second, "a test's promotion")
    return workspace, registry, second


def test_the_server_asks_for_a_password(server) -> None:
    url = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert loopback.get(url).status_code == 401
    assert loopback.get(url, auth=("admin", "guess")).status_code == 401
    assert loopback.get(url, auth=("admin", server.password)).status_code == 200
    assert len(server.password) >= 40  # generated at first start, like the stack's other secrets


def test_every_version_is_a_run_and_a_model_version_served_alike(
    built: CoreSettings, tmp_path, signed_in
) -> None:
    workspace, registry, _ = promoted_second(built, tmp_path)
    mirror = mirror_of(workspace, signed_in, "versions")

    done = mirror.sync()

    assert done[:4] == [
        "run of v0001", "model version of v0001", "run of v0002", "model version of v0002"
    ]  # fmt: skip
    assert mirror.sync() == []  # idempotent
    client = MlflowClient(signed_in.url, signed_in.url)
    runs = runs_by_version(client, "versions")
    assert sorted(runs) == ["v0001", "v0002"] and all(len(r) == 1 for r in runs.values())
    (first,) = runs["v0001"]
    manifest = registry.manifest("v0001")
    assert first.data.params["training.mode"] == manifest["training"]["mode"]
    assert first.data.params["training.head.members"] == "1"
    assert first.data.params["libraries.onnxruntime"] == manifest["libraries"]["onnxruntime"]
    assert first.data.metrics["holdout.accuracy"] == pytest.approx(
        manifest["metrics"]["holdout"]["accuracy"]
    )
    assert "holdout.per_class_recall.3" in first.data.metrics
    assert "gate.challenger.score" in first.data.metrics
    assert first.data.tags["ctloop.decision"] == "promoted"
    assert first.data.tags["ctloop.sha256.pipeline.onnx"] == manifest["files"]["pipeline.onnx"]
    assert aliases(client, "versions") == {CHAMPION: "v0002"}

    # The champion loads back through MLflow (onnx flavour, pyfunc) and answers as served.
    pixels = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    _, _, served = load_model(registry.load()).predict_pixels(pixels)
    mlflow.set_tracking_uri(signed_in.url)
    loaded = mlflow.pyfunc.load_model("models:/versions@champion")
    np.testing.assert_allclose(
        loaded.predict({"pixels": pixels})["probabilities"], served, atol=1e-5
    )
    session_model = mlflow.onnx.load_model("models:/versions@champion")
    assert [node.name for node in session_model.graph.input] == ["pixels"]


def test_aliases_and_stage_tags_follow_the_registry(
    built: CoreSettings, tmp_path, signed_in
) -> None:
    workspace = copy_workspace(built, tmp_path)
    registry = ModelRegistry(workspace.artifacts_dir)
    mirror = mirror_of(workspace, signed_in, "stages")
    client = MlflowClient(signed_in.url, signed_in.url)
    challenger = register_challenger(workspace)
    registry.start_stage(challenger, "canary", 10.0, "a test's canary", 0)

    mirror.sync()
    assert aliases(client, "stages") == {CHAMPION: "v0001", CHALLENGER: challenger}
    staged = client.get_model_version_by_alias("stages", CHALLENGER)
    assert staged.tags["ctloop.stage"] == "canary"
    assert staged.tags["ctloop.stage_reason"] == "a test's canary"

    registry.end_stage(True, "the canary did well", challenger)
    mirror.sync()
    assert aliases(client, "stages") == {CHAMPION: challenger}
    assert client.get_model_version_by_alias("stages", CHAMPION).tags["ctloop.stage"] == "champion"
    first = client.search_model_versions("name = 'stages' and tag.`ctloop.version` = 'v0001'")
    assert first[0].tags["ctloop.stage"] == "retired"


def test_moving_the_champion_alias_in_mlflow_serves_that_version(
    built: CoreSettings, tmp_path, signed_in
) -> None:
    workspace, registry, _ = promoted_second(built, tmp_path)
    mirror = mirror_of(workspace, signed_in, "promotion")
    mirror.sync()
    client = MlflowClient(signed_in.url, signed_in.url)
    (older,) = client.search_model_versions("name = 'promotion' and tag.`ctloop.version` = 'v0001'")
    # A person of the team, allowed by the admin to manage the registered model.
    admin = AuthServiceClient(signed_in.url)
    admin.create_user("alice", "a long enough password 1")
    admin.grant_user_permission("alice", "registered_model", "promotion", "MANAGE")
    alice = loopback.post(
        f"{signed_in.url}/api/2.0/mlflow/registered-models/alias",
        json={"name": "promotion", "alias": CHAMPION, "version": older.version},
        auth=("alice", "a long enough password 1"),
    )
    assert alice.status_code == 200, alice.text

    done = mirror.sync()

    assert "promoted v0001 from MLflow" in done
    assert registry.current_version() == "v0001"
    last = registry.pointer.history()[-1]
    assert last["version"] == "v0001", last
    assert last["reason"].startswith("promoted from MLflow: alice at 20"), last["reason"]
    assert aliases(client, "promotion") == {CHAMPION: "v0001"}
    assert mirror.sync() == []


def test_a_version_the_stack_cannot_serve_is_refused_and_the_alias_put_back(
    built: CoreSettings, tmp_path, signed_in
) -> None:
    workspace = copy_workspace(built, tmp_path)
    registry = ModelRegistry(workspace.artifacts_dir)
    second = register_challenger(workspace)
    mirror = mirror_of(workspace, signed_in, "refusal")
    mirror.sync()
    client = MlflowClient(signed_in.url, signed_in.url)
    (damaged,) = client.search_model_versions(
        f"name = 'refusal' and tag.`ctloop.version` = '{second}'"
    )
    flip(workspace.artifacts_dir / "versions" / second / "pipeline.onnx")

    client.set_registered_model_alias("refusal", CHAMPION, damaged.version)
    done = mirror.sync()

    assert any(line.startswith(f"refused {second}") for line in done), done
    assert registry.current_version() == "v0001"
    assert aliases(client, "refusal") == {CHAMPION: "v0001"}  # put back
    refused = client.get_model_version("refusal", damaged.version).tags["ctloop.refused"]
    assert "pipeline.onnx" in refused or "sha256" in refused, refused


def test_a_damaged_version_is_skipped_and_a_half_logged_run_logged_again(
    built: CoreSettings, tmp_path, signed_in
) -> None:
    """A version whose files fail verification holds back none after it; a run a cut pass left
    RUNNING (MLflow or the mirror gone mid-way) is replaced, so each version has one run."""
    workspace = copy_workspace(built, tmp_path)
    damaged, third = register_challenger(workspace), register_challenger(workspace)
    flip(workspace.artifacts_dir / "versions" / damaged / "pipeline.onnx")
    client = MlflowClient(signed_in.url, signed_in.url)
    experiment = client.create_experiment("damaged")
    cut = client.create_run(experiment, tags={VERSION_TAG: "v0001"})  # never FINISHED
    mirror = mirror_of(workspace, signed_in, "damaged")

    done = mirror.sync()

    assert done[:2] == ["run of v0001", "model version of v0001"]
    assert done[2].startswith(f"skipped {damaged} (") and "sha256" in done[2], done
    assert done[3:5] == [f"run of {third}", f"model version of {third}"]
    assert mirror.sync() == []  # said once; tried again quietly at every pass
    runs = runs_by_version(client, "damaged")
    assert sorted(runs) == ["v0001", third] and all(len(r) == 1 for r in runs.values())
    assert runs["v0001"][0].info.run_id != cut.info.run_id
    assert client.get_run(cut.info.run_id).info.lifecycle_stage == "deleted"


def test_the_served_versions_production_figures_follow_the_dashboard(
    built: CoreSettings, tmp_path, signed_in
) -> None:
    """The dashboard's exporter (a real one, on real snapshots) read by the mirror: each new
    snapshot's window figures become a step of the served version's run, logged once."""
    workspace = copy_workspace(built, tmp_path)
    embeddings, targets, predictions = served_feedback(built)
    dashboard = reporting_settings(workspace.data_dir, min_rows=30)
    collector, port = SnapshotCollector(dashboard.window_rows), free_port()
    exporter, _ = serve_metrics(collector, "127.0.0.1", port)
    refresher = Refresher(dashboard, listener=collector)
    settings = TrackingSettings(
        tracking_uri=signed_in.url,
        experiment="figures",
        model_name="figures",
        figures_url=f"http://127.0.0.1:{port}/metrics",
    )
    client = MlflowClient(signed_in.url, signed_in.url)
    mirror = Mirror(workspace, settings)
    try:
        steps: list[int] = []
        for start, end in ((0, 60), (60, 90)):
            rows = slice(start, end)
            write_prod(dashboard.prod_data_path, embeddings[rows], targets[rows], predictions[rows])
            result = refresher.tick()
            assert result is not None and result.window is not None
            window = result.window
            done = mirror.sync()
            assert f"production figures of v0001 at {end} rows" in done, done
            assert mirror.sync() == []  # the same snapshot: nothing logged twice
            steps.append(end)
            (run,) = runs_by_version(client, "figures")["v0001"]
            history = client.get_metric_history(run.info.run_id, "production.window_accuracy")
            assert [metric.step for metric in history] == steps
            assert history[-1].value == pytest.approx(window.version_quality["v0001"]["accuracy"])
        # A restarted mirror reads what the run holds and logs nothing again.
        assert Mirror(workspace, settings).sync() == []
        drift = client.get_metric_history(run.info.run_id, "production.window_drift_share")
        assert [metric.step for metric in drift] == [60, 90]
    finally:
        exporter.shutdown()
        exporter.server_close()


@pytest.fixture
def postgres_url(tmp_path):
    """A real PostgreSQL server (Debian's packages) with an empty database for MLflow."""
    with contextlib.ExitStack() as running:
        try:
            url = running.enter_context(postgres_database(tmp_path / "postgres.log"))
        except FileNotFoundError as exc:
            pytest.skip(f"PostgreSQL is not installed: {exc}")
        yield url


def test_a_postgresql_backend_store_holds_the_same(
    built: CoreSettings, tmp_path, postgres_url, monkeypatch
) -> None:
    """MLFLOW_BACKEND_STORE_URI naming PostgreSQL: the server makes its tables there, and the
    mirror's runs, versions and aliases land in them."""
    workspace, _, second = promoted_second(built, tmp_path)
    home = tmp_path / "home"
    with MlflowServer(
        home, tmp_path / "mlflow.log", MLFLOW_BACKEND_STORE_URI=postgres_url
    ) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.password)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mirror_of(workspace, server, "postgres").sync()
        client = MlflowClient(server.url, server.url)
        assert sorted(runs_by_version(client, "postgres")) == ["v0001", second]
        assert aliases(client, "postgres") == {CHAMPION: second}
    assert not (home / "mlflow.db").exists()
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as connection:
        rows = connection.execute("SELECT count(*) FROM model_versions").fetchone()
    assert rows == (2,)


def test_an_outage_is_caught_up_in_order_and_a_lost_mlflow_rebuilt(
    built: CoreSettings, tmp_path, signed_in
) -> None:
    """The module's server is stopped (an outage), started again on the same store, then started
    on an empty one (its volume deleted): this test runs last in the module."""
    server = signed_in
    workspace = copy_workspace(built, tmp_path)
    registry = ModelRegistry(workspace.artifacts_dir)
    mirror = mirror_of(workspace, server, "outage")
    mirror.sync()
    server.stop()
    # MLflow away: the stack goes on (two versions, one promoted), the mirror's passes fail.
    later = [register_challenger(workspace), register_challenger(workspace)]
    registry.promote(later[1], "promoted while MLflow was away")
    with pytest.raises((MlflowException, OSError)):
        mirror.sync()
    server.start()
    done = mirror.sync()
    client = MlflowClient(server.url, server.url)
    runs = runs_by_version(client, "outage")
    assert done[:4] == [f"{kind} of {v}" for v in later for kind in ("run", "model version")]
    assert sorted(runs) == ["v0001", *later] and all(len(r) == 1 for r in runs.values())
    assert aliases(client, "outage") == {CHAMPION: later[1]}
    # MLflow's state lost: one pass rebuilds it from artifacts/.
    server.stop()
    shutil.rmtree(server.home)
    server.start()
    assert client.get_experiment_by_name("outage") is None
    mirror.sync()
    assert sorted(runs_by_version(client, "outage")) == ["v0001", *later]
    assert aliases(client, "outage") == {CHAMPION: later[1]}
    assert Path(server.home / "mlflow.db").exists()

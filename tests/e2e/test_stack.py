"""The whole stack through Docker Compose, driven only through its published ports.

`make e2e` runs this module (`.ci/run` runs it after `make test`). It builds and starts a copy of
the repository (a fresh clone's files, empty data/ and artifacts/) on free ports, with its own
project and network names, so it runs beside a stack that is up.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import time

import pytest

from harness import loopback
from harness.browser import CHROMIUM_ARGS, find_chromium
from harness.compose import Stack, copy_repository
from harness.processes import wait_for
from tests.e2e.conftest import FIGURES, K, free_port

pytestmark = pytest.mark.docker

CLASSES = [str(digit) for digit in range(10)]
PROJECT = "ctloop: production monitoring"


def test_first_start_built_the_reference_and_the_first_model(stack: Stack) -> None:
    header = (stack.root / "data" / "ref_data.csv").read_text().splitlines()[0]
    assert header == ",".join([f"PCA_{i}" for i in range(1, 33)] + ["target"])
    assert (stack.root / "artifacts" / "versions" / "v0001" / "classifier.onnx").exists()
    assert (stack.root / "data").stat().st_uid == 1000, "the folder keeps its owner"


def test_predict_as_json_and_as_a_file(stack: Stack, samples) -> None:
    for label in ("0", "3", "7"):
        png = samples[label]
        as_json = loopback.post(
            stack.url("serving") + "/predict", json={"image": base64.b64encode(png).decode()}
        )
        as_file = loopback.post(
            stack.url("serving") + "/predict", files={"file": ("digit.png", png, "image/png")}
        )
        for reply in (as_json, as_file):
            assert reply.status_code == 200, reply.text
            assert reply.json()["label"] == label
            assert reply.json()["model_version"] == "v0001"


def test_the_webapp_answers_with_its_page(stack: Stack) -> None:
    page = loopback.get(stack.url("webapp") + "/")
    assert page.status_code == 200 and "<title>Streamlit</title>" in page.text
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium to render the page (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            view = browser.new_page()
            view.goto(stack.url("webapp") + "/", wait_until="domcontentloaded")
            # Rendered by the page's server process, which reached the API at serving-api:8080.
            view.get_by_text("Digits classifier").first.wait_for(timeout=60_000)  # DATASET=digits
            view.get_by_text("The API is reachable.").first.wait_for(timeout=60_000)
            # The sidebar's metric shows the served version (rendered right after the message).
            view.get_by_text("v0001").first.wait_for(timeout=30_000)
        finally:
            browser.close()


def test_k_feedbacks_are_k_rows_on_the_host_and_start_a_retrain(stack: Stack, samples) -> None:
    prod = stack.root / "data" / "prod_data.csv"
    before = len(prod.read_text().splitlines()) - 1 if prod.exists() else 0
    labels = [CLASSES[i % 10] for i in range(K)]
    for label in labels:
        reply = loopback.post(
            stack.url("serving") + "/feedback",
            json={"image": base64.b64encode(samples[label]).decode(), "target": label},
            headers=stack.auth,  # the token the first start generated
        )
        assert reply.status_code == 200, reply.text
    assert reply.json()["retrain_triggered"] is True

    with prod.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) - 1 == before + K
    assert all(len(row) == len(rows[0]) for row in rows)
    assert [row[32] for row in rows[-K:]] == labels

    deadline = time.monotonic() + 180
    model = {}
    while time.monotonic() < deadline:
        model = loopback.get(stack.url("serving") + "/model").json()
        if (model.get("last_retrain") or {}).get("trigger_rows") == K:
            break
        time.sleep(1)
    retrain = model["last_retrain"]
    assert retrain["trigger_rows"] == K and retrain["decision"] in ("promoted", "rejected"), model
    FIGURES["retrain"] = {key: retrain.get(key) for key in ("decision", "version", "seconds")}
    if retrain["decision"] == "promoted":
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and model["version"] != retrain["version"]:
            time.sleep(0.5)
            model = loopback.get(stack.url("serving") + "/model").json()
        assert model["version"] == retrain["version"]
        # /model came from one worker; each of the two swaps on its own poll of the pointer.
        # Every answer, on new connections (either worker), is soon the new version's.
        image = {"image": base64.b64encode(samples["5"]).decode()}

        def versions() -> set[str]:
            return {
                loopback.post(stack.url("serving") + "/predict", json=image).json()["model_version"]
                for _ in range(8)
            }

        wait_for(lambda: versions() == {retrain["version"]}, timeout=30, what="every worker")
    else:
        assert model["version"] == "v0001"


def test_mlflow_holds_every_version_and_moving_its_champion_alias_moves_the_model(
    stack: Stack, monkeypatch
) -> None:
    """After the feedback and the retrain above: a run and a registered version per version of
    artifacts/, `champion` on the served one; a person who moves the alias gets it served."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    url, name = stack.url("mlflow"), "ctloop-classifier"
    assert (
        loopback.get(f"{url}/api/2.0/mlflow/registered-models/get?name={name}").status_code == 401
    )
    password = (stack.root / "secrets" / "mlflow_tracking_password").read_text().strip()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(url, url)
    versions = [v["version"] for v in loopback.get(stack.url("serving") + "/model/versions").json()]
    served = loopback.get(stack.url("serving") + "/model").json()["version"]

    def mirrored() -> tuple[dict[str, str], str | None]:
        """MLflow's version number -> the stack's version; the champion alias' stack version."""
        found = client.search_model_versions(f"name = '{name}'")
        numbers = {mv.version: mv.tags.get("ctloop.version") for mv in found}
        return numbers, numbers.get(client.get_registered_model(name).aliases.get("champion"))

    numbers: dict[str, str] = {}
    champion = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(MlflowException):  # before the mirror's first pass
            numbers, champion = mirrored()
        if sorted(numbers.values()) == sorted(versions) and champion == served:
            break
        time.sleep(1)
    assert sorted(numbers.values()) == sorted(versions) and champion == served, (numbers, champion)
    experiment = client.get_experiment_by_name("ctloop")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["ctloop.version"] for run in runs) == sorted(versions)

    # A person moves `champion` to the other version: the stack serves it within 30 s.
    assert len(versions) >= 2, f"the retrain registered no second version: {versions}"
    wanted = next(v for v in versions if v != served)
    moved = time.monotonic()
    client.set_registered_model_alias(
        name, "champion", next(n for n, v in numbers.items() if v == wanted)
    )
    model: dict = {}
    while time.monotonic() < moved + 30:
        model = loopback.get(stack.url("serving") + "/model").json()
        if model["version"] == wanted:
            break
        time.sleep(0.5)
    assert model["version"] == wanted, model
    FIGURES["mlflow_promotion_seconds"] = round(time.monotonic() - moved, 1)
    history = (stack.root / "artifacts" / "history.jsonl").read_text().splitlines()
    assert "promoted from MLflow: admin at " in history[-1], history[-1]
    FIGURES["mlflow_memory_mib"] = round(stack.memory_mib("mlflow"), 1)
    FIGURES["mlflow_mirror_memory_mib"] = round(stack.memory_mib("mlflow-mirror"), 1)


def test_the_dashboard_lists_snapshots_with_the_feedback_rows(stack: Stack) -> None:
    api = stack.url("reporting") + "/api"
    deadline = time.monotonic() + 120
    names: list[str] = []
    while time.monotonic() < deadline:
        projects = [p for p in loopback.get(api + "/projects").json() if p["name"] == PROJECT]
        assert len(projects) == 1
        snapshots = loopback.get(f"{api}/projects/{projects[0]['id']}/snapshots").json()
        names = [snapshot["name"] for snapshot in snapshots]
        if f"{K} feedback rows" in names:
            break
        time.sleep(2)
    assert f"{K} feedback rows" in names, names


def test_every_service_runs_as_a_non_root_user(stack: Stack) -> None:
    for service in ("serving-api", "webapp", "reporting", "mlflow", "mlflow-mirror"):
        uid = stack.container_user(service)
        assert uid.isdigit() and uid != "0", f"{service} runs as uid {uid!r}"


def test_down_and_up_keep_the_model_and_the_feedback(stack: Stack) -> None:
    before = loopback.get(stack.url("serving") + "/model").json()
    rows = (stack.root / "data" / "prod_data.csv").read_bytes()
    stack.down()
    FIGURES["warm_start_seconds"] = round(stack.up(build=False), 1)
    after = loopback.get(stack.url("serving") + "/model").json()
    assert after["version"] == before["version"]
    assert after["production_rows"] == before["production_rows"] == K
    assert (stack.root / "data" / "prod_data.csv").read_bytes() == rows
    assert sorted(p.name for p in (stack.root / "artifacts" / "versions").iterdir()) == [
        v["version"] for v in loopback.get(stack.url("serving") + "/model/versions").json()
    ]


def test_root_owned_folders_work_too(compose, stack: Stack, tmp_path) -> None:
    """CI's case: data/ and artifacts/ owned by root; the containers still run as uid 10001."""
    root = copy_repository(tmp_path / "clone")
    other = Stack(root, compose, free_port)
    try:
        init = other.run("run", "--rm", "init", timeout=600)
        assert init.returncode == 0, init.stdout + init.stderr
        assert (root / "data" / "ref_data.csv").exists() and (root / "data").stat().st_uid == 0
        script = (
            "id -u && touch /app/data/prod_probe /app/artifacts/probe"
            " && python -m ctloop registry verify"
        )
        probe = other.run(
            "run", "--rm", "--no-deps", "serving-api", "sh", "-c", script, timeout=300
        )
        assert probe.returncode == 0, probe.stdout + probe.stderr
        assert probe.stdout.splitlines()[0] == "10001"
        assert "v0001: 4 files match their sha256" in probe.stdout  # head.json too
    finally:
        other.run("down", "--remove-orphans", timeout=300)

"""Each endpoint's contract, in process (httpx.ASGITransport); the request log's lines, of a real
uvicorn."""

from __future__ import annotations

import csv
import json

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from ctloop.prod_data import ProductionData
from harness.asgi import BlockingClient
from harness.images import b64
from harness.processes import LiveServer, wait_for
from pictures import encode, render_grid
from serving.settings import ServingSettings

CLASSES = [str(digit) for digit in range(10)]


def test_health_and_ready(client: BlockingClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready",
        "model_version": "v0001",
        "problems": [],
    }


def test_a_png_of_each_class_is_predicted_right(client: BlockingClient, samples) -> None:
    for label, png in samples.items():
        reply = client.post("/predict", json={"image": b64(png)})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["label"] == label
        assert body["model_version"] == "v0001"
        assert sorted(body["probabilities"]) == CLASSES
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
        assert body["confidence"] == max(body["probabilities"].values())
        assert len(body["request_id"]) == 32 and reply.headers["x-request-id"] == body["request_id"]


def test_json_and_multipart_agree(client: BlockingClient, samples) -> None:
    for label, png in samples.items():
        as_json = client.post("/predict", json={"image": b64(png)}).json()
        as_file = client.post("/predict", files={"file": (f"{label}.png", png, "image/png")})
        assert as_file.status_code == 200, as_file.text
        assert as_file.json()["label"] == as_json["label"]
        assert as_file.json()["probabilities"] == as_json["probabilities"]


def test_a_large_upload_is_predicted_like_its_small_version(
    client: BlockingClient, samples
) -> None:
    """A 600x600 picture (decoded in a thread, off the event loop) gives the same answer."""
    cells = np.asarray(Image.open(__import__("io").BytesIO(samples["7"])), dtype=np.float32) / 255
    big = encode(render_grid(cells.reshape(-1), 75))
    small = client.post("/predict", json={"image": b64(samples["7"])}).json()
    large = client.post("/predict", files={"file": ("big.png", big, "image/png")}).json()
    assert large["label"] == small["label"] == "7"
    assert abs(large["confidence"] - small["confidence"]) < 1e-3


def test_a_batch_in_one_json_call(client: BlockingClient, samples) -> None:
    labels = ["0", "4", "9", "4"]
    reply = client.post("/predict", json={"images": [b64(samples[label]) for label in labels]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [p["label"] for p in body["predictions"]] == labels
    assert body["model_version"] == "v0001" and body["request_id"]


def test_a_batch_as_several_files(client: BlockingClient, samples) -> None:
    files = [("file", (f"{label}.png", samples[label], "image/png")) for label in ("1", "2")]
    body = client.post("/predict", files=files).json()
    assert [p["label"] for p in body["predictions"]] == ["1", "2"]


def test_a_data_url_is_accepted(client: BlockingClient, samples) -> None:
    reply = client.post("/predict", json={"image": "data:image/png;base64," + b64(samples["5"])})
    assert reply.status_code == 200 and reply.json()["label"] == "5"


@pytest.mark.parametrize("offered", ["trace-42", "=HYPERLINK(1)", "-1+2", "same"])
def test_request_ids_are_the_servers_own_and_unique(
    client: BlockingClient, settings: ServingSettings, samples, offered: str
) -> None:
    """A client's id may repeat or start a spreadsheet formula: rows and replies never carry it
    (its own id stays in the log line, to match the two)."""
    replies = [
        client.post(
            "/feedback",
            json={"image": b64(samples["5"]), "target": "5"},
            headers={"X-Request-ID": offered},
        )
        for _ in range(2)
    ]
    ids = [reply.json()["request_id"] for reply in replies]
    assert all(reply.status_code == 200 for reply in replies)
    assert len(set(ids)) == 2 and offered not in ids
    assert [reply.headers["x-request-id"] for reply in replies] == ids
    assert all(len(i) == 32 and i.isalnum() for i in ids)
    rows = ProductionData(settings.prod_data_path, 32).tail(2)
    assert rows.columns["request_id"].tolist() == ids


def test_feedback_appends_one_complete_row(
    client: BlockingClient, settings: ServingSettings, samples
) -> None:
    path = settings.prod_data_path
    before = path.read_text().splitlines()
    reply = client.post(
        "/feedback", json={"image": b64(samples["8"]), "target": "8", "prediction": "8"}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    after = path.read_text().splitlines()
    assert len(after) == len(before) + 1
    assert body["rows"] == len(after) - 1
    assert body["target"] == "8" and body["prediction"] == "8" and body["model_version"] == "v0001"
    assert body["retrain_every"] == 1000 and body["rows_until_retrain"] == 1000 - body["rows"]
    assert body["retrain_triggered"] is False
    header, row = next(csv.reader([after[0]])), next(csv.reader([after[-1]]))
    assert header == [f"PCA_{i}" for i in range(1, 33)] + [
        "target",
        "prediction",
        "model_version",
        "timestamp",
        "request_id",
        "client_prediction",
    ]
    assert len(row) == len(header)
    record = dict(zip(header, row, strict=True))
    assert record["target"] == "8" and record["prediction"] == "8"
    assert record["model_version"] == "v0001" and record["request_id"] == body["request_id"]
    assert record["client_prediction"] == "8" and record["timestamp"].endswith("Z")
    # The row is the image's embedding: the same vector the reference rows live in.
    reference = np.loadtxt(settings.ref_data_path, delimiter=",", skiprows=1, usecols=range(32))
    vector = np.array(row[:32], dtype=float)
    assert np.abs(vector).max() < np.abs(reference).max() * 2


def test_feedback_as_a_multipart_form(
    client: BlockingClient, settings: ServingSettings, samples
) -> None:
    rows = client.post(
        "/feedback",
        files={"file": ("6.png", samples["6"], "image/png")},
        data={"target": "6"},
    )
    assert rows.status_code == 200, rows.text
    last = settings.prod_data_path.read_text().splitlines()[-1].split(",")
    assert last[32:34] == ["6", "6"] and last[-1] == ""


def test_model_describes_the_served_version(
    client: BlockingClient, settings: ServingSettings
) -> None:
    body = client.get("/model").json()
    assert body["version"] == "v0001" and body["parent"] is None
    assert body["classes"] == CLASSES
    assert body["metrics"]["holdout"]["accuracy"] >= 0.98
    assert body["retrain_every"] == 1000 and body["promotion_policy"] == "gate"
    rows = ProductionData(settings.prod_data_path, 32).count_rows_on_disk()
    assert body["production_rows"] == rows and body["last_retrain"] is None
    assert body["rows_until_retrain"] == 1000 - rows % 1000 and body["retrain_backlog"] == 0
    assert "GATE_TOLERANCE" in body["gate_rule"]


def test_model_versions_lists_the_registry(client: BlockingClient) -> None:
    versions = client.get("/model/versions").json()
    assert [v["version"] for v in versions] == ["v0001"]
    assert versions[0]["current"] is True and versions[0]["holdout_accuracy"] >= 0.98


def test_openapi_documents_every_route_with_its_models(client: BlockingClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/predict", "post"),
        ("/feedback", "post"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/model", "get"),
        ("/model/versions", "get"),
        ("/model/rollback", "post"),
        ("/metrics", "get"),
    ]:
        assert method in paths[path], path
    predict = paths["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert predict["requestBody"]["content"]["application/json"]["schema"]["examples"]
    assert {"200", "413", "415", "422", "503"} <= set(predict["responses"])
    assert {"PredictResponse", "FeedbackResponse", "ModelInfo", "ErrorResponse"} <= set(
        spec["components"]["schemas"]
    )
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_metrics_count_requests_predictions_and_feedback(client: BlockingClient, samples) -> None:
    client.post("/predict", json={"image": b64(samples["2"])})
    client.post("/feedback", json={"image": b64(samples["2"]), "target": "2"})
    client.post("/predict", json={"image": "not base64!"})
    text = client.get("/metrics").text
    # The latency histogram's _count series is the request count by route, method and status.
    count = 'ctloop_http_request_duration_seconds_count{method="POST",route="/predict",status="%s"}'
    assert count % "200" in text and count % "422" in text
    assert (
        'ctloop_http_request_duration_seconds_bucket{le="0.01",method="POST",route="/predict",'
        'status="200"}' in text
    )
    values = samples_of(text)
    assert values[("ctloop_predictions_total", (("label", "2"),))] >= 1
    assert values[("ctloop_feedback_rows_total", ())] >= 1
    assert values[("ctloop_retrains_total", (("decision", "promoted"),))] == 0
    assert values[("ctloop_retrain_backlog", ())] == 0
    assert values[("ctloop_production_rows", ())] >= 1
    served = [
        labels for (name, labels), value in values.items() if name == "ctloop_model_info" and value
    ]
    assert served and all(dict(labels)["version"] == "v0001" for labels in served)
    accuracy = next(v for (n, _), v in values.items() if n == "ctloop_model_holdout_accuracy")
    assert accuracy >= 0.98


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels without pid): value} from the Prometheus text format."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            found[(sample.name, labels)] = sample.value
    return found


def test_logs_are_one_json_object_per_line(live: httpx.Client, server: LiveServer, samples) -> None:
    reply = live.post(
        "/predict", json={"image": b64(samples["3"])}, headers={"X-Request-ID": "log-me"}
    )
    assert reply.status_code == 200

    def entries() -> list[dict]:
        return [json.loads(line) for line in server.logs().splitlines() if line.strip()]

    # The request's line is written when its reply has gone: wait for it.
    wait_for(lambda: any(e.get("client_request_id") == "log-me" for e in entries()), 10)
    mine = [e for e in entries() if e.get("client_request_id") == "log-me"]
    assert len(mine) == 1
    assert mine[0]["request_id"] == reply.headers["x-request-id"]
    assert mine[0]["route"] == "/predict" and mine[0]["status"] == 200
    assert mine[0]["model_version"] == "v0001" and mine[0]["latency_ms"] > 0
    assert any(e.get("event") == "model_loaded" for e in entries())

"""POST /predict?grid=true: the preprocessed cells the model saw, for the page to show."""

from __future__ import annotations

import httpx
import numpy as np

from ctloop.preprocess import preprocess
from harness.images import b64


def test_the_default_reply_has_no_grid(client: httpx.Client, samples) -> None:
    body = client.post("/predict", json={"image": b64(samples["3"])}).json()
    assert "grid" not in body
    assert (
        "grid" not in client.post("/predict?grid=false", json={"image": b64(samples["3"])}).json()
    )


def test_grid_is_the_preprocessed_image(client: httpx.Client, samples) -> None:
    png = samples["5"]
    plain = client.post("/predict", json={"image": b64(png)}).json()
    reply = client.post("/predict?grid=true", files={"file": ("five.png", png, "image/png")})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["label"] == plain["label"] == "5"
    assert body["probabilities"] == plain["probabilities"]
    grid = np.array(body["grid"])
    assert grid.shape == (8, 8)
    assert np.abs(grid.reshape(-1) - preprocess(png)).max() <= 1e-4


def test_a_batch_with_grids(client: httpx.Client, samples) -> None:
    labels = ["0", "7"]
    reply = client.post("/predict?grid=1", json={"images": [b64(samples[x]) for x in labels]})
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]
    assert [p["label"] for p in predictions] == labels
    for label, prediction in zip(labels, predictions, strict=True):
        assert np.abs(np.ravel(prediction["grid"]) - preprocess(samples[label])).max() <= 1e-4


def test_a_wrong_grid_value_is_a_clear_422(client: httpx.Client, samples) -> None:
    reply = client.post("/predict?grid=maybe", json={"image": b64(samples["3"])})
    assert reply.status_code == 422
    body = reply.json()
    assert body["detail"] == "grid must be true or false, not 'maybe'"
    assert body["error"] == "invalid_query"


def test_the_grid_parameter_is_documented(client: httpx.Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert [p["name"] for p in operation["parameters"]] == ["grid"]

"""The page's helpers: the API client as the page uses it against a real API, the page's words
for its failures, the send-once rule, previews."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.data import prod_rows
from pictures import encode
from serving_client.client import ApiClient, ApiError
from serving_client.contract import FeedbackResponse, PredictResponseWithGrid
from webapp import state
from webapp.images import from_upload, preview
from webapp.problems import explain


@pytest.fixture
def client(api):
    http = ApiClient(api.url, token=api.token, timeout=10)
    yield http
    http.close()


def test_the_client_reads_the_model_and_predicts(client, samples) -> None:
    model = client.model()
    assert model.version == "v0001" and model.classes == [str(d) for d in range(10)]
    assert 0.9 < model.holdout_accuracy <= 1
    answer = client.predict(samples["9"], "9.png", "image/png")
    assert answer.label == "9" and answer.model_version == "v0001"
    assert set(answer.probabilities) == set(model.classes)
    assert answer.confidence == pytest.approx(max(answer.probabilities.values()))


def test_the_client_asks_for_the_grid_the_model_saw(client, samples) -> None:
    plain = client.predict(samples["4"], "4.png", "image/png")
    answer = client.predict(samples["4"], "4.png", "image/png", grid=True)
    assert isinstance(answer, PredictResponseWithGrid)
    assert not isinstance(plain, PredictResponseWithGrid)
    assert len(answer.grid) == 8 and all(len(row) == 8 for row in answer.grid)
    assert answer.probabilities == plain.probabilities
    top = answer.top(3)
    assert top[0] == ("4", answer.confidence) and len(top) == 3
    assert top[0][1] >= top[1][1] >= top[2][1]


def test_an_unknown_class_is_refused_with_the_valid_ones(client, samples, api) -> None:
    with pytest.raises(ApiError) as refused:
        client.feedback(samples["1"], "eleven", "1", filename="1.png")
    problem = refused.value
    assert (problem.kind, problem.status, problem.code) == ("refused", 422, "unknown_class")
    assert "'eleven' is not one of the model's classes: 0, 1, 2" in problem.detail
    assert explain(problem) == f"The prediction service refused the request: {problem.detail}."
    assert prod_rows(api.settings) == [], "nothing is written for a refused feedback"


def test_a_too_large_image_gets_a_plain_413_message(client) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    with pytest.raises(ApiError) as refused:
        client.predict(encode(Image.fromarray(noise)), "noise.png", "image/png")
    assert refused.value.status == 413 and refused.value.kind == "refused"
    assert explain(refused.value).startswith("The image is too large for the prediction service")
    assert "Use a smaller image" in explain(refused.value)
    assert len(refused.value.request_id) >= 8


def test_feedback_is_sent_once_per_image_and_prediction(client, samples) -> None:
    session: dict = {}
    state.init(session)
    image = from_upload("4.png", "image/png", samples["4"])
    shown = client.predict(image.data, image.name, image.media_type)
    key = state.feedback_key(image, shown)
    calls: list[FeedbackResponse] = []

    def send() -> FeedbackResponse:
        receipt = client.feedback(image.data, "4", shown.label, filename=image.name)
        calls.append(receipt)
        return receipt

    first = state.send_once(session, key, send)
    assert isinstance(first, state.SentFeedback) and first.receipt.target == "4"
    assert state.send_once(session, key, send) is None
    assert len(calls) == 1

    session["sent"]["in flight"] = state.PENDING
    assert state.send_once(session, "in flight", send) is None, "a request in flight counts"
    assert len(calls) == 1


def test_a_failed_feedback_can_be_sent_again(samples, dead_url) -> None:
    session: dict = {}
    state.init(session)
    image = from_upload("4.png", "image/png", samples["4"])
    down = ApiClient(dead_url, timeout=2)

    def send() -> FeedbackResponse:
        return down.feedback(image.data, "4", "4", filename=image.name)

    problem = state.send_once(session, "k", send)
    assert isinstance(problem, ApiError) and problem.kind == "unreachable"
    assert explain(problem).startswith(f"The prediction service at {dead_url} cannot be reached")
    assert "while sending your feedback" in explain(problem)
    assert "k" not in session["sent"] and session["feedback_problems"]["k"] is problem
    assert isinstance(state.send_once(session, "k", send), ApiError), "tried again, not refused"
    down.close()


def test_previews_enlarge_small_digits_and_refuse_what_is_not_an_image(samples) -> None:
    shown = preview(samples["0"])
    assert shown is not None and shown.size == (280, 280) and shown.mode == "RGB"
    colours = np.unique(np.asarray(shown).reshape(-1, 3), axis=0)
    assert len(colours) <= 64, "enlarged without smoothing: at most 8x8 grey levels"
    assert preview(b"not an image") is None
    assert preview(b"") is None
    huge = encode(Image.new("L", (5000, 5000)))
    assert preview(huge) is None, "too many pixels to decode for a preview"
    transparent = encode(Image.new("RGBA", (40, 20), (0, 0, 0, 0)))
    wide = preview(transparent)
    assert wide is not None and wide.size == (280, 140)
    assert wide.getpixel((10, 10)) == (255, 255, 255), "transparency shown on white"

"""The page's logic under Streamlit's AppTest, against a real serving API on loopback."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ctloop.dataset import load_samples
from harness import loopback
from harness.data import copy_workspace, prod_rows
from harness.processes import WEBAPP_PAGE, LiveServer

NOT_AN_IMAGE = b"these are my notes, not a picture\n" * 4


def upload(at: AppTest, name: str, data: bytes, media_type: str = "image/png") -> AppTest:
    return at.file_uploader(key="upload").set_value((name, data, media_type)).run()


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def errors(at: AppTest) -> list[str]:
    return [error.value for error in at.main.error]


def successes(at: AppTest) -> list[str]:
    return [success.value for success in at.main.success]


def infos(at: AppTest) -> list[str]:
    return [info.value for info in at.main.info]


def true_class(at: AppTest):
    """The feedback's class chooser (the gallery has a class chooser of its own)."""
    (chooser,) = [box for box in at.selectbox if box.label == "The true class"]
    return chooser


def in_use(at: AppTest) -> list[str]:
    """Captions of the image in use (the gallery's thumbnails are images too)."""
    captions = [image.proto.imgs[0].caption for image in at.image]
    return [caption for caption in captions if caption.startswith("In use: ")]


def assert_no_traceback(at: AppTest) -> None:
    assert not at.exception, [exception.value for exception in at.exception]


def predicted(at: AppTest, name: str, data: bytes) -> AppTest:
    """Upload an image and click Predict."""
    upload(at, name, data)
    assert_no_traceback(at)
    return at.button(key="predict").click().run()


def test_the_sidebar_shows_the_api_the_model_and_the_links(api, page) -> None:
    model = loopback.get(f"{api.url}/model").json()
    at = page(
        api.url,
        WEBAPP_PUBLIC_API_URL="http://api.example:8080",
        WEBAPP_DASHBOARD_URL="http://dash.example",
    ).run()
    assert_no_traceback(at)
    sidebar = [element.value for element in at.sidebar.success]
    assert sidebar == ["The API is reachable."]
    shown = {metric.label: metric.value for metric in at.sidebar.metric}
    assert shown["Model version"] == model["version"] == "v0001"
    assert shown["Held-out accuracy"] == f"{model['metrics']['holdout']['accuracy']:.1%}"
    links = " ".join(markdown.value for markdown in at.sidebar.markdown)
    assert "(http://api.example:8080/docs)" in links and "(http://dash.example)" in links
    assert infos(at) == ["Upload an image, pick a sample or draw a digit to begin."]
    assert not [button for button in at.button if button.key == "predict"], (
        "nothing to predict before an image is given"
    )
    uploader = at.file_uploader(key="upload").proto
    assert uploader.max_upload_size_mb == 4
    assert set(uploader.type) >= {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def test_predict_shows_the_class_its_confidence_all_probabilities_and_the_version(
    api, page, samples
) -> None:
    direct = loopback.post(f"{api.url}/predict", files={"file": ("3.png", samples["3"])}).json()
    at = page(api.url).run()
    upload(at, "three.png", samples["3"])
    assert in_use(at) == ["In use: uploaded file three.png"]
    assert [caption.value for caption in at.caption if "Predict" in caption.value]
    at.button(key="predict").click().run()
    assert_no_traceback(at)

    assert direct["label"] == "3"
    assert metrics(at)["Predicted class"] == "3"
    assert metrics(at)["Confidence"] == f"{direct['confidence']:.1%}"
    (chart,) = at.get("vega_lite_chart")
    assert '"probability"' in chart.proto.spec and '"class"' in chart.proto.spec
    assert any("model **v0001**" in caption.value for caption in at.caption)
    chooser = true_class(at)
    assert chooser.options == [str(digit) for digit in range(10)]
    assert chooser.value == "3", "the true class defaults to the prediction"
    assert not errors(at)


def test_predict_shows_the_grid_the_model_saw_and_the_top_three_classes(api, page, samples) -> None:
    direct = loopback.post(
        f"{api.url}/predict?grid=true", files={"file": ("3.png", samples["3"])}
    ).json()
    at = predicted(page(api.url).run(), "three.png", samples["3"])
    assert_no_traceback(at)
    (seen,) = [image for image in at.image if "What the model saw" in image.proto.imgs[0].caption]
    assert "8 × 8 cells" in seen.proto.imgs[0].caption
    (top,) = [text.value for text in at.markdown if text.value.startswith("1. ")]
    ranked = sorted(direct["probabilities"].items(), key=lambda item: item[1], reverse=True)
    expected = [f"{i}. **{label}**: {p:.1%}" for i, (label, p) in enumerate(ranked[:3], 1)]
    assert top.splitlines() == expected
    assert expected[0].startswith("1. **3**")


def test_feedback_sends_the_chosen_class_once_and_confirms_it(
    built, tmp_path, page, samples
) -> None:
    settings = copy_workspace(built, tmp_path)
    with LiveServer(settings, tmp_path / "server.log", RETRAIN_EVERY="5") as server:
        at = predicted(page(server.url).run(), "seven.png", samples["7"])
        assert metrics(at)["Predicted class"] == "7"
        true_class(at).select("1").run()
        at.button(key="send_feedback").click().run()
        assert_no_traceback(at)

        (confirmation,) = [text for text in successes(at) if text.startswith("Thank you")]
        assert "recorded **1** as the true class (the model said 7)" in confirmation
        assert "Rows collected: **1**" in confirmation
        assert "Rows until the next retrain: **4**" in confirmation
        rows = prod_rows(settings)
        assert len(rows) == 1
        assert rows[0]["target"] == "1" and rows[0]["client_prediction"] == "7"
        assert rows[0]["prediction"] == "7"
        assert at.button(key="send_feedback").disabled, "a second click cannot send it again"
        assert true_class(at).disabled
        assert "1 feedback rows collected" in " ".join(c.value for c in at.sidebar.caption)

        at.run()  # any rerun keeps the confirmation and sends nothing
        assert any(text.startswith("Thank you") for text in successes(at))
        assert len(prod_rows(settings)) == 1


def test_a_feedback_that_starts_a_retrain_reports_the_new_version(
    built, tmp_path, page, samples
) -> None:
    settings = copy_workspace(built, tmp_path)
    env = {"RETRAIN_EVERY": "2", "PROMOTION_POLICY": "always"}
    with LiveServer(settings, tmp_path / "server.log", **env) as server:
        first = loopback.post(
            f"{server.url}/feedback",
            files={"file": ("4.png", samples["4"])},
            data={"target": "4"},
            headers=server.auth,
        )
        assert first.json()["rows"] == 1
        at = predicted(
            page(server.url, WEBAPP_RETRAIN_WAIT_SECONDS="120").run(), "5.png", samples["5"]
        )
        at.button(key="send_feedback").click().run(timeout=150)
        assert_no_traceback(at)

        model = loopback.get(f"{server.url}/model").json()
        assert model["last_retrain"]["trigger_rows"] == 2
        assert model["version"] == model["last_retrain"]["version"] == "v0002"
        assert any("Rows collected: **2**" in text for text in successes(at))
        assert (
            "Retrain at 2 rows: new version **v0002** was promoted: v0002 now answers predictions."
        ) in infos(at)
        sidebar = {metric.label: metric.value for metric in at.sidebar.metric}
        assert sidebar["Model version"] == "v0002"


def test_a_rejected_retrain_says_the_served_model_stays(built, tmp_path, page) -> None:
    """1s labelled 7 teach a challenger a mistake that the held-out rows (every 5th) expose."""
    settings = copy_workspace(built, tmp_path)
    samples = load_samples(settings.samples_dir)
    ones = [
        image for image, label in zip(samples.inputs, samples.labels, strict=True) if label == "1"
    ]
    # The whole fine-tune step: 0.3 of a step of 16 rows barely moves the head (no rejection).
    env = {"RETRAIN_EVERY": "20", "PROD_WEIGHT": "50", "FINETUNE_INTERPOLATION": "1"}
    with LiveServer(settings, tmp_path / "server.log", **env) as server:
        for index, image in enumerate(ones[:19]):
            target = "1" if index % 5 == 4 else "7"
            reply = loopback.post(
                f"{server.url}/feedback",
                files={"file": ("1.png", image)},
                data={"target": target},
                headers=server.auth,
            )
            assert reply.status_code == 200
        at = page(server.url, WEBAPP_RETRAIN_WAIT_SECONDS="120").run()
        at = predicted(at, "one.png", ones[19])  # row 20 is held out: its true class, 1
        assert metrics(at)["Predicted class"] == "1"
        at.button(key="send_feedback").click().run(timeout=150)
        assert_no_traceback(at)

        last = loopback.get(f"{server.url}/model").json()["last_retrain"]
        assert last["trigger_rows"] == 20 and last["decision"] == "rejected", last
        assert (
            f"Retrain at 20 rows: new version **{last['version']}** was rejected by the quality "
            "gate: v0001 keeps answering."
        ) in infos(at)
        sidebar = " ".join(caption.value for caption in at.sidebar.caption)
        assert f"Last retrain, at 20 rows: {last['version']} rejected." in sidebar


def test_a_token_is_sent_when_the_api_needs_one(built, tmp_path, page, samples) -> None:
    settings = copy_workspace(built, tmp_path)
    with LiveServer(settings, tmp_path / "server.log", API_TOKEN="s3cret-token") as server:
        at = predicted(page(server.url, API_TOKEN="").run(), "2.png", samples["2"])
        at.button(key="send_feedback").click().run()
        assert_no_traceback(at)
        (refusal,) = errors(at)
        assert "Set the webapp's API_TOKEN to the API's token" in refusal
        assert prod_rows(settings) == []
        assert not at.button(key="send_feedback").disabled, "a refused feedback can be retried"

        at = predicted(page(server.url, API_TOKEN="wrong").run(), "2.png", samples["2"])
        at.button(key="send_feedback").click().run()
        assert "Check that the webapp's API_TOKEN is the same as the API's" in errors(at)[0]

        at = predicted(page(server.url, API_TOKEN="s3cret-token").run(), "2.png", samples["2"])
        at.button(key="send_feedback").click().run()
        assert not errors(at)
        assert [row["target"] for row in prod_rows(settings)] == ["2"]

        # No API_TOKEN: the page reads the token the stack generated in SECRETS_DIR.
        generated = tmp_path / "generated-secrets"
        generated.mkdir()
        (generated / "api_token").write_text("s3cret-token\n")
        at = page(server.url, API_TOKEN="", SECRETS_DIR=str(generated)).run()
        at = predicted(at, "3.png", samples["3"])
        at.button(key="send_feedback").click().run()
        assert not errors(at)
        assert [row["target"] for row in prod_rows(settings)] == ["2", "3"]


def test_an_api_that_is_down_is_reported_in_plain_words_and_the_image_kept(
    dead_url, page, samples
) -> None:
    at = page(dead_url).run()
    assert_no_traceback(at)
    assert [error.value for error in at.sidebar.error] == ["The API cannot be reached."]
    status = " ".join(caption.value for caption in at.sidebar.caption)
    assert f"The prediction service at {dead_url} cannot be reached" in status

    at = predicted(at, "8.png", samples["8"])
    assert_no_traceback(at)
    (problem,) = errors(at)
    assert "cannot be reached" in problem and "try again" in problem
    assert "Traceback" not in problem
    assert "Predicted class" not in metrics(at)
    assert len(at.image) == 1, "the image is still shown"
    assert at.file_uploader(key="upload").value.name == "8.png"

    at.button(key="predict").click().run()  # the person tries again: same answer, no crash
    assert_no_traceback(at)
    assert len(errors(at)) == 1 and len(at.image) == 1


def test_an_api_lost_between_predict_and_feedback_keeps_everything(
    built, tmp_path, page, samples
) -> None:
    settings = copy_workspace(built, tmp_path)
    server = LiveServer(settings, tmp_path / "server.log")
    with server:
        at = predicted(page(server.url).run(), "6.png", samples["6"])
        assert metrics(at)["Predicted class"] == "6"
        server.stop()
        at.button(key="send_feedback").click().run()
        assert_no_traceback(at)
        (problem,) = errors(at)
        assert "cannot be reached" in problem and "while sending your feedback" in problem
        assert metrics(at)["Predicted class"] == "6", "the prediction is still shown"
        captions = [image.proto.imgs[0].caption for image in at.image]
        assert [c for c in captions if c.startswith("In use: uploaded file 6.png")]
        assert not at.button(key="send_feedback").disabled
        assert prod_rows(settings) == []

        server.start()
        at.button(key="send_feedback").click().run()
        assert_no_traceback(at)
        assert not errors(at)
        assert [row["target"] for row in prod_rows(settings)] == ["6"]


def test_a_file_the_api_refuses_shows_the_apis_message_and_stays(api, page, samples) -> None:
    refusal = loopback.post(f"{api.url}/predict", files={"file": ("notes.png", NOT_AN_IMAGE)})
    assert refusal.status_code == 422
    detail = refusal.json()["detail"].rstrip(".")

    at = page(api.url).run()
    upload(at, "notes.png", NOT_AN_IMAGE)
    assert any("cannot be shown here" in warning.value for warning in at.warning)
    at.button(key="predict").click().run()
    assert_no_traceback(at)
    (problem,) = errors(at)
    assert problem.startswith("The prediction service could not use this image")
    assert detail in problem and "PNG, JPEG, BMP, GIF or WebP" in problem
    assert "Predicted class" not in metrics(at)
    assert at.file_uploader(key="upload").value.name == "notes.png", "the file is kept"

    at.run()  # the message stays for this file across reruns
    assert errors(at) == [problem]

    upload(at, "1.png", samples["1"])  # another image: the old message goes away
    assert not errors(at)
    at.button(key="predict").click().run()
    assert metrics(at)["Predicted class"] == "1" and not errors(at)


def test_a_stuck_api_times_out_in_plain_words(silent_url, page, samples) -> None:
    at = page(
        silent_url, WEBAPP_REQUEST_TIMEOUT_SECONDS="1", WEBAPP_STATUS_TIMEOUT_SECONDS="0.5"
    ).run()
    assert_no_traceback(at)
    assert [error.value for error in at.sidebar.error] == ["The API is not answering."]
    status = " ".join(caption.value for caption in at.sidebar.caption)
    assert "did not reply within 0.5 s" in status

    at = predicted(at, "0.png", samples["0"])
    assert_no_traceback(at)
    (problem,) = errors(at)
    assert "did not reply within 1 s while asking for a prediction" in problem
    assert len(at.image) == 1 and "Predicted class" not in metrics(at)


def test_a_misconfigured_page_says_what_to_fix(page) -> None:
    at = page("serving-api:8080").run()
    assert_no_traceback(at)
    (problem,) = errors(at)
    assert "misconfigured" in problem and "not an http:// or https:// URL" in problem


@pytest.mark.parametrize("path", sorted((WEBAPP_PAGE.parent).glob("*.py")), ids=lambda p: p.name)
def test_the_page_talks_only_to_the_api(path: Path) -> None:
    """No module of the webapp imports the ML core or the API's code."""
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"ctloop", "serving", "sklearn", "onnxruntime"}, imported


def test_a_url_that_is_not_the_api_says_to_check_api_url(api, page) -> None:
    at = page(f"{api.url}/elsewhere").run()
    assert_no_traceback(at)
    assert [error.value for error in at.sidebar.error] == ["The API is not working as expected."]
    status = " ".join(caption.value for caption in at.sidebar.caption)
    assert "has no /model route (HTTP 404)" in status and "WEBAPP_API_URL" in status

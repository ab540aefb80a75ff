"""The page in a real headless Chromium: `streamlit run` against a real serving API.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` package (its own browser
download is never used). Without them the tests skip, which CI (CTLOOP_FAIL_ON_SKIP=1) fails.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ctloop.config import CoreSettings
from harness import loopback
from harness.browser import launched_chromium
from harness.data import ARTIFACTS, copy_workspace, prod_rows
from harness.processes import LiveServer, StreamlitServer, api_and_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PREDICTED = ".st-key-prediction [data-testid='stMetricValue']"
# Armed just before a click on Predict: the time of that click and of the first moment the
# predicted class is in the page, both from the page's own clock.
ARM_PREDICT_TIMER = """() => {
  const timing = (window.__predictTiming = {click: null, answer: null});
  const observer = new MutationObserver(() => {
    const value = document.querySelector(".st-key-prediction [data-testid='stMetricValue']");
    if (timing.click !== null && value && value.textContent.trim()) {
      timing.answer = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, characterData: true});
  document.addEventListener("click", () => { timing.click ??= performance.now(); },
                            {capture: true, once: true});
}"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with launched_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def stack(
    built_full: CoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CoreSettings, LiveServer, StreamlitServer]]:
    """A real serving API and the page served by `streamlit run`, both on free loopback ports."""
    root = tmp_path_factory.mktemp("webapp-browser")
    settings = copy_workspace(built_full, root)
    with api_and_page(settings, root, RETRAIN_EVERY="1000") as (api, web):
        yield settings, api, web


@pytest.fixture
def page(chromium: Browser, stack) -> Iterator[Page]:
    _, _, web = stack
    context = chromium.new_context(viewport={"width": 1280, "height": 1800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(web.url)
        page.get_by_text("Upload an image, pick a sample or draw a digit to begin").wait_for(
            timeout=60_000
        )
        yield page
    finally:
        context.close()


def upload(page: Page, path: Path) -> None:
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(path)
    page.get_by_text(f"In use: uploaded file {path.name}").wait_for()
    page.locator(".st-key-prediction").wait_for(state="detached")


def predict(page: Page) -> tuple[str, float]:
    """Click Predict; return the class the page shows and the milliseconds it took to show."""
    page.evaluate(ARM_PREDICT_TIMER)
    page.get_by_role("button", name="Predict").click()
    page.locator(PREDICTED).first.wait_for()
    page.wait_for_function("() => window.__predictTiming.answer !== null")
    timing: dict[str, Any] = page.evaluate("() => window.__predictTiming")
    return page.locator(PREDICTED).first.inner_text().strip(), timing["answer"] - timing["click"]


def choose_true_class(page: Page, label: str) -> None:
    from playwright.sync_api import expect

    chooser = page.locator(".st-key-feedback").get_by_role("combobox", name="The true class")
    chooser.click()
    page.get_by_role("option", name=label, exact=True).click()
    expect(chooser).to_have_value(label)


def test_upload_predict_and_send_feedback_in_a_real_browser(
    page: Page, stack, samples, tmp_path
) -> None:
    settings, _, _ = stack
    rows_before = len(prod_rows(settings))
    three = tmp_path / "digit-3.png"
    three.write_bytes(samples["3"])

    upload(page, three)
    label, first_ms = predict(page)
    assert label == "3"
    page.locator(".st-key-prediction [data-testid='stVegaLiteChart']").wait_for()
    page.get_by_text("Answered by model v0001").wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "webapp-prediction.png", full_page=True)

    choose_true_class(page, "3")
    page.get_by_role("button", name="Send feedback").click()
    page.get_by_text("Thank you: recorded").wait_for()
    rows = prod_rows(settings)
    assert len(rows) == rows_before + 1
    assert rows[-1]["target"] == "3" and rows[-1]["client_prediction"] == "3"

    # More predictions, to quote a median: each a new upload, then a click on Predict.
    timings = [first_ms]
    for digit in ("0", "1", "2", "4", "5", "6"):
        path = tmp_path / f"digit-{digit}.png"
        path.write_bytes(samples[digit])
        upload(page, path)
        label, elapsed = predict(page)
        assert label == digit
        timings.append(elapsed)
    report = {
        "measured": "click on Predict -> predicted class in the page (performance.now, in page)",
        "runs_ms": [round(ms, 1) for ms in timings],
        "median_ms": round(statistics.median(timings), 1),
    }
    (ARTIFACTS / "webapp-predict-timing.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nPredict to answer in the browser: {report}")


def test_a_corrected_class_is_recorded_once_even_when_clicked_twice(
    page: Page, stack, built_full: CoreSettings
) -> None:
    settings, api, _ = stack
    wrong = None
    for path in sorted(built_full.samples_dir.glob("*/*.png")):
        answer = loopback.post(f"{api.url}/predict", files={"file": (path.name, path.read_bytes())})
        if answer.json()["label"] != path.parent.name:
            wrong, shown = path, answer.json()["label"]
            break
    assert wrong is not None, "the digits model gets a few unseen samples wrong; none found"
    truth = wrong.parent.name
    rows_before = len(prod_rows(settings))

    upload(page, wrong)
    label, _ = predict(page)
    assert label == shown != truth
    choose_true_class(page, truth)
    # Two clicks 80 ms apart, as a hurried person makes them: the second arrives while the first
    # is being handled (without the page's guards, this sends two rows).
    page.get_by_role("button", name="Send feedback").evaluate(
        "button => { button.click(); setTimeout(() => button.click(), 80); }"
    )
    page.get_by_text("Thank you: recorded").wait_for()
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name="Send feedback")).to_be_disabled()
    page.wait_for_timeout(1500)  # room for a second request to land, were one sent
    rows = prod_rows(settings)
    assert len(rows) == rows_before + 1, "one feedback, one row"
    assert rows[-1]["target"] == truth
    assert rows[-1]["client_prediction"] == shown == rows[-1]["prediction"]


def test_a_digit_drawn_on_the_canvas_is_predicted(page: Page, stack) -> None:
    settings, _, _ = stack
    rows_before = len(prod_rows(settings))
    page.get_by_role("tab", name="Draw a digit").click()
    canvas = page.locator("canvas.upper-canvas")
    box = canvas.bounding_box()
    assert box is not None
    x, y = box["x"], box["y"]
    page.mouse.move(x + 70, y + 60)  # a 7: a bar, then a long diagonal
    page.mouse.down()
    for step in range(20):
        page.mouse.move(x + 70 + 7 * step, y + 60)
    for step in range(25):
        page.mouse.move(x + 210 - 4 * step, y + 60 + 8 * step)
    page.mouse.up()
    page.get_by_text("In use: your drawing").wait_for()

    label, elapsed = predict(page)
    print(f"\nThe drawn 7 was read as {label} in {elapsed:.0f} ms")
    assert label == "7"
    page.get_by_text("Answered by model v0001").wait_for()
    assert len(prod_rows(settings)) == rows_before, "predicting writes nothing"

    canvas.hover()
    page.get_by_role("button", name="Reset canvas & history").click()
    page.get_by_text("Upload an image, pick a sample or draw a digit to begin").wait_for()


def test_a_sample_picked_in_the_gallery_is_predicted(page: Page, stack) -> None:
    """The gallery's tab: a class, its thumbnails, a click that makes one the image in use."""
    settings, api, _ = stack
    page.get_by_role("tab", name="Pick a sample").click()
    page.get_by_role("button", name="Use this one").first.click()
    listing = loopback.get(f"{api.url}/samples", params={"per_class": 4}).json()
    first = listing["classes"][0]["files"][0]
    page.get_by_text(f"In use: sample {first['name']} of class 0").wait_for()
    data = (settings.samples_dir / "0" / first["name"]).read_bytes()
    direct = loopback.post(f"{api.url}/predict", files={"file": (first["name"], data)}).json()
    label, _ = predict(page)
    assert label == direct["label"]


def draw(page: Page, strokes: list[list[tuple[int, int]]]) -> None:
    """Draw strokes (canvas pixels) with the mouse on the page's 280 x 280 canvas."""
    box = page.locator("canvas.upper-canvas").bounding_box()
    assert box is not None
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()


def settle(page: Page) -> None:
    """Let the canvas send its last stroke and the page's run finish: a digit of several strokes
    reruns the page after each, and a Predict clicked between two of them reads a partial drawing
    whose answer the next rerun (a new image) no longer shows."""
    page.wait_for_timeout(500)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()


def test_drawn_digits_are_read_right_and_the_page_shows_what_the_model_saw(
    page: Page, stack
) -> None:
    """The first digit of each class of the drawn set (scripts/drawn), drawn with the
    mouse through the page's own canvas (its pen is 22 px): the page shows the class, the
    8 x 8 grid the model saw and the three most likely classes. Measured: see the floor."""
    from drawn import load_set

    chosen = load_set()[:10]  # the set is interleaved: 0, 1, ..., 9, 0, 1, ...
    page.get_by_role("tab", name="Draw a digit").click()
    read = []
    for digit in chosen:
        draw(page, digit.strokes)
        page.get_by_text("In use: your drawing").wait_for()
        settle(page)
        shown, _ = predict(page)
        read.append((digit.label, shown))
        page.locator(".st-key-prediction").get_by_text("What the model saw").wait_for()
        page.locator(".st-key-top3 li").nth(2).wait_for()  # Streamlit renders it after the title
        items = page.locator(".st-key-top3 li").all_inner_texts()
        assert len(items) == 3 and items[0].startswith(f"{shown}: "), items
        page.locator("canvas.upper-canvas").hover()
        page.get_by_role("button", name="Reset canvas & history").click()
        page.get_by_text("Upload an image, pick a sample or draw a digit to begin").wait_for()
    right = sum(label == shown for label, shown in read)
    print(f"\nDrawn through the page: {right}/{len(read)} read right: {read}")
    assert right >= 8, read  # measured 9 of 10 (docs/studies/drawn-digits.md)

"""The page of a model of sounds in a real headless Chromium whose microphone hears a WAV file
(harness.browser.fake_microphone_args): record through st.audio_input, predict, send feedback.

Needs Debian's `chromium`, the `playwright` package and espeak-ng; without them the tests skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ctloop.config import CoreSettings
from harness.browser import fake_microphone_args, launched_chromium
from harness.data import ARTIFACTS, copy_workspace, prod_rows
from harness.processes import LiveServer, StreamlitServer, api_and_page
from tests.webapp.spoken import spoken_wav

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PREDICTED = ".st-key-prediction [data-testid='stMetricValue']"
BEGIN = "Upload a sound, pick a sample or record one to begin"
SPOKEN = 3
# The microphone's sound: the word, with silence before it and after it, longer than the
# recording (the fake microphone plays the file once, from when the page opens it).
SILENCE = (0.3, 3.0)


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The WAV the fake microphone hears: "three", at 48 kHz (a microphone's rate)."""
    pytest.importorskip("soundfile")
    wav = tmp_path_factory.mktemp("microphone") / "three.wav"
    wav.write_bytes(spoken_wav(SPOKEN, 48_000, silence=SILENCE))
    return wav


@pytest.fixture(scope="module")
def chromium(microphone: Path) -> Iterator[Browser]:
    with launched_chromium(*fake_microphone_args(microphone)) as browser:
        yield browser


@pytest.fixture(scope="module")
def stack(
    built_audio: CoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CoreSettings, LiveServer, StreamlitServer]]:
    """A real serving API of the spoken-digit model and the page served by `streamlit run`."""
    root = tmp_path_factory.mktemp("webapp-sound-browser")
    settings = copy_workspace(built_audio, root)
    with api_and_page(settings, root, RETRAIN_EVERY="1000") as (api, web):
        yield settings, api, web


@pytest.fixture
def page(chromium: Browser, stack) -> Iterator[Page]:
    _, _, web = stack
    # http://127.0.0.1 is a secure context: the page may ask for the microphone.
    context = chromium.new_context(
        viewport={"width": 1280, "height": 1800}, permissions=["microphone"]
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(web.url)
        page.get_by_text(BEGIN).wait_for(timeout=60_000)
        yield page
    finally:
        context.close()


def test_a_recording_from_the_microphone_is_predicted_and_its_feedback_recorded(
    page: Page, stack
) -> None:
    from playwright.sync_api import expect

    settings, _, _ = stack
    rows_before = len(prod_rows(settings))
    assert [tab.strip() for tab in page.get_by_role("tab").all_inner_texts()] == [
        "Upload a sound",
        "Pick a sample",
        "Record",
    ]
    assert page.locator("canvas.upper-canvas").count() == 0, "no drawing canvas"

    page.get_by_role("tab", name="Record").click()
    page.get_by_role("button", name="Record", exact=True).click()
    page.get_by_role("button", name="Stop recording").wait_for()
    page.wait_for_timeout(2_000)  # the silence before, the word, some silence after
    page.get_by_role("button", name="Stop recording").click()
    page.get_by_text("In use: your recording").wait_for()
    player = page.locator(".st-key-playback [data-testid='stAudio']")  # what will be sent
    expect(player).to_have_count(1)
    source = player.evaluate("audio => audio.currentSrc || audio.src")
    recording = page.request.get(source).body()
    assert recording[:4] == b"RIFF" and recording[8:12] == b"WAVE"
    rate, seconds = int.from_bytes(recording[24:28], "little"), len(recording) / 32_000
    assert rate == 16_000, "recorded at the rate the model hears"
    assert 1.5 < seconds < 4, f"{seconds:.1f} s recorded"

    page.get_by_role("button", name="Predict").click()
    page.locator(PREDICTED).first.wait_for()
    label = page.locator(PREDICTED).first.inner_text().strip()
    print(f"\nThe recorded 'three' was heard as {label}")
    assert label == str(SPOKEN)
    seen = page.locator(".st-key-prediction [data-testid='stImage']")
    expect(seen).to_contain_text("time →")
    expect(seen).to_contain_text("pitch ↑")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "webapp-sound-prediction.png", full_page=True)

    chooser = page.locator(".st-key-feedback").get_by_role("combobox", name="The true class")
    expect(chooser).to_have_value(str(SPOKEN))  # the true class defaults to the prediction
    page.get_by_role("button", name="Send feedback").click()
    page.get_by_text("Thank you: recorded").wait_for()
    page.get_by_text(f"Rows collected: {rows_before + 1}").wait_for()
    rows = prod_rows(settings)
    assert len(rows) == rows_before + 1
    assert rows[-1]["target"] == rows[-1]["client_prediction"] == str(SPOKEN)
    assert rows[-1]["prediction"] == label, "the API heard the recording as the page showed"

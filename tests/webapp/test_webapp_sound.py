"""The page for a model of sounds (spoken digits, `built_audio`), under AppTest against a real
API: upload, record or pick a sound, hear what will be sent, predict it, see the spectrogram the
model saw, send its true class. Nothing of the picture page (canvas, picture words) shows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import streamlit
from PIL import Image
from streamlit.testing.v1 import AppTest

from ctloop.config import CoreSettings
from harness import loopback
from harness.data import copy_workspace, prod_rows
from harness.processes import LiveServer
from serving_client.contract import ModelInfo, Preprocessing
from tests.webapp.models import model_info
from tests.webapp.spoken import recoded, spoken_wav
from webapp import sounds
from webapp.subject import Subject

pytest.importorskip("soundfile")

DIGITS = [str(digit) for digit in range(10)]
NOT_A_SOUND = b"these are my notes, not a recording\n" * 4


@pytest.fixture(scope="module")
def sound_api(
    built_audio: CoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A real serving API on a copy of the spoken-digit model; no retrain comes due."""
    root = tmp_path_factory.mktemp("webapp-sound-api")
    settings = copy_workspace(built_audio, root)
    with LiveServer(settings, root / "server.log", RETRAIN_EVERY="1000") as server:
        yield server


@dataclass
class Seen:
    grid: Any
    picture: Image.Image


@pytest.fixture
def spectrograms(monkeypatch: pytest.MonkeyPatch) -> list[Seen]:
    """Every spectrogram the page draws (it imports the function from webapp.sounds each run)."""
    calls: list[Seen] = []
    real = sounds.spectrogram_picture

    def spy(grid, cell=sounds.CELL):
        picture = real(grid, cell)
        calls.append(Seen(grid, picture))
        return picture

    monkeypatch.setattr(sounds, "spectrogram_picture", spy)
    return calls


@pytest.fixture
def played(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, str]]:
    """The bytes and type of every sound the page plays (st.audio), in order."""
    calls: list[tuple[bytes, str]] = []
    real = streamlit.audio

    def spy(data, *args, **kwargs):
        calls.append((data, kwargs.get("format", args[0] if args else "audio/wav")))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "audio", spy)
    return calls


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.markdown, *at.caption, *at.info, *at.subheader)]
    parts += [tab.label for tab in at.tabs]
    parts += [widget.proto.label for widget in (*at.get("file_uploader"), *at.audio_input)]
    return "\n".join(str(part) for part in parts)


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def in_use(at: AppTest) -> list[str]:
    return [c.value for c in at.main.caption if c.value.startswith("In use: ")]


def assert_fine(at: AppTest) -> None:
    assert not at.exception, [exception.value for exception in at.exception]
    assert not at.main.error, [error.value for error in at.main.error]


def test_a_sound_model_offers_upload_samples_and_recording_and_no_drawing(sound_api, page) -> None:
    at = page(sound_api.url).run()
    assert_fine(at)
    assert [tab.label for tab in at.tabs] == ["Upload a sound", "Pick a sample", "Record"]
    assert [info.value for info in at.info] == [
        "Upload a sound, pick a sample or record one to begin."
    ]
    assert [header.value for header in at.subheader] == ["1. Your sound"]
    uploader = at.file_uploader(key="upload").proto
    assert uploader.label == "A WAV, FLAC, OGG or MP3 sound"
    assert set(uploader.type) == {".wav", ".flac", ".ogg", ".oga", ".mp3"}
    recorder = at.audio_input(key="recording")
    assert recorder.sample_rate == 16000, "recorded at the rate the model hears"
    assert not at.get("bidi_component"), "no drawing canvas (the one component of the page)"
    words = texts(at).lower()
    for picture_word in ("image", "picture", "draw", "handwritten"):
        assert picture_word not in words, (picture_word, words)
    assert "it hears 1 s of it" in words and "its classes: 0, 1, 2" in words


def test_a_recording_is_played_back_predicted_shown_and_its_feedback_recorded(
    sound_api, page, played, spectrograms
) -> None:
    three = spoken_wav(3)
    direct = loopback.post(
        f"{sound_api.url}/predict?grid=true", files={"file": ("3.wav", three, "audio/wav")}
    ).json()
    assert direct["label"] == "3"
    rows_before = len(prod_rows(sound_api.settings))

    at = page(sound_api.url).run()
    at.audio_input(key="recording").set_value(("recording.wav", three, "audio/wav")).run()
    assert_fine(at)
    assert in_use(at) == ["In use: your recording. Listen to what will be sent:"]
    assert played[-1] == (three, "audio/wav"), "the player plays the very bytes to be sent"
    assert "Predicted class" not in metrics(at)

    at.button(key="predict").click().run()
    assert_fine(at)
    assert metrics(at)["Predicted class"] == "3"
    assert metrics(at)["Confidence"] == f"{direct['confidence']:.1%}"
    (top,) = [text.value for text in at.markdown if text.value.startswith("1. ")]
    assert top.startswith("1. **3**: ")

    # The spectrogram the model saw: the API's grid, low pitches at the bottom, louder lighter.
    (caption,) = [
        image.proto.imgs[0].caption
        for image in at.image
        if image.proto.imgs[0].caption.startswith("What the model saw")
    ]
    assert "time →" in caption and "pitch ↑" in caption and "low at the bottom" in caption
    grid = np.array(spectrograms[-1].grid)
    assert grid.shape == (32, 32)
    assert np.abs(grid - np.array(direct["grid"])).max() <= 1e-4
    picture = spectrograms[-1].picture
    assert picture.size == (32 * sounds.CELL, 32 * sounds.CELL)

    def shown(band: int, step: int) -> tuple[int, ...]:
        """The colour of a cell, by mel band (0: lowest) and time step."""
        row = 31 - band  # the lowest band is the bottom row
        return picture.getpixel((step * sounds.CELL + 3, row * sounds.CELL + 3))

    loudest = np.unravel_index(grid.argmax(), grid.shape)
    quietest = np.unravel_index(grid.argmin(), grid.shape)
    assert grid[loudest] - grid[quietest] > 0.5, "a sound with contrast, or this proves nothing"
    assert sum(shown(*loudest)) > sum(shown(*quietest)) + 300
    assert shown(*quietest) == sounds.RAMP[0] and grid[quietest] == 0

    # Feedback, as for pictures: the true class defaults to the prediction, sent once.
    (chooser,) = [box for box in at.selectbox if box.label == "The true class"]
    assert chooser.options == DIGITS and chooser.value == "3"
    at.button(key="send_feedback").click().run()
    assert_fine(at)
    (thanks,) = [text.value for text in at.main.success if text.value.startswith("Thank you")]
    assert f"Rows collected: **{rows_before + 1}**" in thanks
    assert any("Give another sound" in caption.value for caption in at.caption)
    rows = prod_rows(sound_api.settings)
    assert len(rows) == rows_before + 1
    assert rows[-1]["target"] == "3" and rows[-1]["prediction"] == "3"
    assert at.button(key="send_feedback").disabled

    at.audio_input(key="recording").clear().run()  # the recording deleted: it is forgotten
    assert_fine(at)
    assert [info.value for info in at.info] == [
        "Upload a sound, pick a sample or record one to begin."
    ]


@pytest.mark.parametrize(("fmt", "media_type"), [("FLAC", "audio/flac"), ("OGG", "audio/ogg")])
def test_an_uploaded_sound_is_played_as_it_is_and_predicted(
    sound_api, page, played, fmt: str, media_type: str
) -> None:
    seven, name = recoded(spoken_wav(7), fmt), f"seven.{fmt.lower()}"
    at = page(sound_api.url).run()
    at.file_uploader(key="upload").set_value((name, seven, media_type)).run()
    assert_fine(at)
    assert in_use(at) == [f"In use: uploaded file {name}. Listen to what will be sent:"]
    assert played[-1] == (seven, media_type)
    at.button(key="predict").click().run()
    assert_fine(at)
    assert metrics(at)["Predicted class"] == "7"


def test_a_file_that_is_not_a_sound_is_refused_in_sound_words(sound_api, page) -> None:
    at = page(sound_api.url).run()
    at.file_uploader(key="upload").set_value(("notes.wav", NOT_A_SOUND, "audio/wav")).run()
    assert not at.exception
    (warning,) = [warning.value for warning in at.warning]
    assert "does not look like a sound" in warning
    at.button(key="predict").click().run()
    assert not at.exception
    (problem,) = [error.value for error in at.main.error]
    assert problem.startswith("The prediction service could not use this sound")
    assert problem.endswith("Upload another WAV, FLAC, OGG or MP3 sound, or record one.")
    assert "Predicted class" not in metrics(at)


def test_a_sample_sound_is_played_in_the_gallery_and_predicted(sound_api, page, played) -> None:
    listing = loopback.get(f"{sound_api.url}/samples", params={"per_class": 4}).json()
    fours = next(entry for entry in listing["classes"] if entry["label"] == "4")["files"]
    assert fours and all(file["media_type"] == "audio/wav" for file in fours)
    at = page(sound_api.url).run()
    at.selectbox(key="sample_class").select("4").run()
    assert_fine(at)
    first = fours[0]
    data = loopback.get(f"{sound_api.url}{first['url']}").content
    assert (data, "audio/wav") in played, "each sample can be heard in the gallery"
    assert [c.value for c in at.caption if c.value.endswith(".wav")] == [f["name"] for f in fours]

    at.button(key=f"sample:4/{first['name']}").click().run()
    assert_fine(at)
    assert in_use(at) == [
        f"In use: sample {first['name']} of class 4. Listen to what will be sent:"
    ]
    at.button(key="predict").click().run()
    direct = loopback.post(f"{sound_api.url}/predict", files={"file": (first["name"], data)})
    assert metrics(at)["Predicted class"] == direct.json()["label"]


# -- The pieces ----------------------------------------------------------------------------------


def sound_model() -> ModelInfo:
    return model_info(
        DIGITS,
        "spoken",
        Preprocessing(
            medium="audio",
            framing="log-mel",
            size=32,
            columns=32,
            channels=1,
            sample_rate=16000,
            seconds=1.0,
        ),
    )


def test_the_words_of_a_sound_model() -> None:
    spoken = Subject.of(sound_model())
    assert spoken.audio and not spoken.drawing and not spoken.digits
    assert (spoken.sample_rate, spoken.seconds) == (16000, 1.0)
    assert spoken.title == "Spoken classifier" and spoken.noun == "sound"
    assert spoken.begin(False) == "Upload a sound or record one to begin."
    assert "digit" not in spoken.intro
    assert not Subject().audio and Subject().noun == "image", "no API reached yet: pictures"


def test_recording_rates_keep_what_the_model_hears() -> None:
    assert sounds.recording_rate(16000) == 16000
    assert sounds.recording_rate(12000) == 16000
    assert sounds.recording_rate(8000) == 8000
    assert sounds.recording_rate(96000) is None, "above every rate offered: the browser's own"
    assert sounds.recording_rate(None) is None


def test_sounds_are_told_from_other_files_by_their_first_bytes() -> None:
    wav = spoken_wav(1)
    for data in (wav, recoded(wav, "FLAC"), recoded(wav, "OGG"), b"ID3\x04rest", b"\xff\xfbrest"):
        assert sounds.looks_like_sound(data), data[:8]
    for data in (NOT_A_SOUND, b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"", b"\xff"):
        assert not sounds.looks_like_sound(data), data[:8]


def test_the_spectrogram_puts_low_pitches_at_the_bottom_and_loud_light() -> None:
    grid = [[0.0, 1.0], [0.5, 0.0]]  # row 0 is the lowest band
    picture = sounds.spectrogram_picture(grid, cell=1)
    assert picture.size == (2, 2)
    assert picture.getpixel((1, 1)) == sounds.RAMP[-1], "lowest band, second step: the loudest"
    assert picture.getpixel((0, 1)) == sounds.RAMP[0]
    assert picture.getpixel((0, 0)) == sounds.RAMP[2], "half as loud: the ramp's middle"

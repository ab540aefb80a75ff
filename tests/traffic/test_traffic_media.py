"""The simulator's two media: it reads the files the stack's dataset reads, a folder of one medium
at a time, and plays the drifts of that medium only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from ctloop import media as stack_media
from traffic.media import AUDIO, DRIFTS, IMAGE, drift_for, drifted, medium_of_file
from traffic.scenario import TrafficError, load_images, load_samples
from traffic.sound_drift import DRIFTS as SOUND_DRIFTS


def a_sound(seconds: float = 0.3, rate: int = 16_000, frequency: float = 440.0) -> bytes:
    time = np.arange(round(seconds * rate)) / rate
    out = io.BytesIO()
    soundfile.write(out, 0.3 * np.sin(2 * np.pi * frequency * time), rate, format="WAV")
    return out.getvalue()


def a_picture() -> bytes:
    out = io.BytesIO()
    Image.new("L", (12, 12), 200).save(out, format="PNG")
    return out.getvalue()


def test_the_simulator_reads_the_files_the_dataset_reads() -> None:
    from traffic.media import SUFFIXES

    stack = {medium: tuple(known) for medium, known in stack_media.SUFFIXES.items()}
    assert stack == SUFFIXES
    for name in ("a.WAV", "b.flac", "c.oga", "d.mp3", "e.PNG", "f.webp", "g.txt", "h", "i.wav.gz"):
        assert medium_of_file(name) == stack_media.medium_of_file(name), name


def test_each_medium_has_its_own_drifts_and_a_default() -> None:
    assert DRIFTS[AUDIO] == tuple(SOUND_DRIFTS)
    assert "slant" in DRIFTS[IMAGE] and "clean" not in DRIFTS[IMAGE] + DRIFTS[AUDIO]
    assert drift_for(IMAGE, None) == "slant" and drift_for(AUDIO, None) == "background"
    assert drift_for(AUDIO, "pitch") == "pitch" and drift_for(IMAGE, "blur") == "blur"


@pytest.mark.parametrize(
    ("medium", "name", "listed"),
    [
        (AUDIO, "slant", "sounds; one of background, speed, pitch, quiet, loud, microphone"),
        (IMAGE, "speed", "pictures; one of thick, thin, rotate, slant, shift, blur, noise,"),
        (AUDIO, "clean", "sounds; one of background"),
    ],
)
def test_a_drift_of_another_medium_is_refused_with_the_valid_ones(
    medium: str, name: str, listed: str
) -> None:
    with pytest.raises(ValueError, match=f"'{name}' is no drift of {listed}"):
        drift_for(medium, name)


def test_a_sound_is_sent_as_its_file_or_as_a_drifted_wav() -> None:
    sound = a_sound()
    assert drifted(AUDIO, "clean", sound, np.random.default_rng(0)) == sound
    noisy = drifted(AUDIO, "background", sound, np.random.default_rng(0))
    assert noisy != sound and soundfile.info(io.BytesIO(noisy)).format == "WAV"
    with pytest.raises(TypeError, match="a picture is a decoded image"):
        drifted(IMAGE, "slant", sound, np.random.default_rng(0))
    with pytest.raises(TypeError, match="a sound is the bytes of its file"):
        drifted(AUDIO, "speed", Image.new("L", (8, 8)), np.random.default_rng(0))


def write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_a_folder_of_sounds_is_read_as_sounds(tmp_path: Path) -> None:
    low, high = a_sound(frequency=220.0), a_sound(frequency=880.0)
    files = {"low/a.wav": low, "low/b.FLAC": high, "high/c.mp3": high, "high/.hidden.wav": low,
             "high/notes.txt": b"x", "stray.wav": low}  # fmt: skip
    write(tmp_path, files)
    samples = load_samples(tmp_path)
    assert samples.medium == AUDIO
    assert samples.labels.tolist() == ["high", "low", "low"]
    assert samples.items.tolist() == [high, low, high]  # the files' bytes, as they are
    with pytest.raises(TrafficError, match="holds sounds, not pictures"):
        load_images(tmp_path)


def test_a_folder_of_pictures_is_read_as_pictures(tmp_path: Path) -> None:
    write(tmp_path, {"a/1.png": a_picture(), "b/2.png": a_picture(), "b/3.txt": b"x"})
    samples = load_samples(tmp_path)
    assert samples.medium == IMAGE and samples.labels.tolist() == ["a", "b"]
    pictures, labels = load_images(tmp_path)
    assert [p.size for p in pictures] == [(12, 12)] * 2 and labels.tolist() == ["a", "b"]


def test_a_folder_of_both_media_or_of_neither_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"a/1.png": a_picture(), "a/2.wav": a_sound(), "b/3.wav": a_sound()})
    with pytest.raises(TrafficError, match="1 pictures and 2 sounds: a dataset is of one medium"):
        load_samples(tmp_path)
    with pytest.raises(TrafficError, match="no pictures or sounds under"):
        load_samples(tmp_path / "missing")
    with pytest.raises(TrafficError, match="no pictures or sounds under"):
        load_samples(write(tmp_path / "text", {"a/1.txt": b"x"}))

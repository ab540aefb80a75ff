"""ctloop.audio: sound files -> the log-mel grid, every format and rate alike, bad input refused;
harness.speech: the spoken-digit dataset, byte-reproducible and good enough to learn from."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from ctloop.audio import (
    AudioSpec,
    AudioTooLongError,
    CorruptAudioError,
    EmptyAudioError,
    NotAudioError,
    SilentAudioError,
    decode_audio,
    mel_filters,
    preprocess_audio,
    resampling_ratio,
)

soundfile = pytest.importorskip("soundfile")
needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed: apt-get install espeak-ng (.ci/run does it)",
)


def encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def chirp(rate: int, seconds: float = 0.6, channels: int = 1) -> np.ndarray:
    """A rising tone with silence around it."""
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * (300 + 1500 * t) * t) * np.hanning(len(t))
    padded = np.concatenate([np.zeros(rate // 4), tone, np.zeros(rate // 3)])
    return np.repeat(padded[:, None], channels, axis=1) if channels > 1 else padded


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels"),
    [
        ("WAV", "PCM_16", 16_000, 1),
        ("WAV", "FLOAT", 44_100, 2),
        ("FLAC", None, 8_000, 1),
        ("OGG", "VORBIS", 22_050, 2),
        ("MP3", "MPEG_LAYER_III", 48_000, 1),
    ],
)
def test_every_format_rate_and_channel_count_gives_the_same_grid(fmt, subtype, rate, channels):
    reference = preprocess_audio(encoded(chirp(16_000), 16_000, "WAV", "PCM_16"))
    grid = preprocess_audio(encoded(chirp(rate, channels=channels), rate, fmt, subtype))
    spec = AudioSpec()
    assert grid.shape == (spec.n_mels * spec.frames,) and grid.dtype == np.float32
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    # The same sound, however it was stored: close cell by cell (lossy codecs and 8 kHz lose
    # the top bands, which the mean difference forgives).
    assert np.abs(grid - reference).mean() < 0.08, np.abs(grid - reference).mean()


def test_silence_around_a_sound_and_its_loudness_do_not_matter() -> None:
    base = chirp(16_000)
    quiet_and_late = np.concatenate([np.zeros(8_000), 0.05 * base])
    a = preprocess_audio(encoded(base, 16_000, "WAV", "FLOAT"))
    b = preprocess_audio(encoded(quiet_and_late, 16_000, "WAV", "FLOAT"))
    assert np.abs(a - b).mean() < 0.02


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyAudioError),
        (b"this is not a sound file at all" * 10, NotAudioError),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), NotAudioError),
    ],
)
def test_what_is_not_a_sound_is_refused_with_its_reason(data: bytes, error) -> None:
    with pytest.raises(error):
        preprocess_audio(data)


def test_a_cut_file_is_refused_or_read_as_far_as_it_goes() -> None:
    whole = encoded(chirp(16_000), 16_000, "FLAC")
    try:
        grid = preprocess_audio(whole[: len(whole) // 3])
    except (CorruptAudioError, NotAudioError, SilentAudioError):
        return
    assert grid.shape == (AudioSpec().n_pixels,)


def test_silence_and_too_long_a_sound_are_refused() -> None:
    with pytest.raises(SilentAudioError):
        preprocess_audio(encoded(np.zeros(16_000), 16_000, "WAV", "PCM_16"))
    long = encoded(np.zeros(8_000 * 31, dtype=np.int16), 8_000, "WAV", "PCM_16")
    with pytest.raises(AudioTooLongError, match=r"31\.0 s"):
        decode_audio(long, max_seconds=30)


@pytest.mark.parametrize(("rate", "accepted"), [(3_999, False), (4_000, True), (192_001, False)])
def test_sample_rates_are_bounded(rate: int, accepted: bool) -> None:
    data = encoded(chirp(rate, 0.3), rate, "WAV")
    if accepted:
        assert preprocess_audio(data).shape == (AudioSpec().n_pixels,)
    else:
        with pytest.raises(CorruptAudioError, match="rates from 4,000 to 192,000 Hz"):
            preprocess_audio(data)


@pytest.mark.parametrize("rate", [44_100, 22_050, 47_999, 96_001, 8_001, 11_025])
def test_an_odd_rate_is_resampled_through_a_short_filter(rate: int) -> None:
    """A rate prime to 16 kHz would need a filter as long as the rate (260 ms a second of sound
    at 47,999 Hz); the ratio's terms are bounded and the pitch barely moves."""
    ratio = resampling_ratio(rate, 16_000)
    assert ratio.numerator <= 1000 and ratio.denominator <= 1000
    assert abs(float(ratio) * rate / 16_000 - 1) < 0.002
    same = preprocess_audio(encoded(chirp(rate), rate, "WAV"))
    assert np.abs(same - preprocess_audio(encoded(chirp(16_000), 16_000, "WAV"))).mean() < 0.08


def test_the_mel_filters_are_triangles_that_cover_the_band() -> None:
    filters = mel_filters(16_000, 512, 32)
    assert filters.shape == (32, 257) and filters.min() >= 0
    peaks = filters.argmax(axis=1)
    assert np.all(np.diff(peaks) > 0), "centres rise with the band"
    covered = filters[:, 1:-1].sum(axis=0) > 0
    assert covered.mean() > 0.95


@needs_espeak
def test_the_spoken_digits_are_byte_reproducible(tmp_path: Path) -> None:
    from harness.speech import write_spoken_digits

    for target in ("a", "b"):
        write_spoken_digits(tmp_path / target, voices=("en+f2",), speeds=(160,), pitches=(50,))
    first = sorted((tmp_path / "a").rglob("*.wav"))
    assert len(first) == 20  # 10 digits, clean and noisy
    for path in first:
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


@needs_espeak
def test_spoken_digits_are_learnt_and_read_from_other_voices(tmp_path: Path) -> None:
    """The grids with a PCA and an RBF SVC (the stack's kind of model): held-out recordings of
    the training voices, and voices and speeds the training set never had."""
    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from harness.speech import HELD_OUT_SPEEDS, HELD_OUT_VOICES, write_spoken_digits

    write_spoken_digits(tmp_path / "train", noisy=False)
    write_spoken_digits(
        tmp_path / "other", voices=HELD_OUT_VOICES, speeds=HELD_OUT_SPEEDS, pitches=(50,),
        noisy=False,
    )  # fmt: skip

    def grids(root: Path) -> tuple[np.ndarray, np.ndarray]:
        files = sorted(root.glob("*/*.wav"))
        return (
            np.stack([preprocess_audio(f.read_bytes()) for f in files]),
            np.array([f.parent.name for f in files]),
        )

    x, y = grids(tmp_path / "train")
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    model = make_pipeline(PCA(32, random_state=0), StandardScaler(), SVC(C=10))
    model.fit(train_x, train_y)
    other_x, other_y = grids(tmp_path / "other")
    assert (model.predict(test_x) == test_y).mean() >= 0.95
    assert (model.predict(other_x) == other_y).mean() >= 0.85

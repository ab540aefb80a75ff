"""The named sound drifts: real WAVs, seeded, each doing what its name says (measured on a tone and
on noise), and heard as a change by the stack's preprocessing, but for the quieter one."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import soundfile
from scipy import signal

from ctloop.audio import preprocess_audio
from traffic.sound_drift import DRIFTS, drifted_wav

RATE = 16_000
SEEDS = range(6)


def wav(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def read(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float64")
    return samples, rate


def tone(frequency: float = 440.0, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    """A steady voiced-like sound: a fundamental and its second harmonic."""
    time = np.arange(round(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * frequency * time) + 0.1 * np.sin(4 * np.pi * frequency * time)


def white(seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    return 0.1 * np.random.default_rng(7).standard_normal(round(seconds * rate))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples))))


def db(ratio: float) -> float:
    return 10 * float(np.log10(ratio))


def dominant(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest spectral peak, to a tenth of a hertz (zero-padded FFT)."""
    size = 10 * rate
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), size))
    return float(np.fft.rfftfreq(size, 1 / rate)[spectrum.argmax()])


def band_power(samples: np.ndarray, rate: int, low: float, high: float) -> float:
    frequencies, density = signal.welch(samples, rate, nperseg=1024)
    return float(density[(frequencies >= low) & (frequencies < high)].sum())


TONE = wav(tone())


@pytest.mark.parametrize("name", sorted(DRIFTS))
def test_each_drift_gives_a_16_bit_wav_of_the_same_sound_and_is_seeded(name: str) -> None:
    first = drifted_wav(name, TONE, np.random.default_rng(5))
    assert first == drifted_wav(name, TONE, np.random.default_rng(5))
    assert first != drifted_wav(name, TONE, np.random.default_rng(6))
    info = soundfile.info(io.BytesIO(first))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", RATE, 1)
    if name == "speed":  # 25 to 40 % faster or slower: the duration changes with it
        assert 1.2 <= max(info.frames / RATE, RATE / info.frames) <= 1.45
    else:
        assert info.frames == RATE


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_other_formats_come_back_as_a_wav_and_channels_are_kept(fmt: str, subtype: str) -> None:
    stereo = np.stack([tone(), tone(330.0)], axis=1)
    out = drifted_wav("microphone", wav(stereo, fmt=fmt, subtype=subtype), np.random.default_rng(0))
    info = soundfile.info(io.BytesIO(out))
    assert (info.format, info.channels, info.samplerate) == ("WAV", 2, RATE)
    assert abs(info.frames - RATE) <= 2000  # an OGG decoder's padding, at most


def test_a_clean_sound_is_the_file_as_it_is() -> None:
    flac = wav(tone(), fmt="FLAC")
    assert drifted_wav("clean", flac, np.random.default_rng(0)) == flac


@pytest.mark.parametrize("seed", SEEDS)
def test_background_noise_is_pink_and_3_to_8_db_below_the_sound(seed: int) -> None:
    clean = tone()
    noisy, _ = read(drifted_wav("background", wav(clean), np.random.default_rng(seed)))
    added = noisy - clean
    assert 2.9 <= db(rms(clean) ** 2 / rms(added) ** 2) <= 8.1  # the signal-to-noise ratio
    # Pink: about as much power in each octave (white noise has 16 times more at 2-4 kHz).
    octave_ratio = band_power(added, RATE, 2000, 4000) / band_power(added, RATE, 125, 250)
    assert 0.5 <= octave_ratio <= 2.0


@pytest.mark.parametrize("seed", SEEDS)
def test_speed_changes_duration_and_pitch_together(seed: int) -> None:
    out, _ = read(drifted_wav("speed", TONE, np.random.default_rng(seed)))
    faster = RATE / len(out)  # > 1: shorter
    assert 1.25 - 0.01 <= max(faster, 1 / faster) <= 1.40 + 0.01
    assert dominant(out, RATE) == pytest.approx(440.0 * faster, rel=0.005)


def test_speed_goes_either_way() -> None:
    lengths = [len(read(drifted_wav("speed", TONE, np.random.default_rng(s)))[0]) for s in SEEDS]
    assert min(lengths) < RATE < max(lengths)


@pytest.mark.parametrize("seed", SEEDS)
def test_pitch_moves_every_frequency_3_to_5_semitones_and_keeps_the_duration(seed: int) -> None:
    out, _ = read(drifted_wav("pitch", TONE, np.random.default_rng(seed)))
    assert len(out) == RATE
    semitones = 12 * np.log2(dominant(out, RATE) / 440.0)
    assert 2.9 <= abs(semitones) <= 5.1
    # No gaps or swells between the grains: the level holds through the sound.
    levels = [rms(part) for part in np.array_split(out[800:-800], 20)]
    assert max(levels) / min(levels) < 1.3
    assert rms(out) == pytest.approx(rms(tone()), rel=0.2)


def test_pitch_goes_either_way() -> None:
    found = [dominant(read(drifted_wav("pitch", TONE, np.random.default_rng(s)))[0], RATE)
             for s in SEEDS]  # fmt: skip
    assert min(found) < 440.0 < max(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_quiet_takes_30_to_36_db_away(seed: int) -> None:
    out, _ = read(drifted_wav("quiet", TONE, np.random.default_rng(seed)))
    assert -36.1 <= db(rms(out) ** 2 / rms(tone()) ** 2) <= -29.9


@pytest.mark.parametrize("seed", SEEDS)
def test_loud_is_louder_and_clipped(seed: int) -> None:
    clean = tone()
    out, _ = read(drifted_wav("loud", wav(clean), np.random.default_rng(seed)))
    gain = db(rms(out) ** 2 / rms(clean) ** 2)
    assert 6.0 <= gain < 18.0  # louder, by less than the 12 to 18 dB asked: the peaks are cut
    assert np.abs(out).max() >= 0.999
    assert np.mean(np.abs(out) >= 0.999) > 0.2  # a fifth of the sound at full scale, at least
    crest = np.abs(out).max() / rms(out)
    assert crest < 0.9 * np.abs(clean).max() / rms(clean)  # flattened


@pytest.mark.parametrize("seed", SEEDS)
def test_microphone_keeps_the_speech_band_and_cuts_the_rest(seed: int) -> None:
    clean = white()
    out, _ = read(drifted_wav("microphone", wav(clean), np.random.default_rng(seed)))
    assert len(out) == len(clean)
    assert np.abs(out).max() == pytest.approx(np.abs(clean).max(), abs=1e-3)  # the peak kept

    def relative(samples: np.ndarray, low: float, high: float) -> float:
        """A band's power against the 1-2 kHz band's, in dB."""
        return db(band_power(samples, RATE, low, high) / band_power(samples, RATE, 1000, 2000))

    for low, high in ((50, 150), (6000, 7500)):  # below 300 Hz, above 3.5 kHz
        assert relative(out, low, high) < relative(clean, low, high) - 20
    assert abs(relative(out, 800, 1000) - relative(clean, 800, 1000)) < 3  # in band: as it was


@pytest.fixture(scope="module")
def spoken_three() -> bytes:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: apt-get install espeak-ng (.ci/run does it)")
    from harness.speech import speak

    return speak("three", "en", 160, 50)


@pytest.mark.parametrize("name", sorted(set(DRIFTS) - {"quiet"}))
def test_each_drift_changes_what_the_model_hears(name: str, spoken_three: bytes) -> None:
    clean = preprocess_audio(spoken_three)
    drifted = preprocess_audio(drifted_wav(name, spoken_three, np.random.default_rng(0)))
    assert np.abs(drifted - clean).max() > 0.2, name


def test_a_quieter_sound_is_undone_by_the_preprocessing(spoken_three: bytes) -> None:
    clean = preprocess_audio(spoken_three)
    quieter = preprocess_audio(drifted_wav("quiet", spoken_three, np.random.default_rng(0)))
    assert np.abs(quieter - clean).max() < 0.05  # the loudness is normalised; 16 bits still hold


def test_an_unknown_sound_drift_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown sound drift 'slant'; one of background, speed"):
        drifted_wav("slant", TONE, np.random.default_rng(0))

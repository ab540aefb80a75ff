"""Named, seeded drifts that real recordings show, applied to unseen sounds of the dataset.

Each takes a sound file's bytes (WAV, FLAC, OGG or MP3: what soundfile reads) and returns a
16-bit WAV at the sound's own sample rate, with its own channels, so the API's preprocessing hears
a real recording, not a vector. Filters, resampling and convolution are scipy.signal's; levels are
decibels relative to the sound itself, so a drift does the same to a quiet file and a loud one.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import soundfile
from scipy import signal

Drift = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """(samples, rate): float64 samples in [-1, 1], one column per channel."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return np.asarray(samples), int(rate)


def encode(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit WAV; what goes past full scale is clipped, as a converter would."""
    out = io.BytesIO()
    soundfile.write(out, np.clip(samples, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def power(samples: np.ndarray) -> float:
    """Mean power of a sound, over its whole length and every channel."""
    return float(np.mean(np.square(samples))) if samples.size else 0.0


def background(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy place (traffic, a fan, a crowd far off): pink noise 3 to 8 dB below the sound's
    power over the whole recording (signal-to-noise ratio 3 to 8 dB)."""
    snr_db = float(rng.uniform(3.0, 8.0))
    frames = len(samples)
    spectrum = np.fft.rfft(rng.standard_normal(samples.shape), axis=0)
    frequencies = np.fft.rfftfreq(frames)
    spectrum[0] = 0.0  # no offset
    spectrum[1:] /= np.sqrt(frequencies[1:, None])  # 1/f power: 3 dB less per octave
    pink = np.fft.irfft(spectrum, frames, axis=0)
    pink *= np.sqrt(power(samples) / (10 ** (snr_db / 10)) / max(power(pink), 1e-20))
    return samples + pink


def speed(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Another speaking rate, or a recording played at the wrong rate: 25 to 40 % faster or
    slower, either way. Resampled and played at the sound's own rate, so its duration and its
    pitch change together (faster is shorter and higher)."""
    factor = float(rng.uniform(1.25, 1.40)) ** float(rng.choice([-1.0, 1.0]))
    ratio = Fraction(factor).limit_denominator(40)  # new length = old length / ratio
    return signal.resample_poly(samples, ratio.denominator, ratio.numerator, axis=0)


def pitch(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A higher or deeper voice at the same pace: every frequency, formants included, moved 3
    to 5 semitones up or down, the duration kept to the sample.

    No phase vocoder: resampled (scipy.signal.resample_poly: pitch and duration change
    together), then brought back to its duration by WSOLA (`stretched`), which repeats or
    skips whole periods of the sound. A voice moved so sounds like a smaller or larger speaker
    (its formants move too), with a faint roughness where a period was repeated or skipped."""
    semitones = float(rng.uniform(3.0, 5.0)) * float(rng.choice([-1.0, 1.0]))
    ratio = Fraction(2 ** (semitones / 12)).limit_denominator(100)
    moved = signal.resample_poly(samples, ratio.denominator, ratio.numerator, axis=0)
    return stretched(moved, len(samples), rate)


def stretched(samples: np.ndarray, frames: int, rate: int) -> np.ndarray:
    """`samples` brought to `frames` frames at their own pitch: waveform-similarity overlap-add
    (WSOLA: Verhelst and Roelands, 1993). 40 ms Hann-windowed grains are laid at half overlap;
    each is read near its place in time, up to 10 ms off, where it best continues the grain
    before it (the highest cross-correlation), so that overlapping grains are in phase."""
    hop = max(8, round(0.02 * rate))
    grain, tolerance = 2 * hop, hop // 2
    window = signal.get_window("hann", grain)[:, None]  # periodic: sums to 1 at half overlap
    margin = 2 * grain
    source = np.pad(samples, ((margin, margin), (0, 0)))
    mono = source.mean(axis=1)
    pace = len(samples) / frames  # input frames per output frame
    out = np.zeros((frames + 2 * grain, samples.shape[1]))
    previous = None
    for number in range(frames // hop + 2):  # grain `number` centred on output frame number*hop
        start = margin + round(number * hop * pace) - hop
        if previous is not None:
            follows = mono[previous + hop : previous + hop + grain]
            near = mono[start - tolerance : start + tolerance + grain]
            start += int(np.argmax(signal.correlate(near, follows, mode="valid"))) - tolerance
        out[number * hop : number * hop + grain] += window * source[start : start + grain]
        previous = start
    return out[hop : hop + frames]


def quiet(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A far or muted microphone: 30 to 36 dB quieter, stored in 16 bits (the preprocessing's
    loudness normalisation undoes most of it: a control, as inverted colours are for pictures)."""
    return samples * 10 ** (-float(rng.uniform(30.0, 36.0)) / 20)


def loud(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """An overdriven input: 12 to 18 dB louder, clipped at full scale (the loud parts flattened,
    harmonics added)."""
    return np.clip(samples * 10 ** (float(rng.uniform(12.0, 18.0)) / 20), -1.0, 1.0)


def microphone(samples: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A cheap headset in a small room: a band-pass from 300-500 Hz to 2.5-3.5 kHz (Butterworth,
    24 dB per octave beyond each edge, about a telephone's band), after a little reverberation (an
    exponentially decaying noise response, 0.2 to 0.3 s to fall by 60 dB, a fifth of the direct
    sound's energy). The peak level is kept; the duration too (the room's tail after the end is
    cut)."""
    decay = float(rng.uniform(0.2, 0.3))  # seconds to fall by 60 dB
    tail_time = np.arange(1, round(decay * rate)) / rate
    tail = rng.standard_normal(len(tail_time)) * np.exp(-tail_time * np.log(1000) / decay)
    tail *= np.sqrt(0.2 / np.sum(np.square(tail)))
    response = np.concatenate([[1.0], tail])[:, None]
    roomy = signal.fftconvolve(samples, response, axes=0)[: len(samples)]
    low = float(rng.uniform(300.0, 500.0))
    high = min(float(rng.uniform(2500.0, 3500.0)), 0.45 * rate)
    bands = signal.butter(4, [low, high], btype="bandpass", fs=rate, output="sos")
    coloured = signal.sosfilt(bands, roomy, axis=0)
    peak = float(np.abs(coloured).max())
    return coloured * (float(np.abs(samples).max()) / peak if peak > 0 else 1.0)


DRIFTS: dict[str, Drift] = {
    "background": background,
    "speed": speed,
    "pitch": pitch,
    "quiet": quiet,
    "loud": loud,
    "microphone": microphone,
}


def drifted_wav(name: str, data: bytes, rng: np.random.Generator) -> bytes:
    """The WAV of the sound `data` through the named drift; "clean" is the file as it is."""
    if name == "clean":
        return data
    try:
        drift = DRIFTS[name]
    except KeyError as exc:
        raise ValueError(f"unknown sound drift {name!r}; one of {', '.join(DRIFTS)}") from exc
    samples, rate = decode(data)
    return encode(drift(samples, rate, rng), rate)

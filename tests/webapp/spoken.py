"""Spoken digits for the page's sound tests, as a microphone gives them: mono 16-bit WAV at the
rate asked (espeak-ng speaks at 22,050 Hz), with some silence around if asked."""

from __future__ import annotations

import io
from math import gcd

import numpy as np

from harness.speech import WORDS, speak

VOICE, SPEED, PITCH = "en", 160, 50  # a voice the spoken-digit model learnt (built_audio)


def spoken_wav(
    digit: int,
    rate: int = 16_000,
    *,
    voice: str = VOICE,
    speed: int = SPEED,
    silence: tuple[float, float] = (0.0, 0.0),
) -> bytes:
    """The digit's word at `rate` Hz, with `silence` seconds before and after it."""
    import soundfile
    from scipy.signal import resample_poly

    samples, spoken_rate = soundfile.read(io.BytesIO(speak(WORDS[digit], voice, speed, PITCH)))
    common = gcd(rate, spoken_rate)
    resampled = resample_poly(samples, rate // common, spoken_rate // common)
    before, after = (np.zeros(round(seconds * rate)) for seconds in silence)
    out = io.BytesIO()
    sound = np.clip(np.concatenate([before, resampled, after]), -1, 1)
    soundfile.write(out, sound, rate, subtype="PCM_16", format="WAV")
    return out.getvalue()


def recoded(wav: bytes, fmt: str) -> bytes:
    """The same sound in another container (FLAC, OGG, ...)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(wav))
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt)
    return out.getvalue()

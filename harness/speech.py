"""A spoken-digit dataset made here with Debian's espeak-ng: no download, byte-reproducible.

    write_spoken_digits(folder)            # folder/<digit>/<voice>-<speed>-<pitch>[-noise].wav

Each digit ("zero" .. "nine") is spoken by every voice at every speed and pitch given, as a
16-bit mono WAV at espeak-ng's 22,050 Hz; `noisy` adds a copy of each with white noise at a
fixed signal-to-noise ratio, from a seeded generator. The same arguments give the same bytes
(espeak-ng synthesises deterministically; WAV headers carry no date). `held_out_voices` and
`held_out_speeds` name recordings outside the training set, for the generalisation figure.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en", "en-us", "en+f2", "en+m3", "en-gb-scotland", "en+f4")
SPEEDS = (130, 160, 190)
PITCHES = (35, 50, 65)
HELD_OUT_VOICES = ("en-gb-x-rp+f3", "en-us+m5")
HELD_OUT_SPEEDS = (110, 215)
NOISE_SNR_DB = 20.0


def espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise FileNotFoundError("espeak-ng is not installed (apt-get install espeak-ng)")
    return found


def speak(word: str, voice: str, speed: int, pitch: int) -> bytes:
    """One word as WAV bytes (mono, 16 bit, 22,050 Hz)."""
    done = subprocess.run(
        [espeak(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def with_noise(wav: bytes, snr_db: float, seed: int) -> bytes:
    """The same sound with white noise `snr_db` below its power (a seeded generator)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    power = float(np.mean(samples**2)) or 1e-12
    noise = np.random.default_rng(seed).normal(
        0, np.sqrt(power / 10 ** (snr_db / 10)), len(samples)
    )
    out = io.BytesIO()
    soundfile.write(out, np.clip(samples + noise, -1, 1), rate, subtype="PCM_16", format="WAV")
    return out.getvalue()


def write_spoken_digits(
    folder: Path,
    voices: Sequence[str] = VOICES,
    speeds: Sequence[int] = SPEEDS,
    pitches: Sequence[int] = PITCHES,
    noisy: bool = True,
) -> int:
    """Write the dataset (one sub-folder per digit); the number of files written."""
    written = 0
    for digit, word in enumerate(WORDS):
        target = Path(folder) / str(digit)
        target.mkdir(parents=True, exist_ok=True)
        for voice in voices:
            for speed in speeds:
                for pitch in pitches:
                    name = f"{voice.replace('+', '_')}-{speed}-{pitch}"
                    wav = speak(word, voice, speed, pitch)
                    (target / f"{name}.wav").write_bytes(wav)
                    written += 1
                    if noisy:
                        seed = zlib.crc32(f"{digit}/{name}".encode())
                        noisy_wav = with_noise(wav, NOISE_SNR_DB, seed)
                        (target / f"{name}-noise.wav").write_bytes(noisy_wav)
                        written += 1
    return written

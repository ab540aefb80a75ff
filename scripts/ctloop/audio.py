"""Audio bytes -> the log-mel grid the embedding expects: the preprocessing of sound.

The only place a sound is decoded, mixed down, resampled, trimmed and turned into a spectrogram,
as ctloop.preprocess is for pictures. Its output has the same form as a picture's: a float32
vector of values in [0, 1] (an `n_mels` x `frames` grid, low frequencies first, time along a
row), so the embedding, ref_data.csv, training and serving take it as they take a picture.

1. decode (WAV, FLAC, OGG/Vorbis, MP3: libsndfile, through `soundfile`), refusing empty, unknown,
   corrupt or too long input (MAX_SECONDS of sound, checked on the header before decoding);
2. mix the channels down to mono, resample to `sample_rate` (a polyphase filter, scipy);
3. trim leading and trailing silence (frames more than `top_db` below the loudest), refusing
   a sound that is silence throughout;
4. normalise the loudness (RMS to `target_rms`), then pad with silence or cut, centred, to
   `seconds`;
5. power spectrogram (Hann window, `n_fft`, scipy), a mel filter bank of `n_mels` bands (Slaney's
   formula, librosa's default), decibels relative to the loudest cell, floored at -`top_db`,
   scaled to [0, 1], and averaged down to `frames` columns.

Libraries: `soundfile` (libsndfile, a C library with 20 years of use) decodes; scipy (already a
dependency) resamples and computes the short-time Fourier transform; the mel filter bank is its
formula, a few lines (librosa would bring numba and llvmlite, about 150 MB per image and a JIT
at start, for these three functions).
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from ctloop.config import CoreSettings
from ctloop.util import InputError

# Of sound in one request or file, checked before decoding: MAX_AUDIO_SECONDS's default.
MAX_SECONDS: float = CoreSettings.model_fields["max_audio_seconds"].default
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 4_000, 192_000  # Hz: a telephone's half to a studio's


class AudioError(InputError):
    """Base class of every reason a sound is refused."""

    code = "invalid_audio"


class EmptyAudioError(AudioError):
    code = "empty_audio"


class NotAudioError(AudioError):
    code = "not_audio"


class CorruptAudioError(AudioError):
    code = "corrupt_audio"


class AudioTooLongError(AudioError):
    code = "audio_too_long"
    too_large = True


class SilentAudioError(AudioError):
    code = "silent_audio"


@dataclass(frozen=True)
class AudioSpec:
    """Parameters of the audio preprocessing; stored in every model manifest."""

    sample_rate: int = 16_000
    # every sound is brought to this duration: AUDIO_SECONDS (audio_spec in ctloop.reference)
    seconds: float = CoreSettings.model_fields["audio_seconds"].default
    n_mels: int = 32
    frames: int = 32  # columns of the grid: n_mels x frames values
    n_fft: int = 512
    top_db: float = 40.0  # trimming and the spectrogram's floor, below the loudest
    target_rms: float = 0.1

    medium: ClassVar[str] = "audio"

    @property
    def n_pixels(self) -> int:
        """Values per sound (as a picture's pixels): n_mels x frames."""
        return self.n_mels * self.frames

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(rows, columns, channels): mel bands, low first, by time frames."""
        return self.n_mels, self.frames, 1

    def to_dict(self) -> dict:
        return {"medium": self.medium, **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict) -> AudioSpec:
        return cls(**{key: values[key] for key in _names(cls) if key in values})


def preprocess_audio(
    data: bytes, spec: AudioSpec | None = None, max_seconds: float = MAX_SECONDS
) -> np.ndarray:
    """Decode audio bytes into a float32 vector of n_mels x frames values in [0, 1]."""
    spec = spec or AudioSpec()
    samples, rate = decode_audio(data, max_seconds)
    return log_mel_grid(prepare(samples, rate, spec), spec)


def warm_up(spec: AudioSpec) -> None:
    """One tone of 0.3 s at 44.1 kHz through the whole preprocessing: the first sound imports
    scipy.signal and designs its filter (0.7 s here), which a server does before its first
    request."""
    import soundfile

    t = np.arange(13_230) / 44_100
    out = io.BytesIO()
    soundfile.write(out, 0.3 * np.sin(2 * np.pi * 440 * t), 44_100, format="WAV")
    preprocess_audio(out.getvalue(), spec)


def preprocess_audio_many(
    sounds: list[bytes], spec: AudioSpec | None = None, max_seconds: float = MAX_SECONDS
) -> np.ndarray:
    spec = spec or AudioSpec()
    out = np.empty((len(sounds), spec.n_pixels), dtype=np.float32)
    for row, data in enumerate(sounds):
        out[row] = preprocess_audio(data, spec, max_seconds)
    return out


@dataclass(frozen=True)
class AudioHeader:
    """What a sound file's header says, read before any sample is decoded."""

    rate: int
    channels: int
    frames: int

    @property
    def samples(self) -> int:
        """Values decoding it makes (float32 each): frames x channels."""
        return self.frames * self.channels


def read_header(data: bytes, max_seconds: float = MAX_SECONDS) -> AudioHeader:
    """The header, checked (a sound, at most `max_seconds`); nothing decoded. AudioError."""
    with _opened(data, max_seconds) as (_, header):
        return header


def decode_audio(data: bytes, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and their sample rate; AudioError when refused."""
    with _opened(data, max_seconds) as (sound, header):
        try:
            samples = sound.read(dtype="float32", always_2d=True)
        except (RuntimeError, EOFError, ValueError) as exc:
            raise CorruptAudioError(f"the audio cannot be decoded ({exc})") from exc
    if len(samples) == 0:
        raise EmptyAudioError("the audio file holds no sound")
    mono = samples.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise CorruptAudioError("the audio holds samples that are not numbers")
    return mono.astype(np.float32), header.rate


@contextlib.contextmanager
def _opened(data: bytes, max_seconds: float) -> Iterator[tuple[Any, AudioHeader]]:
    """The open file and its checked header; libsndfile's refusals as AudioError."""
    import soundfile

    if not data:
        raise EmptyAudioError("the audio file is empty")
    try:
        sound = soundfile.SoundFile(io.BytesIO(data))
    except soundfile.LibsndfileError as exc:
        text = str(exc).lower()
        if "format" in text or "recognised" in text or "recognized" in text:
            raise NotAudioError(
                "not a sound file this server reads (WAV, FLAC, OGG/Vorbis or MP3)"
            ) from exc
        raise CorruptAudioError(f"the audio cannot be decoded ({exc})") from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        raise CorruptAudioError(f"the audio cannot be decoded ({exc})") from exc
    with sound:
        header = AudioHeader(sound.samplerate, sound.channels, sound.frames)
        if not 0 < header.channels <= MAX_CHANNELS:
            raise CorruptAudioError(
                f"{header.channels} channels: sounds of 1 to {MAX_CHANNELS} channels are accepted"
            )
        if not MIN_RATE <= header.rate <= MAX_RATE:
            raise CorruptAudioError(
                f"{header.rate:,} samples a second: rates from {MIN_RATE:,} to {MAX_RATE:,} Hz "
                "are accepted"
            )
        if header.frames > max_seconds * header.rate:
            raise AudioTooLongError(
                f"{header.frames / header.rate:.1f} s of sound: at most {max_seconds:g} s are "
                "accepted"
            )
        yield sound, header


def prepare(samples: np.ndarray, rate: int, spec: AudioSpec) -> np.ndarray:
    """Resampled, trimmed, normalised and brought to `spec.seconds` (steps 2 to 4)."""
    from scipy.signal import resample_poly

    if rate != spec.sample_rate:
        ratio = resampling_ratio(rate, spec.sample_rate)
        samples = resample_poly(samples, ratio.numerator, ratio.denominator)
    samples = trim_silence(np.asarray(samples, dtype=np.float32), spec)
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    samples = samples * np.float32(spec.target_rms / rms)
    wanted = round(spec.seconds * spec.sample_rate)
    if len(samples) >= wanted:
        start = (len(samples) - wanted) // 2
        return samples[start : start + wanted]
    before = (wanted - len(samples)) // 2
    return np.pad(samples, (before, wanted - len(samples) - before))


# The polyphase filter's length grows with the ratio's terms: 44,100 -> 16,000 Hz is 160 / 441
# (8 ms a second of sound), but an odd rate such as 47,999 Hz is 16,000 / 47,999 (260 ms a
# second). A ratio is brought to terms of at most this, the pitch moved by 0.2 % at most.
MAX_RATIO_TERM = 1000


def resampling_ratio(rate: int, target: int) -> Fraction:
    """up / down of the resampling from `rate` to `target`, in bounded terms."""
    return Fraction(target, rate).limit_denominator(MAX_RATIO_TERM)


def trim_silence(samples: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Leading and trailing frames more than `top_db` below the loudest frame cut off."""
    hop = spec.n_fft // 4
    width = min(spec.n_fft, len(samples))
    # Each frame's mean square from running sums: one pass, not n_fft / hop copies of the sound.
    sums = np.concatenate(([0.0], np.cumsum(np.square(samples, dtype=np.float64))))
    starts = hop * np.arange(1 + (len(samples) - width) // hop)
    energy = np.sqrt(np.maximum(sums[starts + width] - sums[starts], 0.0) / max(width, 1))
    peak = float(energy.max()) if len(energy) else 0.0
    if peak <= 1e-6:
        raise SilentAudioError("the sound is silence throughout")
    loud = np.flatnonzero(energy >= peak * 10 ** (-spec.top_db / 20))
    start, stop = int(loud[0]) * hop, int(loud[-1]) * hop + spec.n_fft
    return samples[start:stop]


def log_mel_grid(samples: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """The n_mels x frames grid in [0, 1] of a prepared sound (step 5), low bands first."""
    from scipy.signal import stft

    _, _, spectrum = stft(
        samples,
        fs=spec.sample_rate,
        window="hann",
        nperseg=spec.n_fft,
        noverlap=spec.n_fft - spec.n_fft // 4,
        boundary="even",
        padded=True,
    )
    power = np.square(np.abs(spectrum), dtype=np.float32)
    # float32 on both sides: a float64 @ float32 product skips BLAS (11 ms against 0.1 ms)
    mel = mel_filters(spec.sample_rate, spec.n_fft, spec.n_mels) @ power
    db = 10 * np.log10(np.maximum(mel, 1e-12))
    db = np.maximum(db, db.max() - spec.top_db)
    scaled = (db - (db.max() - spec.top_db)) / spec.top_db
    # Average the time axis down to `frames` columns (box filter, as pictures are).
    edges = np.linspace(0, scaled.shape[1], spec.frames + 1)
    columns = [
        scaled[:, int(a) : max(int(b), int(a) + 1)].mean(axis=1)
        for a, b in itertools.pairwise(edges)
    ]
    return np.clip(np.stack(columns, axis=1), 0.0, 1.0).astype(np.float32).reshape(-1)


@lru_cache(maxsize=8)
def mel_filters(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular mel filters, (n_mels, n_fft // 2 + 1), Slaney's scale and area normalisation."""
    frequencies = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - frequencies[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights = weights.astype(np.float32)
    weights.flags.writeable = False  # cached: shared by every call
    return weights


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def _names(cls: type) -> list[str]:
    """The dataclass's fields (its ClassVar `medium` is not one)."""
    return [field.name for field in fields(cls)]

"""The sound a person gives the page (decoding happens in the API), and the spectrogram the model
heard, drawn as a picture."""

from __future__ import annotations

from PIL import Image

from serving_client.contract import Grid
from webapp.images import ImageInput

SOUND_TYPES = ["wav", "flac", "ogg", "oga", "mp3"]
# What st.audio_input can record at (streamlit's ALLOWED_SAMPLE_RATES), lowest first.
RECORDING_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
CELL = 7  # screen pixels a side of one cell of the spectrogram
# A dark-to-light colour ramp (close to matplotlib's "magma"): silence dark, the loudest light.
RAMP = [(0, 0, 4), (81, 18, 124), (183, 55, 121), (252, 137, 97), (252, 253, 191)]


def recording_rate(model_rate: int | None) -> int | None:
    """The lowest rate st.audio_input records at that keeps all the model hears (None: the
    browser's own rate)."""
    return next((rate for rate in RECORDING_RATES if model_rate and rate >= model_rate), None)


def from_recording(wav: bytes) -> ImageInput:
    return ImageInput(wav, "recording.wav", "audio/wav", "recording")


def looks_like_sound(data: bytes) -> bool:
    """The bytes start like a WAV, FLAC, OGG or MP3 file (the API says whether it can hear it)."""
    if data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE":
        return True
    if data[:4] in (b"fLaC", b"OggS") or data[:3] == b"ID3":
        return True
    return len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0  # an MPEG frame


def playable_type(media_type: str) -> str:
    """What the player is told the bytes are: their own type when it names a sound."""
    return media_type if media_type.startswith("audio/") else "audio/wav"


def spectrogram_picture(grid: Grid, cell: int = CELL) -> Image.Image:
    """The grid the model saw (rows: mel bands, low first; columns: time; 1: the loudest) as a
    usual spectrogram: low pitches at the bottom, time to the right, louder lighter."""
    import numpy as np

    values = np.clip(np.flipud(np.asarray(grid, dtype=np.float32)), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(RAMP))
    colours = np.stack(
        [np.interp(values, stops, [colour[c] for colour in RAMP]) for c in range(3)], axis=-1
    )
    cells = Image.fromarray(np.rint(colours).astype(np.uint8))
    return cells.resize((cells.width * cell, cells.height * cell), Image.Resampling.NEAREST)

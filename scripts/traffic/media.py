"""The two media the simulator plays, pictures and sounds: the files of each, and their drifts.

A samples folder holds one medium, told by its files' suffixes; the drifts a scenario may use
are that medium's (traffic.drift for pictures, traffic.sound_drift for sounds). The suffixes are
the simulator's own copy of the stack's (ctloop.media.SUFFIXES, kept alike by a test): it imports
none of the stack's code.
"""

from __future__ import annotations

from pathlib import PurePath

import numpy as np

from traffic.drift import TRANSFORMS, Sample, transformed_png
from traffic.sound_drift import DRIFTS as SOUND_DRIFTS
from traffic.sound_drift import drifted_wav

IMAGE = "image"
AUDIO = "audio"
SUFFIXES = {
    IMAGE: (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"),
    AUDIO: (".wav", ".flac", ".ogg", ".oga", ".mp3"),
}
NOUNS = {IMAGE: "pictures", AUDIO: "sounds"}
# Every medium's drifts ("clean", no drift, is every medium's too), and the one played by default.
DRIFTS = {
    IMAGE: tuple(name for name in TRANSFORMS if name != "clean"),
    AUDIO: tuple(SOUND_DRIFTS),
}
DEFAULT_DRIFT = {IMAGE: "slant", AUDIO: "background"}


def medium_of_file(name: str) -> str | None:
    """The medium a file's suffix says it holds, or None (not a sample)."""
    suffix = PurePath(name).suffix.lower()
    return next((medium for medium, known in SUFFIXES.items() if suffix in known), None)


def drift_for(medium: str, name: str | None) -> str:
    """`name` if it is a drift of `medium` (None: the medium's default); a ValueError that lists
    the medium's drifts if not."""
    if name is None:
        return DEFAULT_DRIFT[medium]
    if name not in DRIFTS[medium]:
        raise ValueError(
            f"{name!r} is no drift of {NOUNS[medium]}; one of {', '.join(DRIFTS[medium])}"
        )
    return name


def drifted(medium: str, name: str, sample: Sample | bytes, rng: np.random.Generator) -> bytes:
    """The encoded input the API gets: a picture (traffic.drift.working_picture's) through the
    named drift as a PNG, or a sound file's bytes as a WAV ("clean": the file as it is)."""
    if medium == AUDIO:
        if not isinstance(sample, bytes):
            raise TypeError(f"a sound is the bytes of its file, not {type(sample).__name__}")
        return drifted_wav(name, sample, rng)
    if isinstance(sample, bytes):
        raise TypeError("a picture is a decoded image or an 8 x 8 digit, not bytes")
    return transformed_png(name, sample, rng)

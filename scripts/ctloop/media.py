"""The media a dataset can hold, behind one interface: pictures and sounds.

A medium is a property of the dataset (`ctloop.dataset` reads it from the files' suffixes: a
folder holds one medium). Its preprocessing turns an encoded file into a float32 vector in
[0, 1], a grid of `spec.grid_shape`, and is recorded in embedding.json and every manifest as
`preprocessing` (with its `medium`). From that vector on (the embedding, ref_data.csv, training,
the gate, ONNX, the registry, the swap) nothing knows which medium it serves.

- image: `ctloop.preprocess` (Pillow), spec `PreprocessSpec`, refusals `ImageError`;
- audio: `ctloop.audio` (soundfile, scipy), spec `AudioSpec`, refusals `AudioError`.

Both refusal families derive from `ctloop.util.InputError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from ctloop.audio import AudioSpec, preprocess_audio
from ctloop.audio import warm_up as warm_up_audio
from ctloop.config import CoreSettings
from ctloop.preprocess import PreprocessSpec, preprocess

IMAGE = "image"
AUDIO = "audio"
MEDIA = (IMAGE, AUDIO)
SUFFIXES = {
    IMAGE: (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"),
    AUDIO: (".wav", ".flac", ".ogg", ".oga", ".mp3"),
}

Spec = PreprocessSpec | AudioSpec


@dataclass(frozen=True)
class Limits:
    """What an input may hold before it is refused: pixels of a picture, seconds of a sound
    (MAX_IMAGE_PIXELS and MAX_AUDIO_SECONDS, their defaults unless `from_settings`)."""

    max_pixels: int = CoreSettings.model_fields["max_image_pixels"].default
    max_seconds: float = CoreSettings.model_fields["max_audio_seconds"].default

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Limits:
        return cls(settings.max_image_pixels, settings.max_audio_seconds)


def medium_of_file(name: str) -> str | None:
    """The medium a file's suffix says it holds, or None (not an input file)."""
    suffix = PurePath(name).suffix.lower()
    return next((medium for medium, known in SUFFIXES.items() if suffix in known), None)


def spec_from_dict(values: dict) -> Spec:
    """The spec a manifest or embedding.json records; no `medium` means a picture (every
    record before sound)."""
    medium = values.get("medium", IMAGE)
    if medium == AUDIO:
        return AudioSpec.from_dict(values)
    if medium != IMAGE:
        raise ValueError(f"medium {medium!r}: one of {', '.join(MEDIA)}")
    return PreprocessSpec.from_dict(values)


def preprocess_input(data: bytes, spec: Spec, limits: Limits | None = None) -> np.ndarray:
    """One encoded input -> its float32 vector of spec.n_pixels values in [0, 1]."""
    limits = limits or Limits()
    if isinstance(spec, AudioSpec):
        return preprocess_audio(data, spec, limits.max_seconds)
    return preprocess(data, spec, limits.max_pixels)


def preprocess_inputs(inputs: list[bytes], spec: Spec, limits: Limits | None = None) -> np.ndarray:
    """`preprocess_input` over several inputs: an (n, spec.n_pixels) float32 matrix."""
    out = np.empty((len(inputs), spec.n_pixels), dtype=np.float32)
    for row, data in enumerate(inputs):
        out[row] = preprocess_input(data, spec, limits)
    return out


def warm_up(spec: Spec) -> None:
    """What the first input of this medium would pay once, paid now (a server at start)."""
    if isinstance(spec, AudioSpec):
        warm_up_audio(spec)

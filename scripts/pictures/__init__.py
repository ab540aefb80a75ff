"""Pictures of a grid of cells (an 8 x 8 digit) and their encoding: written once, for the ML
core, the traffic simulator, the drawn digits and the tests alike.

A package of its own, below all of them, because the simulator may not import the ML core
(it talks HTTP only) and the augmentation's side shift is, on purpose, the simulator's `shift`
drift: one definition keeps the two the same. Numpy and Pillow only; it imports nothing of the
stack.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image


def render_grid(cells: np.ndarray, scale: int = 1, dark_on_light: bool = False) -> Image.Image:
    """A square grid of values in [0, 1] as a grey picture, each cell `scale` pixels wide (no
    smoothing); ink bright on dark, as the digits dataset has it, unless `dark_on_light`."""
    side = round(np.sqrt(cells.size))
    levels = np.clip(np.rint(cells.reshape(side, side) * 255.0), 0, 255).astype(np.uint8)
    if dark_on_light:
        levels = 255 - levels
    picture = Image.fromarray(levels)
    if scale != 1:
        picture = picture.resize((side * scale, side * scale), Image.Resampling.NEAREST)
    return picture


def moved_sideways(picture: Image.Image, step: int) -> Image.Image:
    """The picture moved `step` pixels right (left if negative) in its frame; what leaves the
    frame is lost, what comes in is background (0)."""
    moved = Image.new(picture.mode, picture.size, 0)
    moved.paste(picture, (step, 0))
    return moved


def encode(picture: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    """The picture as the bytes of an image file (PNG unless `fmt` says otherwise); `options`
    go to Pillow's save (`optimize=True`, `quality=90`, ...)."""
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()

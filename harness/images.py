"""Images of digits in the forms clients send them."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digit_image(cells: np.ndarray, scale: int = 1) -> Image.Image:
    """A grey image of a square grid (values in [0, 1], ink bright), enlarged with NEAREST."""
    side = round(np.sqrt(cells.size))
    levels = np.clip(np.rint(cells.reshape(side, side) * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(levels)
    if scale != 1:
        image = image.resize((side * scale, side * scale), Image.Resampling.NEAREST)
    return image


def to_bytes(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def on_canvas(
    image: Image.Image, canvas: tuple[int, int], at: tuple[int, int], background: int = 0
) -> Image.Image:
    """Paste an L image at `at` on a larger canvas of one grey level."""
    out = Image.new("L", canvas, background)
    out.paste(image, at)
    return out

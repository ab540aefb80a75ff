"""Images of digits in the forms clients send them (a digit's picture and its file bytes:
`pictures.render_grid` and `pictures.encode`)."""

from __future__ import annotations

import base64

from PIL import Image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def on_canvas(
    image: Image.Image, canvas: tuple[int, int], at: tuple[int, int], background: int = 0
) -> Image.Image:
    """Paste an L image at `at` on a larger canvas of one grey level."""
    out = Image.new("L", canvas, background)
    out.paste(image, at)
    return out

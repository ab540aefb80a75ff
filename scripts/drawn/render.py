"""A drawn digit's strokes -> the picture the page's canvas gives: black round-pen strokes on
white, 280 x 280, anti-aliased (drawn at 4x and reduced, as a browser's canvas smooths edges)."""

from __future__ import annotations

from PIL import Image, ImageDraw

from drawn.synth import CANVAS, DrawnDigit
from pictures import encode

SUPERSAMPLE = 4


def render(digit: DrawnDigit, canvas: int = CANVAS, width: int | None = None) -> Image.Image:
    """The digit as an L image, ink black on white; `width` overrides its pen width."""
    pen = (width or digit.width) * SUPERSAMPLE
    big = Image.new("L", (canvas * SUPERSAMPLE, canvas * SUPERSAMPLE), 255)
    draw = ImageDraw.Draw(big)
    for stroke in digit.strokes:
        points = [
            ((x + 0.5) * SUPERSAMPLE, (y + 0.5) * SUPERSAMPLE) for x, y in stroke
        ]  # pixel centres
        if len(points) > 1:
            draw.line(points, fill=0, width=pen, joint="curve")
        for x, y in (points[0], points[-1]) if len(points) > 1 else points:
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=0)
        for x, y in points[1:-1]:  # round joins where the line's own joint leaves a notch
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=0)
    return big.resize((canvas, canvas), Image.Resampling.BOX)


def render_png(digit: DrawnDigit, canvas: int = CANVAS, width: int | None = None) -> bytes:
    """`render` as PNG bytes, what the page sends to /predict."""
    return encode(render(digit, canvas, width))

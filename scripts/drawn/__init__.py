"""Drawn digits: an evaluation set of digits drawn the way a person draws on the page's canvas.

The set (`drawn-digits.json`, in this folder) is stroke-synthesised by `drawn.synth` and kept in
the repository; `drawn.render` turns a digit's strokes into the PNG the page would send.

    from drawn import load_set, render_png
    digits = load_set()                  # 400 DrawnDigit, 40 per class
    png = render_png(digits[0])          # black strokes on a white 280 x 280 canvas
"""

from __future__ import annotations

import json
from pathlib import Path

from drawn.render import render, render_png
from drawn.synth import CANVAS, DrawnDigit, synthesise, synthesise_set

SET_PATH = Path(__file__).with_name("drawn-digits.json")
SET_SEED = 16  # issue 16
SET_PER_CLASS = 40

__all__ = [
    "CANVAS",
    "SET_PATH",
    "DrawnDigit",
    "load_set",
    "render",
    "render_png",
    "synthesise",
    "synthesise_set",
    "write_set",
]


def load_set(path: Path = SET_PATH) -> list[DrawnDigit]:
    """The drawn evaluation set kept in the repository."""
    document = json.loads(path.read_text())
    return [DrawnDigit.from_dict(values) for values in document["digits"]]


def write_set(path: Path = SET_PATH, per_class: int = SET_PER_CLASS, seed: int = SET_SEED) -> int:
    """Regenerate the set (`python -m drawn`); returns its size in bytes."""
    digits = synthesise_set(per_class, seed)
    about = {
        "about": "stroke-synthesised digits on a 280x280 canvas (python -m drawn); "
        "strokes are flat [x0, y0, x1, y1, ...] lists in canvas pixels, width in pixels",
        "canvas": CANVAS,
        "seed": seed,
    }
    text = "{\n" + ",\n".join(
        f'"{key}": {json.dumps(value, separators=(",", ":"))}' for key, value in about.items()
    )
    rows = ",\n".join(json.dumps(d.to_dict(), separators=(",", ":")) for d in digits)
    data = (text + ',\n"digits": [\n' + rows + "\n]}\n").encode()
    path.write_bytes(data)
    return len(data)

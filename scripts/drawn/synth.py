"""Stroke-synthesised digits, drawn the way a person draws with a mouse on the page's canvas.

Each class has a few writers' shapes (`STYLES`): strokes through control points in a unit box
(x right, y down), followed by a smooth curve. A digit is one shape with every control point
moved a little, a width-to-height ratio, a slant, a tilt, a size (55-85 % of the canvas height)
and a place anywhere on the 280 x 280 canvas, drawn with a round pen 12-22 px wide. What is
stored is what a mouse would give: each stroke as points about 8 px apart, in canvas pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANVAS = 280

# Control points (x, y) of each stroke, per class and writer's shape.
STYLES: dict[str, list[list[list[tuple[float, float]]]]] = {
    "0": [
        [[(0.5, 0), (0.12, 0.25), (0.05, 0.6), (0.3, 0.97), (0.7, 0.97), (0.95, 0.6),
          (0.88, 0.22), (0.5, 0), (0.38, 0.06)]],
        [[(0.7, 0.08), (0.35, 0.02), (0.08, 0.4), (0.2, 0.9), (0.6, 1), (0.92, 0.65),
          (0.9, 0.2), (0.62, 0), (0.45, 0.1)]],
    ],
    "1": [
        [[(0.5, 0), (0.5, 1)]],
        [[(0.15, 0.28), (0.6, 0), (0.6, 1)]],
        [[(0.2, 0.25), (0.55, 0), (0.55, 1)], [(0.2, 1), (0.9, 1)]],
        [[(0.55, 0), (0.45, 1)]],
    ],
    "2": [
        [[(0.08, 0.25), (0.45, 0), (0.88, 0.18), (0.8, 0.5), (0.05, 1), (0.95, 1)]],
        [[(0.1, 0.15), (0.55, 0), (0.9, 0.3), (0.5, 0.7), (0.1, 0.98), (0.5, 0.88),
          (0.95, 0.98)]],
        [[(0.05, 0.3), (0.3, 0.02), (0.75, 0.05), (0.85, 0.35), (0.15, 0.95), (0.9, 0.95)]],
    ],
    "3": [
        [[(0.1, 0.12), (0.5, 0), (0.88, 0.2), (0.45, 0.48), (0.9, 0.72), (0.55, 1),
          (0.08, 0.88)]],
        [[(0.1, 0), (0.9, 0), (0.45, 0.42), (0.9, 0.68), (0.55, 1), (0.1, 0.88)]],
        [[(0.15, 0.15), (0.6, 0), (0.8, 0.25), (0.35, 0.5), (0.85, 0.65), (0.7, 0.95),
          (0.15, 0.95)]],
    ],
    "4": [
        [[(0.6, 0), (0.05, 0.65), (0.95, 0.65)], [(0.72, 0.3), (0.72, 1)]],
        [[(0.12, 0), (0.08, 0.55), (0.92, 0.55)], [(0.75, 0), (0.75, 1)]],
        [[(0.55, 0), (0.1, 0.6), (0.9, 0.6)], [(0.62, 0), (0.62, 1)]],
    ],
    "5": [
        [[(0.88, 0), (0.22, 0), (0.15, 0.45), (0.6, 0.38), (0.92, 0.65), (0.6, 1),
          (0.08, 0.9)]],
        [[(0.25, 0), (0.18, 0.45), (0.6, 0.36), (0.9, 0.66), (0.55, 1), (0.1, 0.85)],
         [(0.25, 0), (0.9, 0)]],
        [[(0.8, 0.02), (0.25, 0), (0.2, 0.4), (0.75, 0.45), (0.8, 0.85), (0.4, 1),
          (0.1, 0.85)]],
    ],
    "6": [
        [[(0.75, 0), (0.35, 0.3), (0.12, 0.7), (0.35, 1), (0.75, 0.92), (0.82, 0.65),
          (0.45, 0.5), (0.15, 0.7)]],
        [[(0.6, 0), (0.25, 0.4), (0.15, 0.8), (0.5, 1), (0.85, 0.78), (0.6, 0.52),
          (0.2, 0.65)]],
    ],
    "7": [
        [[(0.05, 0), (0.95, 0), (0.4, 1)]],
        [[(0.05, 0), (0.95, 0), (0.45, 1)], [(0.3, 0.5), (0.85, 0.5)]],
        [[(0.05, 0.15), (0.08, 0), (0.95, 0.02), (0.6, 0.5), (0.5, 1)]],
    ],
    "8": [
        [[(0.82, 0.15), (0.5, 0), (0.18, 0.15), (0.3, 0.4), (0.72, 0.6), (0.85, 0.85),
          (0.5, 1), (0.15, 0.85), (0.28, 0.6), (0.7, 0.4), (0.82, 0.15)]],
        [[(0.5, 0.48), (0.2, 0.25), (0.5, 0), (0.8, 0.25), (0.5, 0.48)],
         [(0.5, 0.48), (0.12, 0.75), (0.5, 1), (0.88, 0.75), (0.5, 0.48)]],
    ],
    "9": [
        [[(0.85, 0.25), (0.6, 0), (0.2, 0.08), (0.15, 0.38), (0.55, 0.5), (0.85, 0.3),
          (0.85, 0.6), (0.8, 1)]],
        [[(0.8, 0.15), (0.45, 0), (0.12, 0.2), (0.35, 0.48), (0.82, 0.3), (0.8, 0.7),
          (0.6, 1), (0.25, 0.95)]],
        [[(0.8, 0.3), (0.5, 0.02), (0.15, 0.2), (0.3, 0.45), (0.8, 0.35)],
         [(0.82, 0.05), (0.78, 1)]],
    ],
}  # fmt: skip


@dataclass(frozen=True)
class DrawnDigit:
    """One drawn digit: its class, pen width and strokes (lists of (x, y) canvas pixels)."""

    label: str
    width: int
    strokes: list[list[tuple[int, int]]]
    # How it was made (for the benchmark's breakdowns): writer's shape, slant (shear), tilt
    # (degrees) and height as a share of the canvas.
    style: int = 0
    slant: float = 0.0
    tilt: float = 0.0
    height: float = 0.0

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "width": self.width,
            "style": self.style,
            "slant": round(self.slant, 3),
            "tilt": round(self.tilt, 2),
            "height": round(self.height, 3),
            "strokes": [[v for point in stroke for v in point] for stroke in self.strokes],
        }

    @classmethod
    def from_dict(cls, values: dict) -> DrawnDigit:
        strokes = [list(zip(flat[0::2], flat[1::2], strict=True)) for flat in values["strokes"]]
        return cls(
            label=str(values["label"]),
            width=int(values["width"]),
            strokes=strokes,
            style=int(values.get("style", 0)),
            slant=float(values.get("slant", 0.0)),
            tilt=float(values.get("tilt", 0.0)),
            height=float(values.get("height", 0.0)),
        )


def synthesise(label: str, rng: np.random.Generator, canvas: int = CANVAS) -> DrawnDigit:
    """One digit of class `label` in a random writer's shape, size, place, slant and pen."""
    style_index = int(rng.integers(len(STYLES[label])))
    style = STYLES[label][style_index]
    jitter = 0.04
    strokes = [
        _smooth(np.array(points, float) + rng.normal(0, jitter, (len(points), 2)))
        for points in style
    ]
    aspect = 0.12 if label == "1" and len(style) == 1 and len(style[0]) == 2 else 0.0
    ratio = float(rng.uniform(0.5, 0.85)) if not aspect else 1.0
    slant = float(rng.uniform(-0.15, 0.3))  # most hands lean right, a few left
    degrees = float(rng.uniform(-10, 10))
    tilt = np.deg2rad(degrees)
    share = float(rng.uniform(0.55, 0.85))
    height = share * canvas
    cos, sin = np.cos(tilt), np.sin(tilt)
    shaped = []
    for stroke in strokes:
        x = (stroke[:, 0] - 0.5) * ratio * height
        y = (stroke[:, 1] - 0.5) * height
        x = x - slant * y  # italic: the top leans right for a positive slant
        shaped.append(np.column_stack([cos * x - sin * y, sin * x + cos * y]))
    width = int(rng.integers(12, 23))
    points = np.vstack(shaped)
    extent = float((points.max(axis=0) - points.min(axis=0)).max()) + width + 4
    if extent > canvas:  # a wide, slanted digit: drawn smaller so that all of it is on the canvas
        scale = (canvas - width - 4) / (extent - width - 4)
        shaped = [stroke * scale for stroke in shaped]
        points = np.vstack(shaped)
        share *= scale
    low, high = points.min(axis=0) - width / 2 - 2, points.max(axis=0) + width / 2 + 2
    centre = np.array([rng.uniform(-low[i], max(-low[i], canvas - high[i])) for i in (0, 1)])
    return DrawnDigit(
        label=label,
        width=width,
        strokes=[_mouse_points(stroke + centre, canvas) for stroke in shaped],
        style=style_index,
        slant=slant,
        tilt=degrees,
        height=share,
    )


def synthesise_set(per_class: int, seed: int, labels: list[str] | None = None) -> list[DrawnDigit]:
    """`per_class` digits of every class, interleaved (0, 1, ..., 9, 0, 1, ...), seeded."""
    rng = np.random.default_rng(seed)
    labels = labels or sorted(STYLES)
    return [synthesise(label, rng) for _ in range(per_class) for label in labels]


def _smooth(points: np.ndarray, per_segment: int = 24) -> np.ndarray:
    """A Catmull-Rom curve through the control points (a straight line for two points)."""
    if len(points) < 3:
        return np.linspace(points[0], points[-1], per_segment + 1)
    padded = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    pieces = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        pieces.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
        )
    return np.vstack([*pieces, points[-1:]])


def _mouse_points(curve: np.ndarray, canvas: int, spacing: float = 8.0) -> list[tuple[int, int]]:
    """Points about `spacing` px apart along the curve, rounded to pixels, inside the canvas."""
    steps = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    along = np.concatenate([[0], np.cumsum(steps)])
    count = max(2, int(np.ceil(along[-1] / spacing)) + 1)
    at = np.linspace(0, along[-1], count)
    xs, ys = np.interp(at, along, curve[:, 0]), np.interp(at, along, curve[:, 1])
    xs, ys = np.clip(np.rint(xs), 0, canvas - 1), np.clip(np.rint(ys), 0, canvas - 1)
    return [(int(x), int(y)) for x, y in zip(xs, ys, strict=True)]

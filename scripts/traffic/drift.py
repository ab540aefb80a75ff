"""Named, seeded transformations that real handwriting shows, applied to unseen digit images.

Each takes the 8x8 digit as the dataset stores it and returns a PNG of a 32x32 picture (the
digit drawn at 4 pixels per cell, as a scanner or a canvas would give it), so the API's
preprocessing sees a real image, not a vector.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from pictures import encode, moved_sideways, render_grid

SCALE = 4  # pixels per cell of the 8x8 digit


def render(cells: np.ndarray) -> Image.Image:
    """The 8x8 digit (values in [0, 1]) as a 32x32 grey picture, ink bright."""
    return render_grid(cells, SCALE)


def clean(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    return render(cells)


def thick(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A broader pen: strokes dilated by 2 pixels."""
    return render(cells).filter(ImageFilter.MaxFilter(5))


def thin(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A fine pen: strokes eroded by 1 pixel."""
    return render(cells).filter(ImageFilter.MinFilter(3))


def rotate(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A tilted page: 20 to 30 degrees, either way."""
    angle = float(rng.uniform(20, 30)) * float(rng.choice([-1, 1]))
    return render(cells).rotate(angle, resample=Image.Resampling.BILINEAR)


def slant(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Another writer: italic strokes (a horizontal shear of 0.4 to 0.6)."""
    shear = float(rng.uniform(0.4, 0.6))
    side = 8 * SCALE
    return render(cells).transform(
        (side, side), Image.Transform.AFFINE, (1, shear, -shear * side / 2, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )  # fmt: skip


def shift(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit written off the guide: moved one cell sideways in its frame."""
    return moved_sideways(render(cells), SCALE * int(rng.choice([-1, 1])))


def blur(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An out-of-focus scan."""
    return render(cells).filter(ImageFilter.GaussianBlur(radius=2.0))


def noise(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A dusty scan: 10 % of the pixels flipped to ink or to paper (speckle noise)."""
    values = np.asarray(render(cells), dtype=np.uint8).copy()
    flipped = rng.random(values.shape) < 0.10
    values[flipped] = np.where(rng.random(int(flipped.sum())) < 0.5, 0, 255)
    return Image.fromarray(values)


def invert(cells: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Dark ink on light paper (the preprocessing undoes this one: a control)."""
    return Image.eval(render(cells), lambda value: 255 - value)


TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], Image.Image]] = {
    "clean": clean,
    "thick": thick,
    "thin": thin,
    "rotate": rotate,
    "slant": slant,
    "shift": shift,
    "blur": blur,
    "noise": noise,
    "invert": invert,
}


def transformed_png(name: str, cells: np.ndarray, rng: np.random.Generator) -> bytes:
    """The PNG of `cells` through the named transformation."""
    try:
        transform = TRANSFORMS[name]
    except KeyError as exc:
        raise ValueError(
            f"unknown transformation {name!r}; one of {', '.join(TRANSFORMS)}"
        ) from exc
    return encode(transform(cells, rng))

"""Named, seeded transformations that real pictures show, applied to unseen images of the dataset.

Each takes a sample and returns a PNG, so the API's preprocessing sees a real image, not a
vector. A sample is either the 8 x 8 digit as the bundled dataset stores it (cells in [0, 1]),
drawn at 4 pixels per cell (32 x 32, as a scanner or a canvas would give it), or any other
picture as it is, grey or in colour (`working_picture`). Sizes in the transformations are
relative to the picture's side, so a 32 x 32 digit gets exactly what it always got.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from pictures import encode, moved_sideways, render_grid

SCALE = 4  # pixels per cell of the 8x8 digit
SIDE = 8 * SCALE  # the side the transformations' sizes were set for

Sample = np.ndarray | Image.Image


def render(cells: np.ndarray) -> Image.Image:
    """The 8x8 digit (values in [0, 1]) as a 32x32 grey picture, ink bright."""
    return render_grid(cells, SCALE)


def working_picture(sample: Sample) -> Image.Image:
    """The picture the transformations work on: an 8 x 8 digit rendered at SCALE, any other
    picture in grey ("L") or colour ("RGB")."""
    if isinstance(sample, np.ndarray):
        return render(sample)
    if sample.size == (8, 8):
        return render(np.asarray(sample.convert("L"), dtype=np.float32).reshape(-1) / 255.0)
    return sample.convert("L" if sample.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")


def _relative(picture: Image.Image, size: float) -> float:
    """`size`, given for a SIDE-pixel picture, on this picture."""
    return size * max(picture.size) / SIDE


def _odd(value: float) -> int:
    return 2 * round((value - 1) / 2) + 1


def clean(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    return picture


def thick(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A broader pen: bright strokes dilated by 2 pixels (at 32 pixels)."""
    return picture.filter(ImageFilter.MaxFilter(_odd(_relative(picture, 5))))


def thin(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A fine pen: bright strokes eroded by 1 pixel (at 32 pixels)."""
    return picture.filter(ImageFilter.MinFilter(_odd(_relative(picture, 3))))


def rotate(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A tilted page or camera: 20 to 30 degrees, either way."""
    angle = float(rng.uniform(20, 30)) * float(rng.choice([-1, 1]))
    return picture.rotate(angle, resample=Image.Resampling.BILINEAR)


def slant(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Another writer: italic strokes (a horizontal shear of 0.4 to 0.6)."""
    shear = float(rng.uniform(0.4, 0.6))
    width = picture.size[0]
    return picture.transform(
        picture.size, Image.Transform.AFFINE, (1, shear, -shear * width / 2, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )  # fmt: skip


def shift(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Written off the guide, or framed off centre: moved an eighth of its width sideways."""
    return moved_sideways(picture, round(_relative(picture, SCALE)) * int(rng.choice([-1, 1])))


def blur(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An out-of-focus scan or camera."""
    return picture.filter(ImageFilter.GaussianBlur(radius=_relative(picture, 2.0)))


def noise(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A dusty scan: 10 % of the pixels flipped to black or to white (speckle noise)."""
    values = np.asarray(picture, dtype=np.uint8).copy()
    flipped = rng.random(values.shape[:2]) < 0.10
    levels = np.where(rng.random(int(flipped.sum())) < 0.5, 0, 255).astype(np.uint8)
    values[flipped] = levels if values.ndim == 2 else levels[:, None]
    return Image.fromarray(values)


def invert(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Dark ink on light paper (the stroke framing undoes this one: a control)."""
    return Image.eval(picture, lambda value: 255 - value)


def dark(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An underexposed camera: every pixel at 40 to 60 % of its brightness."""
    factor = float(rng.uniform(0.4, 0.6))
    return Image.eval(picture, lambda value: round(value * factor))


TRANSFORMS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "clean": clean,
    "thick": thick,
    "thin": thin,
    "rotate": rotate,
    "slant": slant,
    "shift": shift,
    "blur": blur,
    "noise": noise,
    "invert": invert,
    "dark": dark,
}


def transformed_png(name: str, sample: Sample, rng: np.random.Generator) -> bytes:
    """The PNG of `sample` through the named transformation."""
    try:
        transform = TRANSFORMS[name]
    except KeyError as exc:
        raise ValueError(
            f"unknown transformation {name!r}; one of {', '.join(TRANSFORMS)}"
        ) from exc
    return encode(transform(working_picture(sample), rng))

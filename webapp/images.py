"""The image a person gives the page, and a safe preview of it (decoding happens in the API)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageOps

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp"]
PREVIEW_SIDE = 280
# The preview only; the API applies its own limit (MAX_IMAGE_PIXELS) to what it decodes.
PREVIEW_MAX_PIXELS = 16_777_216


@dataclass(frozen=True)
class ImageInput:
    """Bytes to send as they are, where they came from, and their digest (their identity)."""

    data: bytes
    name: str
    media_type: str
    source: str  # "upload", "sample" or "drawing"
    sample_class: str | None = None  # a sample's class (its folder in data/samples/)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", hashlib.sha256(self.data).hexdigest())


def from_upload(name: str, media_type: str | None, data: bytes) -> ImageInput:
    return ImageInput(data, name or "upload", media_type or "application/octet-stream", "upload")


def from_drawing(png: bytes) -> ImageInput:
    return ImageInput(png, "drawing.png", "image/png", "drawing")


def from_sample(label: str, name: str, media_type: str, data: bytes) -> ImageInput:
    return ImageInput(data, name, media_type, "sample", sample_class=label)


def preview(data: bytes, side: int = PREVIEW_SIDE) -> Image.Image | None:
    """An RGB image at most `side` pixels a side, or None when the bytes cannot be shown.

    Small images (the 8x8 digits) are enlarged without smoothing so their pixels stay visible.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > PREVIEW_MAX_PIXELS:
                    return None
                upright = ImageOps.exif_transpose(image)
                upright.load()
                shown = _on_white(upright)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return None
    scale = side / max(shown.size)
    size = (max(1, round(shown.width * scale)), max(1, round(shown.height * scale)))
    if scale >= 1:
        return shown.resize(size, Image.Resampling.NEAREST)
    shown.thumbnail(size, Image.Resampling.LANCZOS)
    return shown


def grid_picture(
    grid: list[list[float]] | list[list[list[float]]], framing: str = "strokes", side: int = 140
) -> Image.Image:
    """The cells the model saw, each cell a visible square, as the API defines their values:
    colour cells ([red, green, blue]) as they are; grey cells of the "strokes" framing are ink
    (1: full ink), shown dark on white like the drawing; any other grey cell is brightness
    (0 black, 1 white), shown as it is."""
    import numpy as np

    values = np.asarray(grid, dtype=np.float32)
    if values.ndim == 3:
        colours = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        cells = Image.fromarray(colours, mode="RGB")
    else:
        brightness = 1.0 - values if framing == "strokes" else values
        levels = np.clip(np.rint(brightness * 255.0), 0, 255)
        cells = Image.fromarray(levels.astype(np.uint8), mode="L")
    return cells.resize((side, side), Image.Resampling.NEAREST).convert("RGB")


def drawing_has_ink(json_data: dict | None) -> bool:
    """The canvas holds at least one stroke or shape."""
    return bool(json_data and json_data.get("objects"))


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent parts shown on white, as a person expects to see them."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")

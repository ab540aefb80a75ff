"""Image bytes -> the normalised pixel vector the embedding expects.

This module is the only place an image is decoded, turned grey, cropped, resized and scaled.
The reference builder, the trainer, the serving API and feedback all call `preprocess`.

The framing reproduces how the digits dataset was made (UCI optdigits: the digit's bounding box
scaled to fill the frame, then each block's ink counted), so an image from the dataset comes back
unchanged while a small, off-centre or thin-stroked digit on a large canvas is brought to the same
framing:

1. decode (PNG, JPEG, BMP, GIF, WebP), refusing empty, unknown, corrupt or oversized input;
2. grey levels in [0, 1]; transparent pixels take the colour that contrasts with the ink;
3. polarity: a mostly light border means dark ink on a light background, which is inverted so
   that ink is bright on dark, like the dataset;
4. contrast: the border's lower quartile (the background) -> 0, full ink -> 1;
5. crop: a square window whose side is the ink bounding box's longer side, centred on the box
   (kept inside the picture where it fits when the digit spans the picture: its own frame;
   then a digit cut by the frame's left edge with room on its right is moved to the middle);
6. area-average (box filter) down to `size` x `size`;
7. faint strokes are brightened so the brightest cell reaches at least `min_peak`.

That is the "strokes" framing (IMAGE_FRAMING), made for ink on a plain background. The "whole"
framing is for everything else (photographs, textures): after step 1 the whole picture is
averaged down to the grid as it is, in grey or in colour (IMAGE_CHANNELS=3).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import ClassVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ctloop.util import InputError

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")


class ImageError(InputError):
    """Base class of every reason an image is refused."""

    code = "invalid_image"


class EmptyImageError(ImageError):
    code = "empty_image"


class NotAnImageError(ImageError):
    code = "not_an_image"


class CorruptImageError(ImageError):
    code = "corrupt_image"


class ImageTooLargeError(ImageError):
    code = "image_too_large"
    too_large = True


class BlankImageError(ImageError):
    code = "blank_image"


class ImageShapeError(ImageError):
    code = "image_shape"


# Checked on the header, before any pixel is decoded: every side, and the ratio of the sides
# (a 16,777,216 x 1 picture is within the pixel limit but costs seconds and hundreds of MB).
MAX_IMAGE_SIDE = 8192
MAX_ASPECT_RATIO = 16.0


@dataclass(frozen=True)
class PreprocessSpec:
    """Parameters of the preprocessing; stored in every model manifest."""

    size: int = 8
    ink_threshold: float = 0.25  # share of the peak above which a pixel counts for the bounding box
    min_peak: float = 0.875  # faintest peak in the digits dataset (14/16)
    min_contrast: float = 0.1  # below this the image is considered blank
    # Stroke width, as a share of the frame's side, measured on a grid `fine` times finer than
    # the output. Thinner than `stroke_min` (0: never) -> widened to `stroke_target`. The digits
    # dataset's strokes measure 0.125 to 0.24 (median 0.18): it is never widened.
    stroke_min: float = 0.11
    stroke_target: float = 0.17
    fine: int = 4
    # A digit smaller than the picture is centred in its window; False: the window is kept
    # inside the picture, as before (which put a digit near a canvas edge off-centre).
    centre: bool = True
    # A picture that looks thin-stroked is widened only if it still does with isolated specks
    # removed (a 3 x 3 majority on the fine grid): a dusty scan of a thick digit is not taken
    # for a thin pen and widened into blobs.
    despeckle: bool = True
    # A digit that spans its picture's height and is cut by its left edge (ink of at least
    # `recentre_left` times the peak in the first column), with two empty cells or more on its
    # right, is moved right by whole cells to the middle (a digit written off its guide). The
    # dataset's bitmaps leave their first column blank or faint (at most 4/16 where there is
    # room on the right), so none moves. 0: never moved, as before.
    recentre_left: float = 0.3
    # What the grid is made of. "strokes": steps 2 to 7 above, for ink on a plain background
    # (digits, letters, sketches). "whole": the whole picture averaged down to the grid as it is
    # (photographs, textures: no polarity, contrast, crop or blank check), in `channels` channels
    # (1: grey; 3: red, green, blue, each cell's three values side by side).
    framing: str = "strokes"
    channels: int = 1

    medium: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing {self.framing!r}: one of {', '.join(FRAMINGS)}")
        if self.channels not in (1, 3) or (self.channels == 3 and self.framing != "whole"):
            raise ValueError(f"channels {self.channels}: 1, or 3 with the 'whole' framing")

    @property
    def n_pixels(self) -> int:
        """Values per image: size x size cells of `channels` values each."""
        return self.size * self.size * self.channels

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(rows, columns, channels) of the grid the model sees."""
        return self.size, self.size, self.channels

    def to_dict(self) -> dict:
        return {"medium": self.medium, **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict) -> PreprocessSpec:
        """A spec from a manifest; a field the manifest predates takes its value from before
        that field existed (LEGACY), so an old model keeps the preprocessing it was trained with."""
        known = {key: values[key] for key in _names(cls) if key in values}
        return cls(**{**LEGACY, **known})


FRAMINGS = ("strokes", "whole")

# Fields added after the first release, with the value that reproduces the preprocessing from
# before them: a manifest without them was trained on strokes that were never widened.
LEGACY = {"stroke_min": 0.0, "centre": False, "despeckle": False, "recentre_left": 0.0}


DEFAULT_SPEC = PreprocessSpec()


def preprocess(
    data: bytes, spec: PreprocessSpec | None = None, max_pixels: int = 16_777_216
) -> np.ndarray:
    """Decode image bytes into a float32 vector of spec.size**2 values in [0, 1], ink bright."""
    return preprocess_image(open_image(data, max_pixels), spec)


def open_image(
    data: bytes,
    max_pixels: int = 16_777_216,
    max_side: int = MAX_IMAGE_SIDE,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> Image.Image:
    """Read and check the header only (format, size, shape): cheap, nothing decoded yet.

    Callers that must not block (the API) look at `image.width * image.height` to decide where to
    run `preprocess_image`, which does the decoding.
    """
    if not data:
        raise EmptyImageError("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"the image has too many pixels (limit {max_pixels:,})") from exc
    except UnidentifiedImageError as exc:
        claimed = _sniff_format(data)
        if claimed is not None:
            raise CorruptImageError(
                f"the data starts like a {claimed} file but is corrupt"
            ) from exc
        raise NotAnImageError(
            "the data is not an image in a supported format (PNG, JPEG, BMP, GIF, WebP)"
        ) from exc
    except Exception as exc:  # a header so broken that the format plugin itself fails
        raise CorruptImageError(f"the image header is corrupt ({exc})") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,}"
        )
    if width == 0 or height == 0:
        raise CorruptImageError(f"the image has no pixels ({width}x{height})")
    if max(width, height) > max_side:
        raise ImageTooLargeError(
            f"the image is {width}x{height}; no side may be longer than {max_side:,} pixels"
        )
    if max(width, height) > max_aspect * min(width, height):
        raise ImageShapeError(
            f"the image is {width}x{height}: its sides may differ by a factor of "
            f"{max_aspect:g} at most"
        )
    if image.format == "JPEG":
        _check_jpeg_length(image, data)
    return image


def decoded_pixels(image: Image.Image, spec: PreprocessSpec | None = None) -> int:
    """Pixels `preprocess_image` will decode from an image `open_image` returned: its header's,
    or fewer for a JPEG, which is decoded at a reduced scale (this sets that scale)."""
    _draft(image, spec or DEFAULT_SPEC)
    return image.width * image.height


# Start-of-frame markers of arithmetic-coded JPEGs, which can spend less than a bit on a block.
ARITHMETIC_SOF = (b"\xff\xc9", b"\xff\xca", b"\xff\xcb", b"\xff\xcd", b"\xff\xce", b"\xff\xcf")


def _check_jpeg_length(image: Image.Image, data: bytes) -> None:
    """A JPEG too short for the picture its header announces is refused before it is decoded.

    libjpeg fills a picture whose data ends early with grey and says so only in a warning that
    Pillow drops: 352 bytes announcing 4096 x 4096 pixels decode "fine". A Huffman-coded JPEG
    spends at least one bit on each 8 x 8 block of its full-resolution component (its DC
    coefficient's code), so fewer bytes than blocks / 8 cannot hold the picture.
    """
    if any(marker in data for marker in ARITHMETIC_SOF):
        return
    factors = [(h, v) for _, h, v, _ in getattr(image, "layer", None) or [(1, 1, 1, 0)]]
    most_h, most_v = max(h for h, _ in factors), max(v for _, v in factors)
    width, height = image.size
    blocks = max(
        _ceil_div(_ceil_div(width * h, most_h), 8) * _ceil_div(_ceil_div(height * v, most_v), 8)
        for h, v in factors
    )
    needed = _ceil_div(blocks, 8)
    if len(data) < needed:
        raise CorruptImageError(
            f"the JPEG's header says {width}x{height} pixels but the file holds {len(data):,} "
            f"bytes, fewer than the {needed:,} that many pixels need: its data is truncated or "
            "does not match its header"
        )


def preprocess_image(image: Image.Image, spec: PreprocessSpec | None = None) -> np.ndarray:
    """Steps 2 to 7 on an image returned by `open_image` (the "whole" framing: its own)."""
    spec = spec or DEFAULT_SPEC
    if spec.framing == "whole":
        return _whole(_decode(image, spec), spec)
    ink, peak = _normalise_contrast(_to_grey(_decode(image, spec)), spec)
    window = _ink_window(ink, peak, spec)
    if spec.stroke_min > 0:
        cells = _resample_with_stroke(ink, window, spec)
    else:
        cells = _resample(ink, window, spec.size)
    top = float(cells.max())
    if 0 < top < spec.min_peak:
        cells *= spec.min_peak / top
    np.minimum(cells, 1.0, out=cells)
    return cells.reshape(-1)


def _whole(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The whole picture averaged down to size x size cells (a box filter: each cell is the mean
    of the pixels it covers), grey or red-green-blue, values in [0, 1]; transparent areas are
    white. The picture is stretched to a square, as a notebook's resize does."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float grey
        grey = _to_grey(image)
        image = Image.fromarray((grey * 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("RGB" if spec.channels == 3 else "L")
    cells = image.resize((spec.size, spec.size), Image.Resampling.BOX)
    return np.asarray(cells, dtype=np.float32).reshape(-1) / 255.0


def preprocess_many(
    images: list[bytes], spec: PreprocessSpec | None = None, max_pixels: int = 16_777_216
) -> np.ndarray:
    """Stack `preprocess` over several images into an (n, size**2) float32 matrix."""
    spec = spec or PreprocessSpec()
    out = np.empty((len(images), spec.n_pixels), dtype=np.float32)
    for row, data in enumerate(images):
        out[row] = preprocess(data, spec, max_pixels)
    return out


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _draft(image: Image.Image, spec: PreprocessSpec) -> None:
    if image.format == "JPEG":
        # Decode large JPEGs at a reduced scale: the result is averaged down to a few cells anyway.
        # Pillow applies a draft once, before the image is loaded; a second call does nothing.
        image.draft(image.mode, (spec.size * 16, spec.size * 16))


def _decode(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    _draft(image, spec)
    try:
        image.load()
        if "exif" in image.info:  # phone photos carry their orientation in EXIF
            image = ImageOps.exif_transpose(image)
    except Exception as exc:  # truncated data, bad checksums, broken compression streams
        raise CorruptImageError(f"the image data is corrupt or truncated ({exc})") from exc
    return image


def _sniff_format(data: bytes) -> str | None:
    """The format a file's first bytes announce, to tell a corrupt image from something else."""
    signatures = {
        b"\x89PNG\r\n\x1a\n": "PNG",
        b"\xff\xd8\xff": "JPEG",
        b"GIF87a": "GIF",
        b"GIF89a": "GIF",
        b"BM": "BMP",
    }
    for signature, name in signatures.items():
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _to_grey(image: Image.Image) -> np.ndarray:
    """Grey levels: uint8 (0..255) for an opaque 8-bit picture, the common case, kept as is so
    that the next step converts once; float32 in [0, 1] otherwise. Transparent areas take the
    colour that contrasts with the ink."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = float(values.max())
        return values / top if top > 0 else values
    if not (image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info):
        if image.mode != "L":
            image = image.convert("L")
        return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(image.height, image.width)
    # alpha * luminance + (1 - alpha) * background, computed in place: a 4096 x 4096 RGBA picture
    # costs four float32 planes of 64 MB at most instead of eight (the same values, bit for bit).
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32)
    alpha /= 255.0
    coverage = float(alpha.sum())
    if coverage == 0:
        raise BlankImageError("the image is fully transparent")
    grey = np.asarray(rgba.convert("L"), dtype=np.float32)
    del rgba
    grey /= 255.0
    grey *= alpha
    ink_is_light = float(grey.sum()) / coverage > 0.5
    if not ink_is_light:  # the background is white: add (1 - alpha) * 1.0
        np.subtract(1.0, alpha, out=alpha)
        grey += alpha
    return grey


def _normalise_contrast(grey: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, float]:
    """(ink, its peak): background -> 0 and full ink -> 1, whatever the polarity of the picture."""
    full = 255.0 if grey.dtype == np.uint8 else 1.0
    border = np.concatenate((grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]))
    n = border.size
    quartiles = np.partition(border, (n // 4, n // 2, n - 1 - n // 4))
    lower, median, upper = (float(quartiles[i]) for i in (n // 4, n // 2, n - 1 - n // 4))
    # A mostly light border means dark ink on paper: measure ink downwards from the paper.
    # The background is the border's quartile on the background side, not its median: a digit
    # may touch much of a tight frame's border.
    if median > full / 2:
        ink, span = np.subtract(upper, grey, dtype=np.float32), upper
    else:
        ink, span = np.subtract(grey, lower, dtype=np.float32), full - lower
    if span > 0:
        ink *= 1.0 / span
    np.maximum(ink, 0.0, out=ink)
    peak = float(ink.max())
    if peak < spec.min_contrast:
        raise BlankImageError("the image is blank: no stroke stands out from the background")
    return ink, peak


def _ink_window(ink: np.ndarray, peak: float, spec: PreprocessSpec) -> tuple[float, float, float]:
    """(left, top, side) of the square crop around the ink, in pixel coordinates."""
    mask = ink > spec.ink_threshold * peak
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    side = float(max(bottom - top, right - left))
    height, width = ink.shape
    # A digit that spans the picture (a scan or a dataset image: the picture is its frame) is
    # framed by the picture where the window fits; a digit drawn somewhere on a larger canvas
    # is centred, wherever it is.
    framed = side >= min(height, width) or not spec.centre
    begin = _place(left, right, side, width, framed)
    cut_left = spec.recentre_left > 0 and float(ink[:, 0].max()) >= spec.recentre_left * peak
    if framed and cut_left and side >= height:
        begin -= _cells_to_centre(right, width, side / spec.size)
    return begin, _place(top, bottom, side, height, framed), side


def _cells_to_centre(right: int, width: int, cell: float) -> float:
    """Pixels to move a digit cut by the left edge (its ink ends at `right`) so that it
    sits in the middle, in whole cells (a cell keeps its sharp edges): 0 unless at least two
    cells are empty on its right."""
    return float(np.floor((width - right) / cell / 2.0)) * cell


def _place(start: int, stop: int, side: float, extent: int, keep_inside: bool) -> float:
    """Start of a `side` window centred on [start, stop), kept inside [0, extent) if asked
    and it fits."""
    begin = (start + stop - side) / 2.0
    if keep_inside and side <= extent:
        begin = min(max(begin, 0.0), extent - side)
    return begin


def _resample(ink: np.ndarray, window: tuple[float, float, float], size: int) -> np.ndarray:
    """Box-filter the square window down to size x size; outside the picture counts as 0."""
    left, top, side = window
    height, width = ink.shape
    return _box_weights(top, side, size, height) @ ink @ _box_weights(left, side, size, width).T


def _resample_with_stroke(
    ink: np.ndarray, window: tuple[float, float, float], spec: PreprocessSpec
) -> np.ndarray:
    """Step 6 for a digit drawn with a pen much finer than its size (a mouse on a large canvas;
    never a digit of the dataset): drawn again with the dataset's pen, the way its 32 x 32
    bitmaps were, then counted in blocks. Any other picture: plain step 6."""
    grid = spec.size * spec.fine
    fine = _resample(ink, window, grid)
    width = _stroke_width(fine)
    if width >= spec.stroke_min * grid or (
        spec.despeckle and _stroke_width(_majority3(fine)) >= spec.stroke_min * grid
    ):
        return _resample(ink, window, spec.size)
    grow = spec.stroke_target * grid - width  # fine pixels to add across the stroke
    # Shrink the digit inside the frame to leave room for the wider pen (on the fine grid,
    # which is cheap whatever the picture's size), then widen the strokes.
    margin = grow / 2.0 * grid / max(grid - grow, 1.0)
    fine = _dilate(_resample(fine, (-margin, -margin, grid + 2.0 * margin), grid), grow)
    return fine.reshape(spec.size, spec.fine, spec.size, spec.fine).mean(axis=(1, 3))


def _stroke_width(fine: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the ink's area over its outline's length (a stroke of
    width w and length L has area w*L and an outline about 2*L long); grey levels count."""
    down = fine[1:] - fine[:-1]
    across = fine[:, 1:] - fine[:, :-1]
    outline = float(np.abs(down, out=down).sum() + np.abs(across, out=across).sum())
    return 2.0 * float(fine.sum()) / outline if outline > 0 else float(fine.shape[0])


def _majority3(values: np.ndarray) -> np.ndarray:
    """Ink (1) where at least 5 of a pixel's 3 x 3 neighbourhood is ink (over half the peak),
    else 0: isolated specks vanish, strokes two pixels wide or more stay."""
    ink = (values > 0.5 * float(values.max())).astype(np.uint8)
    padded = np.pad(ink, 1)
    rows, cols = values.shape
    count = np.zeros(values.shape, np.uint8)
    for dy in range(3):
        for dx in range(3):
            count += padded[dy : dy + rows, dx : dx + cols]
    return (count >= 5).astype(np.float32)


def _dilate(fine: np.ndarray, grow: float) -> np.ndarray:
    """Grey dilation that widens strokes by about `grow` pixels: 3 x 3 steps of 2 pixels
    (square and cross in turn, so curves stay round), then a partial step for the rest."""
    steps, rest = divmod(max(grow, 0.0), 2.0)
    for step in range(int(steps)):
        fine = _max3(fine, square=step % 2 == 0)
    if rest > 0:
        fine = fine + (rest / 2.0) * (_max3(fine, square=int(steps) % 2 == 0) - fine)
    return fine


def _max3(values: np.ndarray, square: bool) -> np.ndarray:
    """Each pixel's maximum over its 3 x 3 neighbourhood (square) or its 4 neighbours (cross)."""
    padded = np.pad(values, 1)
    rows, cols = values.shape
    out = values.copy()
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        np.maximum(out, padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols], out=out)
    if square:
        for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            np.maximum(out, padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols], out=out)
    return out


# Weight matrices are cached up to this many floats each (at most 256 entries of 8 x 2,048, or
# 32 x 512 for the stroke grid: 16 MB); larger ones are computed per request, so no cache grows
# with what a client sends.
CACHED_ELEMENTS = 8 * 2048


def _box_weights(start: float, side: float, size: int, extent: int) -> np.ndarray:
    if size * extent <= CACHED_ELEMENTS:
        return _cached_box_weights(start, side, size, extent)
    return _compute_box_weights(start, side, size, extent)


@lru_cache(maxsize=256)
def _cached_box_weights(start: float, side: float, size: int, extent: int) -> np.ndarray:
    return _compute_box_weights(start, side, size, extent)


def _compute_box_weights(start: float, side: float, size: int, extent: int) -> np.ndarray:
    """(size, extent) weights of Pillow's BOX filter over [start, start + side).

    A pixel counts for an output cell when its centre falls in the cell (or, when enlarging, it
    is the nearest pixel), so a picture enlarged with NEAREST comes back exactly. Pixels beyond
    the picture count as background: they weigh in the average but are not in the matrix.
    """
    scale = side / size
    filter_scale = max(scale, 1.0)
    centres = start + (np.arange(size) + 0.5) * scale
    first = int(np.floor(min(start, 0.0))) - 1
    last = int(np.ceil(max(start + side, extent))) + 1
    pixels = np.arange(first, last) + 0.5
    offsets = (pixels[None, :] - centres[:, None]) / filter_scale
    weights = ((offsets > -0.5) & (offsets <= 0.5)).astype(np.float32)  # Pillow's box_filter
    weights /= weights.sum(axis=1, keepdims=True)
    inside = weights[:, -first : -first + extent]
    inside = np.ascontiguousarray(inside)
    inside.flags.writeable = False
    return inside


def _names(cls: type) -> list[str]:
    """The dataclass's fields (its ClassVar `medium` is not one)."""
    return [field.name for field in fields(cls)]

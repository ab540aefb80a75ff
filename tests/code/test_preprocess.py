"""The one preprocessing function: round trip, what people upload, and refusals."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps
from sklearn.datasets import load_digits

from ctloop.preprocess import (
    BlankImageError,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    PreprocessSpec,
    preprocess,
)
from harness.images import on_canvas
from pictures import encode, moved_sideways, render_grid

GREY_LEVEL = 1 / 16  # the digits dataset has 17 grey levels, 0..16


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_digits().data / 16.0


@pytest.mark.parametrize("side", [8, 28, 64, 300])
def test_every_digit_round_trips_within_one_grey_level(digits: np.ndarray, side: int) -> None:
    worst = 0.0
    for cells in digits:
        image = render_grid(cells).resize((side, side), Image.Resampling.NEAREST)
        worst = max(worst, float(np.abs(preprocess(encode(image)) - cells).max()))
    assert worst <= GREY_LEVEL, f"worst error {worst * 16:.2f} grey levels at {side} px"


def test_output_shape_type_and_range(digits: np.ndarray) -> None:
    vector = preprocess(encode(render_grid(digits[0], 4)))
    assert vector.shape == (64,)
    assert vector.dtype == np.float32
    assert vector.min() >= 0.0 and vector.max() <= 1.0


def test_size_follows_the_spec(digits: np.ndarray) -> None:
    assert preprocess(encode(render_grid(digits[0], 4)), PreprocessSpec(size=16)).shape == (256,)


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "LA", "RGBA", "1"])
def test_image_modes_give_the_same_vector(digits: np.ndarray, mode: str) -> None:
    image = render_grid(digits[5], 16)
    expected = preprocess(encode(image))
    converted = (
        image.convert(mode)
        if mode != "1"
        else image.point(lambda v: 255 if v > 127 else 0).convert("1")
    )
    got = preprocess(encode(converted))
    tolerance = 0.5 if mode == "1" else 2 / 255  # bilevel loses the grey levels, not the shape
    assert np.abs(got - expected).max() <= tolerance


def test_dark_on_light_equals_light_on_dark(digits: np.ndarray) -> None:
    for cells in digits[:50]:
        image = render_grid(cells, 8)
        assert np.allclose(
            preprocess(encode(ImageOps.invert(image))), preprocess(encode(image)), atol=1e-6
        )


def test_coloured_ink_on_coloured_paper(digits: np.ndarray) -> None:
    grey = render_grid(digits[7], 16)
    paper, ink = np.array([245, 240, 220]), np.array([20, 30, 120])  # blue pen on cream paper
    share = np.asarray(grey, dtype=np.float32)[..., None] / 255
    rgb = Image.fromarray((paper * (1 - share) + ink * share).astype(np.uint8))
    got, expected = preprocess(encode(rgb)), preprocess(encode(grey))
    # Same shape; a pen lighter than full black may come out up to 1/8 fainter (min_peak 0.875).
    assert np.abs(got / got.max() - expected / expected.max()).max() < 0.05
    assert got.max() >= PreprocessSpec().min_peak


@pytest.mark.parametrize("ink_colour", [(0, 0, 0), (255, 255, 255)])
def test_ink_on_a_transparent_background(
    digits: np.ndarray, ink_colour: tuple[int, int, int]
) -> None:
    """What a drawing canvas exports: strokes in alpha, the background fully transparent."""
    grey = render_grid(digits[3], 16)
    rgba = Image.new("RGBA", grey.size, (*ink_colour, 0))
    rgba.putalpha(grey)  # opacity = ink
    rgba = Image.merge("RGBA", (*[Image.new("L", grey.size, c) for c in ink_colour], grey))
    assert np.abs(preprocess(encode(rgba)) - preprocess(encode(grey))).max() <= 2 / 255


def test_a_small_digit_anywhere_on_a_large_canvas_gives_the_same_vector(digits: np.ndarray) -> None:
    for cells in digits[:30]:
        small = render_grid(cells, 4)  # a 32 px digit
        vectors = [
            preprocess(encode(on_canvas(small, (300, 300), at)))
            for at in [(134, 134), (20, 150), (240, 30)]
        ]
        for vector in vectors[1:]:
            assert np.abs(vector - vectors[0]).max() <= 1e-5
        # The dataset's frame: the digit's height fills the grid, its width stays centred.
        assert vectors[0].reshape(8, 8)[[0, -1]].max(axis=1).min() > 0.25


def test_a_small_digit_in_a_corner_keeps_its_shape(digits: np.ndarray) -> None:
    """In a corner the window stays inside the picture, so it may sit off-centre by a cell."""
    small = render_grid(digits[4], 4)
    centred = preprocess(encode(on_canvas(small, (300, 300), (134, 134))))
    corner = preprocess(encode(on_canvas(small, (300, 300), (0, 0))))
    best = min(
        np.abs(np.roll(corner.reshape(8, 8), shift, axis=1) - centred.reshape(8, 8)).max()
        for shift in (-1, 0, 1)
    )
    assert best <= GREY_LEVEL


def test_wide_image_with_the_digit_anywhere_along_it(digits: np.ndarray) -> None:
    small = render_grid(digits[9], 4)
    left = preprocess(encode(on_canvas(small, (200, 32), (40, 0))))
    right = preprocess(encode(on_canvas(small, (200, 32), (150, 0))))
    assert np.abs(left - right).max() <= 1e-5
    assert left.reshape(8, 8)[:, [0, -1]].max() < 0.1  # centred: empty side columns


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "GIF", "WEBP"])
def test_other_formats(digits: np.ndarray, fmt: str) -> None:
    image = render_grid(digits[11], 16)
    expected = preprocess(encode(image))
    save_args = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    got = preprocess(encode(image, fmt, **save_args))
    assert np.abs(got - expected).max() < 0.08  # lossy formats blur edges a little


def test_exif_orientation_is_applied(digits: np.ndarray) -> None:
    image = render_grid(digits[2], 8)
    rotated = image.rotate(90, expand=True)  # as a phone sensor stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    data = encode(rotated, "JPEG", quality=98, exif=exif.tobytes())
    assert np.abs(preprocess(data) - preprocess(encode(image))).max() < 0.1


# -- refusals -------------------------------------------------------------------------------


def test_empty_bytes() -> None:
    with pytest.raises(EmptyImageError, match="empty"):
        preprocess(b"")


def test_bytes_that_are_not_an_image() -> None:
    with pytest.raises(NotAnImageError, match="not an image"):
        preprocess(b"this is a text file, not a picture\n" * 10)


def test_unsupported_format_is_not_an_image(digits: np.ndarray) -> None:
    with pytest.raises(NotAnImageError):
        preprocess(encode(render_grid(digits[0], 4), "TIFF"))


def test_truncated_png(digits: np.ndarray) -> None:
    data = encode(render_grid(digits[0], 64))
    with pytest.raises(CorruptImageError, match="corrupt or truncated"):
        preprocess(data[: len(data) // 2])


def test_png_with_a_broken_checksum(digits: np.ndarray) -> None:
    data = bytearray(encode(render_grid(digits[0], 16)))
    data[40] ^= 0xFF  # inside the first chunk's data
    with pytest.raises(CorruptImageError, match="PNG"):
        preprocess(bytes(data))


def test_image_over_the_pixel_limit() -> None:
    data = encode(Image.new("L", (5000, 4000)))  # 20 Mpx of zeros compress to a few kB
    assert len(data) < 100_000
    with pytest.raises(ImageTooLargeError, match="20,000,000 pixels"):
        preprocess(data)


def test_decompression_bomb_header_is_refused_before_decoding() -> None:
    """A PNG that claims 60000x60000 pixels: refused from its header, nothing allocated."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageTooLargeError):
        preprocess(data)


def test_the_pixel_limit_is_a_parameter(digits: np.ndarray) -> None:
    with pytest.raises(ImageTooLargeError):
        preprocess(encode(render_grid(digits[0], 8)), max_pixels=1000)


@pytest.mark.parametrize("level", [0, 255, 128])
def test_blank_image(level: int) -> None:
    with pytest.raises(BlankImageError, match="blank"):
        preprocess(encode(Image.new("L", (64, 64), level)))


def test_every_refusal_is_one_typed_image_error() -> None:
    kinds = {
        EmptyImageError,
        NotAnImageError,
        CorruptImageError,
        ImageTooLargeError,
        BlankImageError,
    }
    assert all(issubclass(kind, ImageError) and issubclass(kind, ValueError) for kind in kinds)
    assert len({kind.code for kind in kinds}) == len(kinds)


def test_resampling_equals_pillows_box_filter_on_a_padded_picture() -> None:
    """The cached-matrix resampler is Pillow's BOX resize of the background-padded window."""
    from ctloop.preprocess import _resample

    rng = np.random.default_rng(0)
    for _ in range(300):
        height, width = rng.integers(3, 90, 2)
        ink = rng.random((height, width)).astype(np.float32)
        side = float(rng.integers(2, max(height, width) + 1))
        left = round(rng.uniform(-side / 2, width) * 2) / 2
        top = round(rng.uniform(-side / 2, height) * 2) / 2
        pad = int(np.ceil(side))
        box = (left + pad, top + pad, left + pad + side, top + pad + side)
        padded = Image.fromarray(np.pad(ink, pad))
        expected = np.asarray(padded.resize((8, 8), Image.Resampling.BOX, box=box))
        assert np.abs(_resample(ink, (left, top, side), 8) - expected).max() < 1e-6


def test_a_digit_cut_by_the_left_edge_is_moved_back_to_the_middle(digits: np.ndarray) -> None:
    """The traffic simulator's `shift`, leftwards: a dataset digit moved one cell left in its
    32 x 32 frame. Where its first column was blank (as the dataset leaves it) and two cells
    are empty on the right, the preprocessing moves it back: the original digit comes back.
    Without `recentre_left` (the preprocessing before it) none does."""
    moved_back = kept_where_it_was = total = 0
    for cells in digits:
        if cells.reshape(8, 8)[:, 0].max() > 0:
            continue
        data = encode(moved_sideways(render_grid(cells, 4), -4))
        total += 1
        moved_back += float(np.abs(preprocess(data) - cells).max()) <= GREY_LEVEL
        legacy = preprocess(data, PreprocessSpec(recentre_left=0.0))
        kept_where_it_was += float(np.abs(legacy - cells).max()) <= GREY_LEVEL
    assert total > 1700
    assert moved_back / total >= 0.5  # measured 0.57: the rest touch their right edge too
    assert kept_where_it_was == 0

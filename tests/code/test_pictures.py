"""Pictures of a digit: the rendering, the sideways shift and the encoder everyone shares."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from pictures import encode, moved_sideways, render_grid

DIGIT = load_digits().data[3] / 16.0


def test_each_cell_becomes_a_square_of_its_grey_level() -> None:
    picture = render_grid(DIGIT, 4)
    assert picture.mode == "L" and picture.size == (32, 32)
    values = np.asarray(picture)
    cells = values[::4, ::4]
    assert np.array_equal(cells, np.rint(DIGIT.reshape(8, 8) * 255))
    assert np.array_equal(values, np.kron(cells, np.ones((4, 4), dtype=np.uint8)))
    dark = np.asarray(render_grid(DIGIT, 4, dark_on_light=True))
    assert np.array_equal(dark, 255 - values)


def test_a_picture_moved_sideways_loses_what_leaves_the_frame() -> None:
    picture = render_grid(DIGIT, 4)
    values = np.asarray(picture)
    right, left = np.asarray(moved_sideways(picture, 4)), np.asarray(moved_sideways(picture, -4))
    assert np.array_equal(right[:, 4:], values[:, :-4]) and not right[:, :4].any()
    assert np.array_equal(left[:, :-4], values[:, 4:]) and not left[:, -4:].any()


def test_the_encoder_writes_a_file_that_decodes_to_the_same_pixels() -> None:
    picture = render_grid(DIGIT, 4)
    for fmt in ("PNG", "BMP", "GIF"):
        with Image.open(io.BytesIO(encode(picture, fmt))) as decoded:
            assert decoded.format == fmt
            assert np.array_equal(np.asarray(decoded.convert("L")), np.asarray(picture))
    assert encode(picture) == encode(picture, "PNG"), "PNG unless told otherwise"

"""The "whole" framing (IMAGE_FRAMING=whole): a picture averaged down as it is, grey or in colour,
for photographs and textures that the stroke framing would crop, invert or refuse as blank."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ctloop.preprocess import BlankImageError, PreprocessSpec, preprocess


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_each_cell_is_the_mean_of_the_pixels_it_covers() -> None:
    picture = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    cells = preprocess(png(picture), PreprocessSpec(size=8, framing="whole"))
    expected = picture.reshape(8, 4, 8, 4).mean(axis=(1, 3)).ravel() / 255.0
    np.testing.assert_allclose(cells, expected, atol=1 / 255)


def test_a_uniform_photo_is_kept_where_the_stroke_framing_refuses_it() -> None:
    grey = np.full((20, 20), 128, dtype=np.uint8)
    with pytest.raises(BlankImageError):
        preprocess(png(grey), PreprocessSpec(size=8))
    cells = preprocess(png(grey), PreprocessSpec(size=8, framing="whole"))
    np.testing.assert_allclose(cells, 128 / 255, atol=1e-6)


def test_colour_keeps_what_grey_loses() -> None:
    """Red and green of the same luminance: one grey, three distinct channels."""
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = 200
    green = np.zeros((16, 16, 3), dtype=np.uint8)
    green[..., 1] = round(200 * 0.299 / 0.587)
    grey = PreprocessSpec(size=4, framing="whole")
    colour = PreprocessSpec(size=4, framing="whole", channels=3)
    assert np.abs(preprocess(png(red), grey) - preprocess(png(green), grey)).max() <= 1 / 255
    cells = preprocess(png(red), colour).reshape(4, 4, 3)
    assert colour.n_pixels == 48 and cells.shape == (4, 4, 3)
    np.testing.assert_allclose(cells[..., 0], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(cells[..., 1:], 0, atol=1e-6)


def test_transparent_areas_are_white_and_16_bit_grey_is_read() -> None:
    clear = np.zeros((8, 8, 4), dtype=np.uint8)
    cells = preprocess(png(clear, "RGBA"), PreprocessSpec(size=4, framing="whole", channels=3))
    np.testing.assert_allclose(cells, 1.0)
    deep = np.full((8, 8), 40_000, dtype=np.uint16)
    deep[:4] = 0
    cells = preprocess(png(deep), PreprocessSpec(size=2, framing="whole")).reshape(2, 2)
    assert cells[0].max() == 0 and cells[1].min() == 1.0  # scaled by the picture's own peak


def test_a_spec_that_cannot_be_is_refused_and_old_manifests_keep_the_strokes() -> None:
    with pytest.raises(ValueError, match="channels 3"):
        PreprocessSpec(channels=3)  # colour needs the whole picture
    with pytest.raises(ValueError, match="framing"):
        PreprocessSpec(framing="crop")
    old = PreprocessSpec.from_dict({"size": 8})  # a manifest from before the framing
    assert (old.framing, old.channels, old.n_pixels) == ("strokes", 1, 64)

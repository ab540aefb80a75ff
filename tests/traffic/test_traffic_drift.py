"""The named drift transformations: real pictures, seeded, and different from the clean digit;
on any other dataset's pictures (grey or colour, any size), the same drifts at their own size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from ctloop.preprocess import PreprocessSpec, preprocess
from traffic.drift import TRANSFORMS, transformed_png

DIGIT = load_digits().data[3] / 16.0


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_transformation_gives_a_32_pixel_png_and_is_seeded(name: str) -> None:
    first = transformed_png(name, DIGIT, np.random.default_rng(5))
    again = transformed_png(name, DIGIT, np.random.default_rng(5))
    assert first == again
    picture = Image.open(io.BytesIO(first))
    assert picture.format == "PNG" and picture.size == (32, 32)


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS) - {"clean", "invert", "dark"}))
def test_each_drift_changes_what_the_model_sees(name: str) -> None:
    clean = preprocess(transformed_png("clean", DIGIT, np.random.default_rng(0)))
    drifted = preprocess(transformed_png(name, DIGIT, np.random.default_rng(0)))
    assert np.abs(drifted - clean).max() > 0.2


def test_inverted_colours_are_undone_by_the_preprocessing() -> None:
    clean = preprocess(transformed_png("clean", DIGIT, np.random.default_rng(0)))
    inverted = preprocess(transformed_png("invert", DIGIT, np.random.default_rng(0)))
    assert np.allclose(clean, inverted, atol=1e-6)
    darker = preprocess(transformed_png("dark", DIGIT, np.random.default_rng(0)))
    assert np.abs(darker - clean).max() < 0.1  # the stroke framing rescales the ink too


PHOTO = Image.fromarray(
    (np.random.default_rng(3).random((25, 25, 3)) * 200 + 30).astype(np.uint8), "RGB"
)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_other_pictures_keep_their_size_and_colour(name: str, mode: str) -> None:
    picture = PHOTO.convert(mode)
    first = transformed_png(name, picture, np.random.default_rng(5))
    assert first == transformed_png(name, picture, np.random.default_rng(5))
    out = Image.open(io.BytesIO(first))
    assert out.size == (25, 25) and out.mode == mode


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS) - {"clean"}))
def test_each_drift_changes_a_photograph_read_whole(name: str) -> None:
    spec = PreprocessSpec(size=16, framing="whole", channels=3)
    clean = preprocess(transformed_png("clean", PHOTO, np.random.default_rng(0)), spec)
    drifted = preprocess(transformed_png(name, PHOTO, np.random.default_rng(0)), spec)
    assert np.abs(drifted - clean).max() > 0.2, name


def test_an_unknown_transformation_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown transformation 'smudge'"):
        transformed_png("smudge", DIGIT, np.random.default_rng(0))

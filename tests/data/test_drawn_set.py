"""The drawn evaluation set kept in the repository (scripts/drawn/drawn-digits.json)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from drawn import CANVAS, SET_PATH, load_set, render, write_set


def test_several_hundred_digits_every_class_equally() -> None:
    digits = load_set()
    assert len(digits) == 400
    assert Counter(d.label for d in digits) == {str(c): 40 for c in range(10)}
    assert SET_PATH.stat().st_size < 250_000


def test_drawn_like_a_person_on_the_page() -> None:
    """Pens 12-22 px on a 280 x 280 canvas, the digit 55-85 % of it high, anywhere on it."""
    digits = load_set()
    assert {d.width for d in digits} == set(range(12, 23))
    for digit in digits:
        points = np.array([p for stroke in digit.strokes for p in stroke])
        assert points.min() >= 0 and points.max() < CANVAS
        assert 0.55 <= digit.height <= 0.85 and -10 <= digit.tilt <= 10
    centres = np.array([np.mean([p for s in d.strokes for p in s], axis=0) for d in digits])
    assert centres.min(axis=0).max() < 110 and centres.max(axis=0).min() > 170  # spread out
    assert len({d.style for d in digits if d.label == "1"}) >= 3  # several writers' shapes


def test_a_digit_renders_as_black_ink_on_white() -> None:
    picture = np.asarray(render(load_set()[0]))
    assert picture.shape == (CANVAS, CANVAS)
    assert picture.max() == 255 and picture.min() == 0
    assert 0.02 < (picture < 128).mean() < 0.25


def test_the_set_is_regenerated_byte_for_byte(tmp_path) -> None:
    again = tmp_path / "again.json"
    write_set(again)
    assert again.read_bytes() == SET_PATH.read_bytes()

"""A dusty scan of a thick digit is not taken for a thin pen: the traffic simulator's `noise`
drift (10 % of the pixels flipped) stays close to the clean digit after preprocessing."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from ctloop.preprocess import PreprocessSpec, preprocess
from traffic.drift import transformed_png


def mean_gap(spec: PreprocessSpec, count: int = 100) -> float:
    digits = load_digits()
    picked = np.random.default_rng(0).choice(len(digits.images), count, replace=False)
    gaps = []
    for index in picked:
        cells = digits.images[index] / 16.0
        clean = preprocess(transformed_png("clean", cells, np.random.default_rng(index)), spec)
        dusty = preprocess(transformed_png("noise", cells, np.random.default_rng(index)), spec)
        gaps.append(float(np.abs(clean - dusty).mean()))
    return float(np.mean(gaps))


def test_specks_do_not_trigger_the_wider_pen() -> None:
    # Measured: 0.060 with the check, 0.045 with no widening at all, 0.330 when specks made
    # every dusty digit look thin-stroked and it was widened into blobs.
    assert mean_gap(PreprocessSpec()) < 0.08
    assert mean_gap(PreprocessSpec(despeckle=False)) > 0.2  # what the check is for


def test_a_manifest_from_before_the_check_keeps_its_preprocessing() -> None:
    assert PreprocessSpec.from_dict({"stroke_min": 0.11}).despeckle is False
    assert PreprocessSpec.from_dict(PreprocessSpec().to_dict()).despeckle is True

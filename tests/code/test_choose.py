"""`ctloop init --explain`: the sweep over framing, grid, channels and embedding size, scored on
the reference part's training rows only, and the simplest candidate among the best."""

from __future__ import annotations

import pytest

from ctloop.choose import Candidate, explain, pick, sweep
from ctloop.config import CoreSettings
from harness.data import make_settings
from harness.datasets import colour, lfw

pytestmark = pytest.mark.slow


def test_the_digits_keep_todays_preprocessing(tmp_path) -> None:
    report = sweep(make_settings(tmp_path))  # DATASET=digits
    assert report["settings"] == (
        "IMAGE_FRAMING=strokes IMAGE_SIZE=8 IMAGE_CHANNELS=1 PCA_COMPONENTS=32"
    )
    sides = {row["size"] for row in report["candidates"]}
    assert sides == {8}  # no grid finer than the 8 x 8 images themselves
    assert "861 training and 288 validation rows" in explain(report)


def test_colour_is_chosen_where_only_colour_tells_the_classes_apart(tmp_path) -> None:
    settings = make_settings(tmp_path, dataset=colour(tmp_path / "datasets", per_class=40))
    report = sweep(settings)
    assert report["chosen"]["channels"] == 3 and report["chosen"]["framing"] == "whole"
    grey = [row["accuracy"] for row in report["candidates"] if row["channels"] == 1]
    colours = [row["accuracy"] for row in report["candidates"] if row["channels"] == 3]
    assert max(grey) < 0.6 and min(colours) >= 0.95, report["candidates"]
    assert "5-fold cross-validated" in explain(report)


def test_photographs_refuse_the_stroke_framing(tmp_path) -> None:
    settings: CoreSettings = make_settings(tmp_path, dataset=lfw(tmp_path / "datasets"))
    report = sweep(settings)
    strokes = [row for row in report["candidates"] if row["framing"] == "strokes"]
    assert strokes and all(row["accuracy"] is None for row in strokes)
    assert report["chosen"]["framing"] == "whole" and "refused" in explain(report)


def test_among_equals_the_simplest_wins() -> None:
    found = [
        Candidate("whole", 16, 3, 64),
        Candidate("whole", 8, 1, 32),
        Candidate("strokes", 16, 1, 64),
        Candidate("strokes", 8, 1, 32),
    ]
    chosen, why = pick(found, [0.95, 0.949, 0.945, 0.90])
    assert chosen == Candidate("strokes", 16, 1, 64), why  # within 0.01 of 0.95, the simplest
    chosen, _ = pick(found, [0.99, None, 0.97, None])
    assert chosen == Candidate("whole", 16, 3, 64)  # strokes 0.02 behind: not equal

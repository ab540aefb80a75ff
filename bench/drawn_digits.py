"""Drawn digits (issue 16): how the model reads digits drawn on the page's canvas.

    .venv/bin/python bench/drawn_digits.py             # the model `ctloop init` builds
    .venv/bin/python bench/drawn_digits.py --ablation  # + each remedy in turn, in memory
    .venv/bin/python bench/drawn_digits.py --dev       # + five other draws of the generator

Scores the drawn evaluation set kept in the repository (scripts/drawn/drawn-digits.json: 400
stroke-synthesised digits, 40 per class, pens 12-22 px on a 280 x 280 canvas) and the dataset's
held-out reference rows: accuracy, per class, expected calibration error (10 bins), median
confidence; then the drawn set by pen width, size and lean; and the preprocessing's cost per
image, before and after, measured in one run. Prints Markdown for docs/studies/drawn-digits.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ctloop.augment import AugmentConfig, augment_pixels
from ctloop.candidate import train_candidate
from ctloop.config import CoreSettings
from ctloop.dataset import load_dataset, load_samples, split_reference_unseen
from ctloop.embed import fit_embedding
from ctloop.evaluate import expected_calibration_error
from ctloop.head import HeadConfig, fit_head
from ctloop.predict import Embedding, load_model
from ctloop.preprocess import LEGACY, PreprocessSpec, preprocess, preprocess_many
from ctloop.reference import build_reference
from ctloop.registry import ModelRegistry
from ctloop.retrain_set import load_training_set
from ctloop.training_set import reference_holdout_mask
from drawn import load_set, render_png, synthesise_set

CLASSES = [str(digit) for digit in range(10)]
LEGACY_SPEC = PreprocessSpec.from_dict({})  # the preprocessing before issue 16
DEV_SEEDS = (1601, 2001, 2002, 2003, 2004)  # other draws of the generator, never kept
# The head before the ensemble: one network, lr 3e-3, at most 30 epochs, alpha 0.05.
ONE_MLP = HeadConfig(members=1, learning_rate=3e-3, epochs=30, alpha=0.05)
SVC = HeadConfig(kind="svc")


def score(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    predicted = np.array(CLASSES)[probabilities.argmax(axis=1)]
    right = predicted == labels
    return {
        "accuracy": float(right.mean()),
        "per_class": {c: float(right[labels == c].mean()) for c in CLASSES},
        "ece": expected_calibration_error(probabilities, labels, CLASSES),
        "median_confidence": float(np.median(probabilities.max(axis=1))),
        "right": right,
    }


def default_model(root: Path):
    """The first model exactly as `ctloop init` builds it, with the default settings."""
    settings = CoreSettings(data_dir=root / "data", artifacts_dir=root / "artifacts")
    started = time.perf_counter()
    build_reference(settings)
    outcome = train_candidate(settings, ModelRegistry(settings.artifacts_dir))
    model = load_model(ModelRegistry(settings.artifacts_dir).load())
    return settings, model, time.perf_counter() - started, outcome


def report_default(digits, pngs, dev: bool = False) -> None:
    labels = np.array([d.label for d in digits])
    with tempfile.TemporaryDirectory() as tmp:
        settings, model, seconds, outcome = default_model(Path(tmp))
        drawn = score(labels, model.predict_pixels(preprocess_many(pngs, model.spec))[2])
        others = {}
        for seed in DEV_SEEDS if dev else ():
            draw = synthesise_set(len(digits) // len(CLASSES), seed)
            pixels = preprocess_many([render_png(d) for d in draw], model.spec)
            others[seed] = score(np.array([d.label for d in draw]), model.predict_pixels(pixels)[2])
        training_set = load_training_set(settings)
        held = training_set.holdout
        holdout = score(
            training_set.targets[held], model.classifier(training_set.embeddings[held])[1]
        )
        samples = load_samples(settings.samples_dir)
        unseen = score(
            np.array(samples.labels),
            model.predict_pixels(preprocess_many(samples.images, model.spec))[2],
        )
    training = outcome.head.training
    print(f"## The default model (`ctloop init`: {seconds:.0f} s, {training['estimator']})\n")
    print(f"Trained on {training['rows']} rows ({training['augmented_rows']} augmented copies).\n")
    print("| Set | Rows | Accuracy | ECE | Median confidence |")
    print("|---|---:|---:|---:|---:|")
    for name, rows, result in (
        ("drawn digits", len(labels), drawn),
        ("held-out reference rows", int(held.sum()), holdout),
        ("unseen dataset images (data/samples)", len(samples.labels), unseen),
    ):
        print(
            f"| {name} | {rows} | {result['accuracy']:.3f} | {result['ece']:.3f} | "
            f"{result['median_confidence']:.3f} |"
        )
    print("\nDrawn digits, per class:\n")
    print("| " + " | ".join(CLASSES) + " |")
    print("|" + "---:|" * len(CLASSES))
    print("| " + " | ".join(f"{drawn['per_class'][c]:.2f}" for c in CLASSES) + " |")
    breakdown(digits, drawn["right"])
    if others:
        print("\nThe same model on other draws of the generator (not kept):\n")
        print("| Seed | Accuracy | ECE |")
        print("|---|---:|---:|")
        for seed, result in others.items():
            print(f"| {seed} | {result['accuracy']:.4f} | {result['ece']:.3f} |")


def breakdown(digits, right: np.ndarray) -> None:
    width = np.array([d.width for d in digits])
    height = np.array([d.height for d in digits])
    lean = np.array([np.degrees(np.arctan(d.slant)) + d.tilt for d in digits])
    print("\nDrawn digits by how they were drawn:\n")
    print("| Drawn with | Digits | Accuracy |")
    print("|---|---:|---:|")
    groups = [
        ("pen 12-15 px", (width >= 12) & (width <= 15)),
        ("pen 16-18 px", (width >= 16) & (width <= 18)),
        ("pen 19-22 px", width >= 19),
        ("55-65 % of the canvas high", height < 0.65),
        ("65-75 %", (height >= 0.65) & (height < 0.75)),
        ("75-85 %", height >= 0.75),
        ("leaning left (< -5 deg)", lean < -5),
        ("upright (-5 to 5 deg)", (lean >= -5) & (lean <= 5)),
        ("leaning right (> 5 deg)", lean > 5),
    ]
    for name, members in groups:
        print(f"| {name} | {int(members.sum())} | {right[members].mean():.3f} |")


def ablation(digits, pngs) -> None:
    """Each remedy added in turn, in memory (same split, held-out rows and seeds as ctloop)."""
    labels = np.array([d.label for d in digits])
    dataset = load_dataset("digits")
    reference, _ = split_reference_unseen(dataset.labels, 0.2, 42)
    ref_labels = np.array([dataset.labels[i] for i in reference])
    held = reference_holdout_mask(ref_labels, 0.2, 42)
    new, aug = PreprocessSpec(), AugmentConfig()
    copies = aug.reference_copies
    steps = [
        ("before: SVC, no augmentation", LEGACY_SPEC, SVC, 0, False),
        ("+ a drawn digit centred in its frame", replace(LEGACY_SPEC, centre=True), SVC, 0, False),
        ("+ thin strokes widened (the new preprocessing)", new, SVC, 0, False),
        ("+ reference augmented at training time", new, SVC, copies, False),
        ("+ embedding fitted on augmented reference too", new, SVC, copies, True),
        ("the same with one MLP (lr 3e-3, 30 epochs, alpha 0.05)", new, ONE_MLP, copies, True),
        ("the MLP head: 5 averaged (the default)", new, HeadConfig(), copies, True),
    ]
    print("\n## Each remedy in turn (in memory, one seed)\n")
    print("| Step | Drawn acc. | Drawn ECE | Worst class | Held-out acc. | Held-out ECE |")
    print("|---|---:|---:|---|---:|---:|")
    for name, spec, head_config, copies, embed_augmented in steps:
        pixels = preprocess_many([dataset.images[i] for i in reference], spec)
        fit_pixels, fit_labels = pixels[~held], ref_labels[~held]
        embed_pixels = pixels
        if embed_augmented:
            extra, _ = augment_pixels(pixels, ref_labels, aug.embedding_copies, aug, 1, spec)
            embed_pixels = np.vstack([pixels, extra])
        _, model = fit_embedding(embed_pixels, 32)
        embed = Embedding(model, threads=0)
        rows, targets = embed(fit_pixels), fit_labels
        if copies:
            extra, extra_labels = augment_pixels(fit_pixels, fit_labels, copies, aug, 0, spec)
            rows, targets = np.vstack([rows, embed(extra)]), np.concatenate([targets, extra_labels])
        head = fit_head(rows, targets, config=head_config)
        drawn = score(labels, head.predict_proba(embed(preprocess_many(pngs, spec))))
        holdout = score(ref_labels[held], head.predict_proba(embed(pixels[held])))
        worst = min(CLASSES, key=lambda c: drawn["per_class"][c])
        print(
            f"| {name} | {drawn['accuracy']:.3f} | {drawn['ece']:.3f} | "
            f"{worst}: {drawn['per_class'][worst]:.2f} | {holdout['accuracy']:.3f} | "
            f"{holdout['ece']:.3f} |"
        )


def timing(pngs) -> None:
    """Microseconds per image, the preprocessing before issue 16, before `recentre_left` and
    now, alternating in one run."""
    import io

    from PIL import Image

    sample = load_dataset("digits").images[3]
    digit = Image.open(io.BytesIO(sample)).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    digit.save(buffer, format="PNG")
    cases = [
        ("the benchmark's 28 x 28 PNG digit", buffer.getvalue()),
        ("a 280 x 280 drawing", pngs[0]),
    ]
    print("\n## Cost of the preprocessing per image (median of 7 runs of 300 calls)\n")
    print("| Image | Before issue 16 (us) | Before recentre_left (us) | Now (us) | Added (us) |")
    print("|---|---:|---:|---:|---:|")
    specs = {
        "legacy": LEGACY_SPEC,
        "before": replace(PreprocessSpec(), recentre_left=0.0),
        "after": PreprocessSpec(),
    }
    for name, data in cases:
        runs = {key: [] for key in specs}
        for _ in range(7):
            for key, spec in specs.items():
                started = time.perf_counter()
                for _ in range(300):
                    preprocess(data, spec)
                runs[key].append((time.perf_counter() - started) / 300 * 1e6)
        legacy, before, after = (statistics.median(runs[key]) for key in specs)
        print(f"| {name} | {legacy:.1f} | {before:.1f} | {after:.1f} | {after - before:+.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation", action="store_true", help="also each remedy on its own")
    parser.add_argument("--dev", action="store_true", help="also five other draws of the generator")
    args = parser.parse_args()
    digits = load_set()
    pngs = [render_png(digit) for digit in digits]
    print(f"Drawn set: {len(digits)} digits; legacy fields {sorted(LEGACY)}\n")
    report_default(digits, pngs, args.dev)
    if args.ablation:
        ablation(digits, pngs)
    timing(pngs)


if __name__ == "__main__":
    main()

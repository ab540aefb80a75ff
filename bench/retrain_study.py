"""Offline study of retraining under drift (issue 14): scratch vs fine-tune, with and without
augmentation, on the traffic simulator's scenario, without servers.

    .venv/bin/python bench/retrain_study.py                    # every variant, drift, seed
    .venv/bin/python bench/retrain_study.py --variants finetune-aug --drifts rotate --seeds 0

The scenario is `scripts/traffic`'s: the 360 unseen digits split once per seed into 100 for
evaluation (never fed back) and 260 for traffic; 3 clean windows of k = 20 feedback rows, then
10 windows of 20 rows through a drift (slant, rotate, shift, thick: `traffic.drift`); every 5th
production row is held out; after each window a challenger is trained and goes through the gate
as `ctloop.gate` defines it with the default settings (gate set: held-out reference rows + the
newest GATE_RECENT_ROWS held-out production rows; promoted if its score >= the champion's, no
class lost more than GATE_CLASS_TOLERANCE of recall on the held-out reference rows and their
accuracy fell no more than GATE_REFERENCE_TOLERANCE below the champion's and the first model's).
Images go through the one preprocessing and the stored embedding, as /feedback does. Prints
Markdown for docs/studies/retraining.md; --json writes every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.retrain_study_world import SVC_AUGMENT, Served, World, make_world
from ctloop.augment import Augmentation, AugmentConfig
from ctloop.candidate import version_files
from ctloop.gate import decide, gate_score, gate_set
from ctloop.head import HeadConfig
from ctloop.predict import Classifier
from ctloop.train import ExportMismatchError, train_head
from ctloop.training_set import TrainingSet, production_holdout_mask
from traffic.drift import transformed_png

DRIFTS = ["slant", "rotate", "shift", "thick"]
WINDOW, CLEAN_WINDOWS, DRIFT_WINDOWS, EVALUATION = 20, 3, 10, 100


@dataclass(frozen=True)
class Variant:
    name: str
    mode: str  # "scratch": reference + every production row; "finetune": window + replay
    head: HeadConfig
    augment: AugmentConfig | None
    replay_reference: int = 10  # reference rows replayed per window row (fine-tune)
    replay_production: int = 1  # older production rows replayed per window row (fine-tune)
    # GATE_REFERENCE_TOLERANCE (None: the setting's; 1: no reference rule); the reference floor
    # is the first model's held-out reference accuracy
    reference_tolerance: float | None = None


SVC = HeadConfig(kind="svc")
FULL_STEP = HeadConfig(finetune_interpolation=1.0)  # fine-tunes before FINETUNE_INTERPOLATION
HALF_STEP = HeadConfig(finetune_interpolation=0.5)
VARIANTS = {
    v.name: v
    for v in (
        Variant("scratch-svc", "scratch", SVC, None),
        Variant("scratch-svc-aug", "scratch", SVC, SVC_AUGMENT),
        Variant("scratch-mlp-aug", "scratch", HeadConfig(), AugmentConfig()),
        Variant("finetune", "finetune", HeadConfig(), None),
        Variant("finetune-aug", "finetune", HeadConfig(), AugmentConfig()),  # the defaults
        Variant("finetune-aug-full-step", "finetune", FULL_STEP, AugmentConfig()),
        Variant("finetune-aug-half-step", "finetune", HALF_STEP, AugmentConfig()),
        Variant(
            "finetune-aug-no-side-shift",
            "finetune",
            HeadConfig(),
            AugmentConfig(retrain_side_shift=0.0),
        ),
        Variant("finetune-aug-replay20", "finetune", HeadConfig(), AugmentConfig(), 20),
        # GATE_REFERENCE_TOLERANCE 0 and 0.01 (with the reference floor)
        *(
            Variant(
                f"{name}-ref{label}", "finetune", head, AugmentConfig(), reference_tolerance=tol
            )
            for name, head in (
                ("finetune-aug", HeadConfig()),
                ("finetune-aug-full-step", FULL_STEP),
                ("finetune-aug-half-step", HALF_STEP),
            )
            for label, tol in (("0", 0.0), ("01", 0.01))
        ),
    )
}


@dataclass
class Run:
    variant: str
    drift: str
    seed: int
    drifted: list[float] = field(default_factory=list)  # served model after each window
    before: tuple[float, float] = (0.0, 0.0)  # the first model: clean, drifted accuracy
    clean: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    promoted: int = 0
    rejected: int = 0
    failed: int = 0  # the export missed the parity tolerance: the retrain fails, nothing changes
    worse_promotions: int = 0  # promoted with a gate score below the champion's (must stay 0)
    reference_floor: float | None = None  # the first model's held-out reference accuracy


def simulate(world: World, variant: Variant, drift: str, seed: int) -> Run:
    """One scenario: 13 windows, a retrain after each, the served model scored after each."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(world.unseen_labels))
    evaluation, traffic = order[:EVALUATION], order[EVALUATION:]
    truth = world.unseen_labels[evaluation]
    clean_eval = world.embed_pngs(
        [transformed_png("clean", world.cells[i], rng) for i in evaluation]
    )
    drift_eval = world.embed_pngs([transformed_png(drift, world.cells[i], rng) for i in evaluation])
    served = world.initial[first_model(variant)]
    prod_embeddings = np.empty((0, world.n), np.float32)
    prod_targets = np.array([], dtype=str)
    run = Run(variant.name, drift, seed)
    run.before = (accuracy(served, clean_eval, truth), accuracy(served, drift_eval, truth))
    for number in range(CLEAN_WINDOWS + DRIFT_WINDOWS):
        phase = "clean" if number < CLEAN_WINDOWS else drift
        batch = traffic[number * WINDOW : (number + 1) * WINDOW]
        pngs = [transformed_png(phase, world.cells[i], rng) for i in batch]
        prod_embeddings = np.vstack([prod_embeddings, world.embed_pngs(pngs)])
        prod_targets = np.concatenate([prod_targets, world.unseen_labels[batch]])
        started = time.perf_counter()
        served = retrain(world, variant, served, prod_embeddings, prod_targets, seed, run)
        run.seconds.append(time.perf_counter() - started)
        run.clean.append(accuracy(served, clean_eval, truth))
        run.drifted.append(accuracy(served, drift_eval, truth))
    return run


def first_model(variant: Variant) -> str:
    """The first model a variant starts from: `ctloop init`'s for a fine-tune."""
    if variant.mode == "finetune" or variant.head.kind == "mlp":
        return "mlp"
    return "svc" if variant.augment else "svc-plain"


def retrain(world, variant, served, embeddings, targets, seed, run) -> Served:
    """Train a challenger on every production row so far, gate it, return the model served."""
    holdout = production_holdout_mask(
        np.arange(1, len(targets) + 1), world.settings.prod_holdout_every
    )
    everything = world.training_set(embeddings, targets, holdout)
    return retrain_set(world, variant, served, everything, seed + len(targets), run)


def retrain_set(world, variant, served, everything: TrainingSet, seed: int, run) -> Served:
    """Train a challenger (scratch: every row; fine-tune: window + replay), gate it against
    the served model on the same held-out rows, return the model served next."""
    if variant.mode == "scratch":
        training_set, base = everything, None
    else:
        training_set, base = fine_tune_set(world, variant, served, everything, seed), served
    augmentation = (
        Augmentation(world.embedding_model, variant.augment, seed, world.spec)
        if variant.augment
        else None
    )
    try:
        head = train_head(training_set, variant.head, base.files if base else None, augmentation)
    except ExportMismatchError:
        run.failed += 1
        return served
    gate = gate_set(everything, world.gate_recent_rows)
    challenger = gate_score(Classifier(head.model, head.classes)(gate.embeddings)[0], gate)
    champion = gate_score(served.classifier(gate.embeddings)[0], gate)
    if run.reference_floor is None:  # the first retrain's champion is the first model
        run.reference_floor = champion["reference_accuracy"]
    settings = world.settings
    decision, _ = decide(
        champion,
        challenger,
        "gate",
        settings.gate_tolerance,
        settings.gate_class_tolerance,
        reference_tolerance=(
            settings.gate_reference_tolerance
            if variant.reference_tolerance is None
            else variant.reference_tolerance
        ),
        reference_floor=run.reference_floor,
    )
    if decision != "promoted":
        run.rejected += 1
        return served
    run.promoted += 1
    run.worse_promotions += int(challenger["score"] < champion["score"])
    files = version_files(world.embedding_model, head.model, head.extra_files)
    rows = int(everything.is_prod.sum())
    return Served(files, head.classes, Classifier(head.model, head.classes), rows)


def fine_tune_set(world, variant, served, everything: TrainingSet, seed: int) -> TrainingSet:
    """The production rows since the served version (not held out), older production rows
    and reference rows replayed (bounded, seeded), and the held-out rows for the metrics."""
    rng = np.random.default_rng(seed)
    is_prod, holdout = everything.is_prod, everything.holdout
    prod_index = np.flatnonzero(is_prod)
    window = prod_index[served.rows :]
    window = window[~holdout[window]]
    older = prod_index[: served.rows]
    older = older[~holdout[older]]
    reference = np.flatnonzero(~is_prod & ~holdout)
    replay_prod = rng.choice(older, min(len(older), variant.replay_production * len(window)), False)
    replay_ref = stratified(
        rng, reference, everything.targets[reference], variant.replay_reference * len(window)
    )
    chosen = np.concatenate([window, replay_prod, replay_ref, np.flatnonzero(holdout)])
    return TrainingSet(
        everything.embeddings[chosen],
        everything.targets[chosen],
        is_prod[chosen],
        holdout[chosen],
        everything.weights[chosen],
    )


def stratified(rng, indices: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    """`size` indices with every class as evenly as possible (every class at least once)."""
    classes = np.unique(labels)
    per_class = max(1, size // len(classes))
    picked = [
        rng.choice(indices[labels == c], min(per_class, int((labels == c).sum())), False)
        for c in classes
    ]
    return np.concatenate(picked)


def accuracy(served: Served, embeddings: np.ndarray, truth: np.ndarray) -> float:
    return float((served.classifier(embeddings)[0] == truth).mean())


def report(runs: list[Run], costs: list[dict]) -> None:
    print(
        "| Variant | "
        + " | ".join(DRIFTS)
        + " | clean (lowest) | s / retrain | promoted / rejected |"
    )
    print("|---|" + "---:|" * (len(DRIFTS) + 3))
    for name in dict.fromkeys(run.variant for run in runs):
        mine = [run for run in runs if run.variant == name]
        cells = []
        for drift in DRIFTS:
            values = [run.drifted[-1] for run in mine if run.drift == drift]
            cells.append(f"{np.mean(values):.3f} (min {min(values):.2f})" if values else "n/a")
        lowest_clean = min(min(run.clean) for run in mine)
        seconds = statistics.median(s for run in mine for s in run.seconds)
        promoted = sum(run.promoted for run in mine)
        rejected = sum(run.rejected for run in mine)
        failed = sum(run.failed for run in mine)
        worse = sum(run.worse_promotions for run in mine)
        print(
            f"| {name} | " + " | ".join(cells) + f" | {lowest_clean:.2f} | {seconds:.2f} | "
            f"{promoted} / {rejected}{f' / {failed} failed' if failed else ''}"
            f"{' (' + str(worse) + ' worse!)' if worse else ''} |"
        )
    if costs:
        print("\nOne retrain at N production rows (seconds):\n")
        print(
            "| Variant | "
            + " | ".join(f"{size:,} rows" for size in sorted({c["rows"] for c in costs}))
            + " |"
        )
        print("|---|" + "---:|" * len({c["rows"] for c in costs}))
        for name in dict.fromkeys(c["variant"] for c in costs):
            values = [c["seconds"] for c in costs if c["variant"] == name]
            print(
                f"| {name} | "
                + " | ".join("not run" if v is None else f"{v:.2f}" for v in values)
                + " |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="scratch-svc,scratch-svc-aug,finetune,finetune-aug")
    parser.add_argument("--drifts", default=",".join(DRIFTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-cost", action="store_true", help="skip the 1,000 vs 100,000 rows")
    parser.add_argument(
        "--legacy",
        action="store_true",
        help="the reference as built before issue 16 (old preprocessing, PCA on the images only)",
    )
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="ctloop-retrain-study-") as tmp:
        started = time.perf_counter()
        names = args.variants.split(",")
        world = make_world(
            Path(tmp), args.legacy, tuple({first_model(VARIANTS[name]) for name in names})
        )
        print(f"reference and first models built in {time.perf_counter() - started:.0f} s")
        for name in names:
            for drift in args.drifts.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    run = simulate(world, VARIANTS[name], drift, seed)
                    runs.append(run)
                    print(
                        f"{name:16} {drift:7} seed {seed}: first model {run.before[0]:.2f} clean, "
                        f"{run.before[1]:.2f} drifted; after: drifted {run.drifted[-1]:.2f}, "
                        f"clean {run.clean[-1]:.2f} (lowest {min(run.clean):.2f}), "
                        f"{statistics.median(run.seconds):.2f} s/retrain, "
                        f"{run.promoted} promoted / {run.rejected} rejected / {run.failed} failed",
                        flush=True,
                    )
        from bench.retrain_study_cost import cost_at_scale

        costs = [] if args.no_cost else cost_at_scale(world, Path(tmp))
    print()
    report(runs, costs)
    if args.json:
        args.json.write_text(
            json.dumps({"runs": [run.__dict__ for run in runs], "costs": costs}, indent=1)
        )


if __name__ == "__main__":
    main()

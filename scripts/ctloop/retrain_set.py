"""What a retrain starts from and which rows it reads: bounded, whatever prod_data.csv's size.

RETRAIN_MODE:
- `finetune` (the default): the served version's head (its `head.json`) trained a few more
  epochs on the window, the production rows since that version (at most FINETUNE_WINDOW_ROWS,
  the newest), plus a replay sample: FINETUNE_REPLAY_PRODUCTION older production rows and
  FINETUNE_REPLAY_REFERENCE reference rows (stratified by class) per window row;
- `scratch`: a new head fitted on every reference row and the production rows read.

Every retrain reads only the newest RETRAIN_READ_ROWS production rows (from the end of the
file: `ProductionData.read_rows`): the window, the replay pool, the gate's held-out rows. So a
retrain at 100,000 rows reads and trains on as much as one at 1,000.

In `finetune` mode a full rebuild still runs every SCRATCH_EVERY fine-tunes (and on demand:
`ctloop train --with-prod --scratch`), and competes through the same gate, so a chain of
fine-tunes cannot drift away unnoticed. A version that cannot be fine-tuned on these rows (an
SVC head, no head.json, another embedding or preprocessing) is rebuilt from scratch instead;
every choice says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ctloop.config import CoreSettings
from ctloop.head import HEAD_FILE
from ctloop.prod_data import open_production
from ctloop.reference import embedding_mismatch, read_reference
from ctloop.registry import ModelRegistry, RegistryError
from ctloop.training_set import (
    TrainingSet,
    production_holdout_mask,
    reference_holdout_mask,
    row_weights,
)

log = logging.getLogger("ctloop.retrain_set")

MODES = ("finetune", "scratch")


@dataclass(frozen=True)
class RetrainBase:
    """How a retrain starts: from the served version's weights, or from nothing, and why."""

    mode: str  # "finetune" or "scratch"
    why: str
    version: str | None = None  # the version fine-tuned
    periodic: bool = False  # the periodic full rebuild (which gives way to a burst of feedback)
    files: dict[str, bytes] | None = field(default=None, repr=False)
    since: int = 0  # production rows that version had covered (its production_through)


def choose_base(
    settings: CoreSettings,
    registry: ModelRegistry,
    embedding_info: dict,
    production_rows: int,
    finetunes_since_scratch: int = 0,
    scratch: bool = False,
    behind: int = 0,
    deferred: bool = False,
) -> RetrainBase:
    """Fine-tune the served version unless something says scratch; the reason either way.

    The periodic full rebuild waits while the trainer is behind (`behind`: older triggers this
    retrain supersedes) or right after one gave way (`deferred`): a burst of feedback is covered
    by fine-tunes of seconds, and the rebuild runs once the trainer has caught up."""
    if scratch:
        return RetrainBase("scratch", "a full rebuild was asked for")
    if production_rows == 0:
        return RetrainBase("scratch", "no production rows: a head on the reference alone")
    if settings.retrain_mode == "scratch":
        return RetrainBase("scratch", "RETRAIN_MODE is scratch")
    if settings.head_model != "mlp":
        return RetrainBase("scratch", f"a {settings.head_model} head is fitted from scratch")
    served = registry.current_version()
    if served is None:
        return RetrainBase("scratch", "no version is served yet")
    waiting = ""
    if settings.scratch_every and finetunes_since_scratch >= settings.scratch_every:
        rebuild = (
            f"the periodic full rebuild: {finetunes_since_scratch} fine-tunes since the last "
            f"(SCRATCH_EVERY {settings.scratch_every})"
        )
        if not behind and not deferred:
            return RetrainBase("scratch", rebuild, periodic=True)
        waiting = (
            f"; {rebuild} waits until the trainer has caught up ("
            + (f"{behind} older triggers superseded" if behind else "the last one gave way")
            + ")"
        )
    try:
        loaded = registry.load(served)
    except (RegistryError, OSError, ValueError) as exc:
        return RetrainBase("scratch", f"the served version {served} cannot be read: {exc}")
    manifest, files = loaded.manifest, loaded.files
    mismatch = embedding_mismatch(manifest, embedding_info)
    if mismatch:
        return RetrainBase(
            "scratch", f"the served version {served} was trained on other rows: {mismatch}"
        )
    if HEAD_FILE not in files:
        return RetrainBase(
            "scratch", f"the served version {served} has no {HEAD_FILE} to start from"
        )
    return RetrainBase(
        "finetune",
        f"fine-tuning the served version {served}{waiting}",
        version=served,
        files=files,
        since=production_through(manifest),
    )


def production_through(manifest: dict) -> int:
    """The production rows a version had covered: trained on or replaced by its window."""
    training = manifest.get("training") or {}
    if isinstance(training.get("production_through"), int):
        return training["production_through"]
    return int((manifest.get("retrain") or {}).get("trigger_rows") or 0)


def read_training_set(
    settings: CoreSettings, production_rows: int, base: RetrainBase, seed: int = 0
) -> tuple[TrainingSet, dict]:
    """The rows a retrain trains and is measured on, and what they are (for its manifest).

    Held-out rows (the reference's share and every PROD_HOLDOUT_EVERY-th production row read)
    are always included: they are measured on, never trained on.
    """
    reference = read_reference(settings.ref_data_path)
    n_components = reference.embeddings.shape[1]
    first = max(production_rows - settings.retrain_read_rows + 1, 1)
    production = open_production(settings, n_components).read_rows(first, production_rows)
    known = np.isin(production.targets, reference.targets)
    if not known.all():  # only a hand edit writes one (/feedback checks the class)
        log.warning(
            "skipping %d rows of %s whose classes %s are not in the reference",
            int((~known).sum()),
            settings.prod_data_path,
            sorted(set(production.targets[~known].tolist())),
        )
        production = production.take(known)
    ref_held = reference_holdout_mask(
        reference.targets, settings.holdout_fraction, settings.split_seed
    )
    numbers = np.asarray(production.row_numbers)
    prod_held = production_holdout_mask(numbers, settings.prod_holdout_every)
    scope = {
        "mode": base.mode,
        "mode_reason": base.why,
        "base_version": base.version,
        "production_read": [int(numbers[0]), int(numbers[-1])] if len(numbers) else None,
        "production_through": int(production_rows),
    }
    if base.mode == "scratch":
        ref_rows, prod_rows = np.arange(len(reference)), np.arange(len(production))
    else:
        rng = np.random.default_rng(seed)
        trainable = np.flatnonzero(~prod_held)
        window = trainable[numbers[trainable] > base.since][-settings.finetune_window_rows :]
        older = trainable[numbers[trainable] <= base.since]
        replay = rng.choice(
            older,
            min(len(older), round(settings.finetune_replay_production * len(window))),
            replace=False,
        )
        pool = np.flatnonzero(~ref_held)
        ref_replay = stratified(
            rng,
            pool,
            reference.targets[pool],
            round(settings.finetune_replay_reference * max(len(window), 1)),
        )
        ref_rows = np.sort(np.concatenate([ref_replay, np.flatnonzero(ref_held)]))
        prod_rows = np.sort(np.concatenate([window, replay, np.flatnonzero(prod_held)]))
        scope |= {
            "window": _span(numbers[window]),
            "window_rows": len(window),
            "replay_production_rows": len(replay),
            "replay_reference_rows": len(ref_replay),
        }
    is_prod = np.concatenate([np.zeros(len(ref_rows), bool), np.ones(len(prod_rows), bool)])
    training_set = TrainingSet(
        np.concatenate([reference.embeddings[ref_rows], production.embeddings[prod_rows]]),
        np.concatenate([reference.targets[ref_rows], production.targets[prod_rows]]).astype(str),
        is_prod,
        np.concatenate([ref_held[ref_rows], prod_held[prod_rows]]),
        row_weights(is_prod, settings.prod_weight),
    )
    return training_set, scope


def stratified(
    rng: np.random.Generator, indices: np.ndarray, labels: np.ndarray, size: int
) -> np.ndarray:
    """About `size` of `indices`, every class as evenly as its rows allow (at least one each)."""
    classes = np.unique(labels)
    per_class = max(1, size // max(len(classes), 1))
    picked = [
        rng.choice(indices[labels == c], min(per_class, int((labels == c).sum())), replace=False)
        for c in classes
    ]
    return np.concatenate(picked) if picked else np.array([], dtype=int)


def _span(numbers: np.ndarray) -> list[int] | None:
    return [int(numbers.min()), int(numbers.max())] if len(numbers) else None


def load_training_set(settings: CoreSettings, prod_rows: int = 0) -> TrainingSet:
    """Reference rows (+ the production rows up to `prod_rows`, at most RETRAIN_READ_ROWS of
    the newest) with their held-out flags: what a scratch retrain trains on."""
    return read_training_set(settings, prod_rows, RetrainBase("scratch", "all rows"))[0]

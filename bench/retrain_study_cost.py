"""bench/retrain_study.py's cost figure: one retrain when prod_data.csv holds 1,000 or 100,000
rows, reading the file included."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench.retrain_study import VARIANTS, WINDOW, Run, Variant, first_model, retrain_set
from bench.retrain_study_world import Served, World
from ctloop.prod_data import ProductionData
from ctloop.tables import embedding_row, format_row, prod_header
from ctloop.training_set import production_holdout_mask

TAIL = 1_000  # production rows a fine-tune reads: its window, the replay pool, the gate's rows


def cost_at_scale(world: World, tmp: Path, sizes=(1_000, 100_000)) -> list[dict]:
    """Seconds of one retrain when prod_data.csv holds N rows, reading included: a fine-tune
    reads the newest TAIL rows (`ProductionData.tail`, from the end of the file) and trains on
    its window + replay; a scratch SVC reads and trains on every row (run up to 5,000)."""
    rng = np.random.default_rng(0)
    results = []
    for size in sizes:
        path = tmp / f"prod-{size}.csv"
        source = rng.integers(0, len(world.ref_targets), size)
        noise = rng.normal(0, 0.05, (size, world.n)).astype(np.float32)
        lines = [format_row(prod_header(world.n))]
        lines += [
            embedding_row(row, [target, target, "v0001", "2026-01-01T00:00:00Z", f"r{i}", ""])
            for i, (row, target) in enumerate(
                zip(world.ref_embeddings[source] + noise, world.ref_targets[source], strict=True)
            )
        ]
        path.write_bytes(b"".join(lines))
        for name in ("finetune", "finetune-aug", "scratch-svc"):
            variant = VARIANTS[name]
            if variant.mode == "scratch" and size > 5_000:
                results.append({"variant": name, "rows": size, "seconds": None})
                continue
            started = time.perf_counter()
            store = ProductionData(path, world.n)
            table = store.read_rows() if variant.mode == "scratch" else store.tail(TAIL)
            served = world.initial[first_model(variant)]
            served = Served(served.files, served.classes, served.classifier, len(table) - WINDOW)
            retrain_rows(world, variant, served, table, Run(name, "none", 0))
            results.append(
                {"variant": name, "rows": size, "seconds": time.perf_counter() - started}
            )
    return results


def retrain_rows(world: World, variant: Variant, served: Served, table, run: Run) -> None:
    """`retrain` on rows read from prod_data.csv, with the held-out flags of their numbers."""
    holdout = production_holdout_mask(table.row_numbers, world.settings.prod_holdout_every)
    everything = world.training_set(table.embeddings, table.targets.astype(str), holdout)
    retrain_set(world, variant, served, everything, 0, run)

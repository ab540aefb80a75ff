"""A stack's trainer kept busy: feedback rows appended k at a time, each batch once the trainer
has started on the last, so that `ctloop retrain` (the one the server launches) trains back to
back with one more retrain always due, and none is superseded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ctloop.dataset import load_samples
from ctloop.predict import load_model
from ctloop.preprocess import preprocess_many
from ctloop.prod_data import ProductionData, ProductionRow
from ctloop.registry import ModelRegistry
from ctloop.retrain_log import RetrainLog


class FeedbackRows:
    """Real feedback rows (the unseen images, embedded by the served model, true classes),
    appended to prod_data.csv through its owner, cycling through the images; `total` counts the
    rows on disk."""

    def __init__(self, data: Path, artifacts: Path) -> None:
        model = load_model(ModelRegistry(artifacts).load())
        samples = load_samples(data / "samples")
        pixels = preprocess_many(samples.inputs, model.spec)  # the served model's preprocessing
        self.embeddings, self.served, _ = model.predict_pixels(pixels)
        self.labels, self.version = samples.labels, model.version
        self.store = ProductionData(data / "prod_data.csv", self.embeddings.shape[1])
        self.total = self.store.count_rows_on_disk()

    def append(self, count: int) -> None:
        for _ in range(count):
            i = self.total % len(self.labels)
            row = ProductionRow(
                self.embeddings[i], self.labels[i], str(self.served[i]), self.version,
                f"bench-{self.total}",
            )  # fmt: skip
            self.store.append(row)
            self.total += 1


class Feeder:
    """While running, keeps exactly one more retrain due than the trainer has started on (on a
    workspace whose feedback rows, if any, are a multiple of `every`)."""

    def __init__(self, data: Path, artifacts: Path, every: int) -> None:
        self.rows = FeedbackRows(data, artifacts)
        self.ledger = RetrainLog(artifacts / "retrains.jsonl")
        self.every, self.first = every, self.rows.total + every
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._feed, name="feeder", daemon=True)

    def _started(self, trigger_rows: int) -> bool:
        """A trainer has logged an attempt at (or decided) this trigger."""
        return any(entry.get("trigger_rows") == trigger_rows for entry in self.ledger.entries())

    def _feed(self) -> None:
        while not self.stopped.is_set():
            if self.rows.total < self.first or self._started(self.rows.total):
                self.rows.append(self.every)
            time.sleep(0.05)

    def wait_for_training(self, timeout: float = 120) -> None:
        """Until the first retrain is under way (the trainer started and past its imports)."""
        deadline = time.monotonic() + timeout
        while not self._started(self.first):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no retrain started within {timeout:g} s")
            time.sleep(0.05)

    def wait_until_decided(self, timeout: float = 300) -> None:
        """Until every trigger fed has a decision (after stop)."""
        deadline = time.monotonic() + timeout
        while self.ledger.last_decided_trigger() < self.rows.total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.rows.total} rows not decided within {timeout:g} s")
            time.sleep(0.1)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

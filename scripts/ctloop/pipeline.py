"""Train a head on the current data, register it as a version, and decide whether it is served."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.registry import ModelRegistry
from ctloop.train import TrainedHead, library_versions, load_training_set, train_head


@dataclass(frozen=True)
class TrainingOutcome:
    version: str
    promoted: bool
    head: TrainedHead
    seconds: float
    decision: dict | None = None


def train_and_register(
    settings: CoreSettings,
    registry: ModelRegistry,
    include_prod: bool = False,
    prod_limit: int | None = None,
    promote: bool = True,
) -> TrainingOutcome:
    """Fit a head on ref (+ prod) rows, store it with the stored embedding, promote if asked."""
    started = time.perf_counter()
    embedding = load_embedding(settings.embedding_dir)
    training_set = load_training_set(settings, include_prod=include_prod, prod_limit=prod_limit)
    head = train_head(training_set)
    version = registry.register(
        files={"embedding.onnx": embedding.model, "classifier.onnx": head.model},
        manifest=build_manifest(head, embedding.info),
    )
    if promote:
        registry.promote(
            version, reason="initial model" if registry.current_version() is None else "train"
        )
    return TrainingOutcome(version, promote, head, time.perf_counter() - started)


def build_manifest(head: TrainedHead, embedding_info: dict, gate: dict | None = None) -> dict:
    """Everything about a version except the fields the registry adds (id, parent, time, files)."""
    return {
        "classes": head.classes,
        "metrics": head.metrics,
        "training": head.training,
        "preprocessing": embedding_info["preprocessing"],
        "embedding": {
            "sha256": embedding_info["sha256"],
            "n_components": embedding_info["n_components"],
            "dataset": embedding_info["dataset"],
            "dataset_fingerprint": embedding_info["dataset_fingerprint"],
            "ref_data_sha256": embedding_info["ref_data_sha256"],
        },
        "libraries": library_versions(),
        "gate": gate,
    }

"""Train a head on the current data, register it as a version, and decide whether it is served."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.export import pipeline_to_onnx
from ctloop.predict import (
    EMBEDDING_INPUT,
    EMBEDDING_OUTPUT,
    PIXELS_INPUT,
    PROBABILITIES_OUTPUT,
    Embedding,
    make_session,
)
from ctloop.registry import ModelRegistry
from ctloop.train import (
    ExportMismatchError,
    TrainedHead,
    library_versions,
    load_training_set,
    train_head,
)


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
        files=version_files(embedding.model, head.model),
        manifest=build_manifest(head, embedding.info),
    )
    if promote:
        registry.promote(
            version, reason="initial model" if registry.current_version() is None else "train"
        )
    return TrainingOutcome(version, promote, head, time.perf_counter() - started)


def version_files(embedding: bytes, head: bytes) -> dict[str, bytes]:
    """A version's ONNX files: the embedding, the head, and both merged into one serving graph
    (checked to give the same embeddings and probabilities as the two run one after the other)."""
    pipeline = pipeline_to_onnx(embedding, head)
    probe = np.random.default_rng(0).random((8, Embedding(embedding).n_pixels), dtype=np.float32)
    separate = Embedding(embedding)(probe)
    merged_embedding, merged_probabilities = make_session(pipeline).run(
        [EMBEDDING_OUTPUT, PROBABILITIES_OUTPUT], {PIXELS_INPUT: probe}
    )
    separate_probabilities = make_session(head).run(
        [PROBABILITIES_OUTPUT], {EMBEDDING_INPUT: separate}
    )[0]
    if not (
        np.allclose(merged_embedding, separate, atol=1e-6)
        and np.allclose(merged_probabilities, separate_probabilities, atol=1e-6)
    ):
        raise ExportMismatchError("the merged pipeline.onnx differs from embedding + classifier")
    return {"embedding.onnx": embedding, "classifier.onnx": head, "pipeline.onnx": pipeline}


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

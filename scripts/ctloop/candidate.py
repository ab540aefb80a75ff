"""A candidate model version: train -> gate -> register -> promote if it passes.

The one sequence that makes every version: the first model (`ctloop init`, `ctloop train`), a
manual retrain (`ctloop train --with-prod`) and every automatic retrain (`ctloop.trainer`). The
candidate is scored on the gate set beside the served champion (when both live in the same
embedding space); the registry keeps it whatever the decision, with both scores in its manifest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ctloop.augment import Augmentation
from ctloop.config import CoreSettings
from ctloop.embed import StoredEmbedding, load_embedding
from ctloop.export import pipeline_to_onnx
from ctloop.gate import RULE, GateSet, decide, gate_score, gate_set
from ctloop.head import HeadConfig
from ctloop.media import IMAGE
from ctloop.predict import (
    EMBEDDING_INPUT,
    EMBEDDING_OUTPUT,
    PIXELS_INPUT,
    PROBABILITIES_OUTPUT,
    Classifier,
    Embedding,
    load_model,
    make_session,
)
from ctloop.registry import ModelRegistry
from ctloop.retrain_set import choose_base, read_training_set
from ctloop.stage import release
from ctloop.train import ExportMismatchError, TrainedHead, library_versions, train_head


@dataclass(frozen=True)
class Candidate:
    """A registered version and what the gate decided for it."""

    version: str
    decision: str  # "promoted", "rejected" or "registered" (not put to the gate)
    reason: str
    gate: dict
    head: TrainedHead
    seconds: float

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"


def train_candidate(
    settings: CoreSettings,
    registry: ModelRegistry,
    prod_rows: int | None = None,
    trigger: dict | None = None,
    promote: bool = True,
    scratch: bool = False,
    finetunes_since_scratch: int = 0,
    rebuild_reason: str | None = None,
    behind: int = 0,
    deferred: bool = False,
    checkpoint: Callable[[], None] | None = None,
) -> Candidate:
    """Fine-tune the served version, or fit a new head (`ctloop.retrain_set` decides which and
    which rows: the reference and the newest production rows up to `prod_rows`), register it
    with the stored embedding, and serve it if it passes the gate (unless `promote` is False).

    `rebuild_reason`: no served version can be loaded (`ctloop.recovery`); a first model is
    fitted on the reference alone and served as if there were no champion, with this reason.
    `behind`, `deferred`: see `choose_base`; `checkpoint` is called during a periodic rebuild
    and may raise RebuildYieldedError to stop it."""
    started = time.perf_counter()
    if rebuild_reason is not None:
        prod_rows, scratch, promote = 0, True, True
    embedding = load_embedding(settings.embedding_dir)
    base = choose_base(
        settings,
        registry,
        embedding.info,
        prod_rows or 0,
        finetunes_since_scratch,
        scratch,
        behind=behind,
        deferred=deferred,
    )
    training_set, scope = read_training_set(settings, prod_rows or 0, base, seed=prod_rows or 0)
    head = train_head(
        training_set,
        HeadConfig.from_settings(settings),
        base_files=base.files,
        augmentation=Augmentation.from_settings(settings, embedding, seed=prod_rows or 0),
        checkpoint=checkpoint if base.periodic else None,
    )
    gate = gate_set(training_set, settings.gate_recent_rows)
    challenger = gate_score(Classifier(head.model, head.classes)(gate.embeddings)[0], gate)
    champion_version = None if rebuild_reason is not None else registry.current_version()
    champion = champion_score(registry, champion_version, embedding, gate)
    # The first model's reference recall of each class and reference accuracy, carried along
    # the line of champions.
    floor, reference_floor = (
        floors(registry, champion_version) if champion is not None else (None, None)
    )
    if promote:
        decision, reason = decide(
            champion,
            challenger,
            settings.promotion_policy,
            settings.gate_tolerance,
            settings.gate_class_tolerance,
            floor,
            settings.gate_reference_tolerance,
            reference_floor,
        )
    else:
        decision, reason = "registered", "registered without the gate (--no-promote)"
    gate_record = {
        "rule": RULE,
        "policy": settings.promotion_policy,
        "tolerance": settings.gate_tolerance,
        "class_tolerance": settings.gate_class_tolerance,
        "reference_tolerance": settings.gate_reference_tolerance,
        "rows": {"reference": gate.reference_rows, "production": gate.production_rows},
        "champion": champion_version,
        "champion_score": champion,
        "challenger_score": challenger,
        "class_floor": floor or challenger["reference_class_recall"],
        "reference_floor": (
            reference_floor if reference_floor is not None else challenger["reference_accuracy"]
        ),
        "decision": decision,
        "reason": reason,
    }
    head.training.update(scope, seconds=round(time.perf_counter() - started, 3))
    manifest = build_manifest(head, embedding.info, gate=gate_record)
    if trigger is not None:
        manifest["retrain"] = trigger
    version = registry.register(
        files=version_files(embedding.model, head.model, head.extra_files),
        manifest=manifest,
        parent=champion_version,
    )
    if rebuild_reason is not None:  # no champion loads: nothing to stage it beside
        registry.promote(version, reason=rebuild_reason)
    elif decision == "promoted":
        release(settings, registry, version, promotion_reason(champion_version, trigger))
    return Candidate(version, decision, reason, gate_record, head, time.perf_counter() - started)


def champion_score(
    registry: ModelRegistry, version: str | None, embedding: StoredEmbedding, gate: GateSet
) -> dict | None:
    """The served version's gate score, or None when there is none in this embedding space."""
    if version is None:
        return None
    model = load_model(registry.load(version))
    if model.manifest["embedding"]["sha256"] != embedding.sha256:
        return None
    return gate_score(model.classifier(gate.embeddings)[0], gate)


def floors(
    registry: ModelRegistry, champion: str | None
) -> tuple[dict[str, float] | None, float | None]:
    """The floors the champion carries in its manifest's gate record (the first model's recall
    of each class and accuracy on the held-out reference rows), None before the first; a
    version from before the reference floor existed starts it at its own accuracy."""
    if champion is None:
        return None, None
    gate = registry.manifest(champion).get("gate") or {}
    scored = gate.get("challenger_score") or {}
    reference = gate.get("reference_floor")
    return (
        gate.get("class_floor") or scored.get("reference_class_recall"),
        reference if reference is not None else scored.get("reference_accuracy"),
    )


def promotion_reason(champion: str | None, trigger: dict | None) -> str:
    if trigger is not None:
        return f"retrain at {trigger['trigger_rows']} rows"
    return "initial model" if champion is None else "train"


def version_files(
    embedding: bytes, head: bytes, extra: dict[str, bytes] | None = None
) -> dict[str, bytes]:
    """A version's files: the embedding, the head, both merged into one serving graph (checked
    to give the same embeddings and probabilities as the two run one after the other), and the
    head's `extra` files (head.json: the weights a fine-tune starts from)."""
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
    return {
        "embedding.onnx": embedding,
        "classifier.onnx": head,
        "pipeline.onnx": pipeline,
        **(extra or {}),
    }


def build_manifest(head: TrainedHead, embedding_info: dict, gate: dict | None = None) -> dict:
    """Everything about a version except the fields the registry adds (id, parent, time, files)."""
    return {
        "classes": head.classes,
        "metrics": head.metrics,
        "training": head.training,
        "medium": embedding_info.get("medium", IMAGE),
        "preprocessing": embedding_info["preprocessing"],
        "embedding": {
            "sha256": embedding_info["sha256"],
            "n_components": embedding_info["n_components"],
            "dataset": embedding_info["dataset"],
            "dataset_fingerprint": embedding_info["dataset_fingerprint"],
            "ref_data_sha256": embedding_info["ref_data_sha256"],
            # what the settings asked, what init chose and why (ctloop.choose), without the sweep
            # EMBEDDING_MODEL's file (sha256, input, normalisation), or None for a PCA of pixels
            "encoder": embedding_info.get("encoder"),
            "choice": {
                key: value
                for key, value in (embedding_info.get("choice") or {}).items()
                if key in ("requested", "chosen", "why", "settings")
            },
        },
        "libraries": library_versions(),
        "gate": gate,
    }

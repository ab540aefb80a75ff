"""Challengers for the progressive-delivery tests: a sound one, and one trained on flipped labels.

Registered straight into the registry (not put to the gate), as an operator could, so that a
test decides when and how each one goes on stage.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ctloop.candidate import build_manifest, version_files
from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.registry import ModelRegistry
from ctloop.train import load_training_set, train_head


def flipped(targets: np.ndarray) -> np.ndarray:
    """Every label replaced by the next class: a model that learns these is always wrong."""
    classes = sorted(set(targets.tolist()))
    following = {label: classes[(i + 1) % len(classes)] for i, label in enumerate(classes)}
    return np.array([following[label] for label in targets.tolist()])


def register_challenger(settings: CoreSettings, flip: bool = False) -> str:
    """Train a head on the reference rows (labels flipped if asked) and register it; its id."""
    registry = ModelRegistry(settings.artifacts_dir)
    embedding = load_embedding(settings.embedding_dir)
    training_set = load_training_set(settings, 0)
    if flip:
        training_set = dataclasses.replace(training_set, targets=flipped(training_set.targets))
    head = train_head(training_set)
    gate = {"decision": "promoted", "reason": "registered by a test", "champion": None}
    manifest = build_manifest(head, embedding.info, gate=gate)
    return registry.register(
        files=version_files(embedding.model, head.model, head.extra_files), manifest=manifest
    )

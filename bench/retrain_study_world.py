"""The fixed part of bench/retrain_study.py: the reference, the embedding, the unseen digits and
the first model of each kind, built once with the project's own functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctloop.augment import Augmentation, AugmentConfig
from ctloop.candidate import version_files
from ctloop.config import CoreSettings
from ctloop.dataset import load_dataset, load_samples, split_reference_unseen
from ctloop.embed import fit_embedding, load_embedding
from ctloop.head import HeadConfig
from ctloop.predict import Classifier, Embedding
from ctloop.preprocess import PreprocessSpec, preprocess_many
from ctloop.reference import build_reference, read_reference
from ctloop.train import train_head
from ctloop.training_set import TrainingSet, reference_holdout_mask, row_weights

# The SVC study keeps the reference copies low: an SVC on 9 x 1,437 rows takes minutes a retrain.
SVC_AUGMENT = AugmentConfig(reference_copies=2)


@dataclass
class Served:
    """A model version in memory: its files, classes and classifier."""

    files: dict[str, bytes]
    classes: list[str]
    classifier: Classifier
    rows: int  # production rows it was trained on (its window starts after them)


@dataclass
class World:
    settings: CoreSettings
    spec: PreprocessSpec
    embedding_model: bytes
    embedding: Embedding
    ref_embeddings: np.ndarray
    ref_targets: np.ndarray
    ref_holdout: np.ndarray
    cells: np.ndarray  # the unseen digits, 8 x 8, as the traffic simulator takes them
    unseen_labels: np.ndarray
    initial: dict  # "mlp" (what ctloop init trains), "svc" (augmented), "svc-plain" -> Served

    @property
    def n(self) -> int:
        return self.ref_embeddings.shape[1]

    @property
    def gate_recent_rows(self) -> int:
        return self.settings.gate_recent_rows

    def embed_pngs(self, pngs: list[bytes]) -> np.ndarray:
        """What /feedback stores for these images: the preprocessing, then the embedding."""
        return self.embedding(preprocess_many(pngs, self.spec))

    def training_set(
        self, prod_embeddings: np.ndarray, prod_targets: np.ndarray, prod_holdout: np.ndarray
    ) -> TrainingSet:
        """Every reference row and every production row, with their held-out flags."""
        rows = len(prod_targets)
        is_prod = np.concatenate([np.zeros(len(self.ref_targets), bool), np.ones(rows, bool)])
        return TrainingSet(
            np.vstack([self.ref_embeddings, prod_embeddings]).astype(np.float32),
            np.concatenate([self.ref_targets, prod_targets]).astype(str),
            is_prod,
            np.concatenate([self.ref_holdout, prod_holdout]),
            row_weights(is_prod, self.settings.prod_weight),
        )


def make_world(
    root: Path, legacy: bool = False, first_models: tuple[str, ...] = ("mlp", "svc", "svc-plain")
) -> World:
    """The reference as `ctloop build-reference` builds it, or with `legacy` as the project
    built it before issue 16: the old preprocessing, a PCA fitted on the reference images only.
    `first_models`: which first models to train (`World.initial`'s keys)."""
    settings = CoreSettings(data_dir=root / "data", artifacts_dir=root / "artifacts")
    build_reference(settings)
    stored = load_embedding(settings.embedding_dir)
    spec = PreprocessSpec.from_dict(stored.info["preprocessing"])
    reference = read_reference(settings.ref_data_path)
    embeddings, model = reference.embeddings, stored.model
    if legacy:
        spec = PreprocessSpec.from_dict({})  # the preprocessing before its later fields
        dataset = load_dataset(settings.dataset)
        indices, _ = split_reference_unseen(
            dataset.labels, settings.unseen_fraction, settings.split_seed
        )
        pixels = preprocess_many([dataset.images[i] for i in indices], spec)
        _, model = fit_embedding(pixels, settings.pca_components)
        embeddings = Embedding(model, threads=0)(pixels)
    holdout = reference_holdout_mask(
        reference.targets, settings.holdout_fraction, settings.split_seed
    )
    samples = load_samples(settings.samples_dir)
    world = World(
        settings=settings,
        spec=spec,
        embedding_model=model,
        embedding=Embedding(model, threads=0),
        ref_embeddings=embeddings,
        ref_targets=reference.targets.astype(str),
        ref_holdout=holdout,
        cells=preprocess_many(samples.images),
        unseen_labels=np.array(samples.labels),
        initial={},
    )
    empty = np.empty((0, world.n), np.float32)
    start = world.training_set(empty, np.array([], dtype=str), np.array([], dtype=bool))
    for key, head, augment in (
        ("mlp", HeadConfig(), AugmentConfig()),
        ("svc", HeadConfig(kind="svc"), SVC_AUGMENT),
        ("svc-plain", HeadConfig(kind="svc"), None),
    ):
        if key not in first_models:
            continue
        augmentation = Augmentation(model, augment, 0, spec) if augment else None
        trained = train_head(start, head, None, augmentation)
        files = version_files(model, trained.model, trained.extra_files)
        world.initial[key] = Served(
            files, trained.classes, Classifier(trained.model, trained.classes), 0
        )
    return world

"""Augmentation: the embedding's inverse, transformed copies, and the training set it extends."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ctloop.augment import (
    AugmentConfig,
    EmbeddingInverse,
    augment_embeddings,
    augment_pixels,
    augment_training_set,
)
from ctloop.config import CoreSettings
from ctloop.dataset import load_dataset, split_reference_unseen
from ctloop.embed import load_embedding
from ctloop.predict import Embedding
from ctloop.preprocess import preprocess_many
from ctloop.retrain_set import load_training_set

IDENTITY = AugmentConfig(max_rotation=0, max_shear=0, max_shift=0, pen_widths=(0,), elastic=0)


@pytest.fixture(scope="module")
def reference(built: CoreSettings) -> tuple[np.ndarray, np.ndarray]:
    dataset = load_dataset("digits")
    indices, _ = split_reference_unseen(dataset.labels, built.unseen_fraction, built.split_seed)
    pixels = preprocess_many([dataset.inputs[i] for i in indices[:200]])
    return pixels, np.array([dataset.labels[i] for i in indices[:200]])


@pytest.fixture(scope="module")
def embedding_model(built: CoreSettings) -> bytes:
    return load_embedding(built.embedding_dir).model


def test_the_inverse_is_the_pca_inverse(reference, embedding_model: bytes) -> None:
    pixels, _ = reference
    embed = Embedding(embedding_model)
    inverse = EmbeddingInverse.from_model(embedding_model)
    rebuilt = inverse(embed(pixels))
    assert rebuilt.shape == pixels.shape and rebuilt.min() >= 0 and rebuilt.max() <= 1
    assert np.abs(rebuilt - pixels).mean() < 0.05  # 32 of 64 components keep most of a digit
    assert np.abs(embed(rebuilt) - embed(pixels)).mean() < 0.05  # back in the same space


def test_the_inverse_refuses_a_graph_that_is_not_a_pca(built: CoreSettings) -> None:
    from ctloop.registry import ModelRegistry

    head = ModelRegistry(built.artifacts_dir).load().files["classifier.onnx"]
    with pytest.raises(ValueError, match="not a PCA"):
        EmbeddingInverse.from_model(head)


def test_copies_without_any_transformation_are_the_digit_itself(reference) -> None:
    pixels, labels = reference
    copies, copy_labels = augment_pixels(pixels[:50], labels[:50], 2, IDENTITY, seed=0)
    assert copies.shape == (100, 64) and copies.dtype == np.float32
    assert np.array_equal(copy_labels, np.repeat(labels[:50], 2))
    assert np.abs(copies - np.repeat(pixels[:50], 2, axis=0)).max() <= 1 / 16


def test_copies_are_transformed_within_bounds_and_seeded(reference) -> None:
    pixels, labels = reference
    config = AugmentConfig()
    first, _ = augment_pixels(pixels[:40], labels[:40], 3, config, seed=1)
    again, _ = augment_pixels(pixels[:40], labels[:40], 3, config, seed=1)
    other, _ = augment_pixels(pixels[:40], labels[:40], 3, config, seed=2)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() <= 1
    change = np.abs(first - np.repeat(pixels[:40], 3, axis=0)).mean(axis=1)
    assert 0.02 < float(np.median(change)) < 0.25  # changed, still a digit of the same kind


def test_augmented_embeddings_stay_in_the_same_space(reference, embedding_model) -> None:
    pixels, labels = reference
    embeddings = Embedding(embedding_model)(pixels[:20])
    copies, copy_labels = augment_embeddings(
        embeddings, labels[:20], embedding_model, AugmentConfig(), seed=0, copies=4
    )
    assert copies.shape == (80, embeddings.shape[1]) and len(copy_labels) == 80
    nearest = np.linalg.norm(copies[:, None] - embeddings[None], axis=2).argmin(axis=1)
    assert (nearest == np.repeat(np.arange(20), 4)).mean() > 0.6  # near their own source row


def test_the_training_set_gains_copies_of_rows_not_held_out(built, embedding_model) -> None:
    training_set = load_training_set(built)
    config = AugmentConfig(reference_copies=2, feedback_copies=0)
    augmented = augment_training_set(training_set, embedding_model, config, seed=0)
    real = len(training_set.targets)
    fit = int((~training_set.holdout).sum())
    assert len(augmented.targets) == real + 2 * fit
    assert augmented.augmented_mask().sum() == 2 * fit
    assert not augmented.holdout[real:].any()
    assert np.array_equal(augmented.holdout[:real], training_set.holdout)
    assert augment_training_set(training_set, embedding_model, AugmentConfig(0, 0), 0) is (
        training_set
    )


def test_a_side_shift_moves_a_digit_one_cell_sideways(reference) -> None:
    """side_shift 1: every copy moved one cell left or right (nothing else): its columns are
    the digit's own, one over, except a digit cut by the left edge, which the preprocessing
    moves back (`recentre_left`)."""
    pixels, labels = reference
    grids = pixels[:60].reshape(-1, 8, 8)
    config = AugmentConfig(
        max_rotation=0, max_shear=0, max_shift=0, pen_widths=(0,), elastic=0, side_shift=1.0
    )
    copies, _ = augment_pixels(pixels[:60], labels[:60], 1, config, seed=0)
    moved = 0
    for grid, copy in zip(grids, copies.reshape(-1, 8, 8), strict=True):
        right = np.zeros_like(grid)
        right[:, 1:] = grid[:, :-1]
        left = np.zeros_like(grid)
        left[:, :-1] = grid[:, 1:]
        as_moved = min(np.abs(copy - right).max(), np.abs(copy - left).max()) <= 1 / 16
        moved += as_moved
        assert as_moved or np.abs(copy - grid).max() <= 1 / 16
    assert moved >= 30


def test_retrains_copy_with_side_shifts_the_first_model_does_not(
    built: CoreSettings, embedding_model
) -> None:
    """retrain_side_shift applies once production rows are in the training set."""
    reference_only = load_training_set(built)
    config = AugmentConfig(reference_copies=1, feedback_copies=0, retrain_side_shift=1.0)
    plain = augment_training_set(reference_only, embedding_model, config, seed=0)
    unshifted = augment_training_set(
        reference_only, embedding_model, replace(config, retrain_side_shift=0.0), seed=0
    )
    assert np.array_equal(plain.embeddings, unshifted.embeddings)
    with_prod = replace(reference_only, is_prod=reference_only.is_prod.copy())
    with_prod.is_prod[-1] = True
    shifted = augment_training_set(with_prod, embedding_model, config, seed=0)
    fresh = augment_training_set(
        with_prod, embedding_model, replace(config, retrain_side_shift=0.0), seed=0
    )
    assert not np.array_equal(shifted.embeddings, fresh.embeddings)

"""The classifier head: scratch fit, ONNX export with parity, head.json, fine-tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ctloop.config import CoreSettings
from ctloop.head import (
    HEAD_FILE,
    HeadConfig,
    WarmStartError,
    export_head,
    finetune_head,
    fit_head,
    load_head,
)
from ctloop.predict import Classifier
from ctloop.retrain_set import load_training_set

FAST = HeadConfig(epochs=60, finetune_epochs=10, finetune_interpolation=1.0)  # the full step


@pytest.fixture(scope="module")
def rows(built: CoreSettings):
    training_set = load_training_set(built)
    fit = ~training_set.holdout
    return (
        training_set.embeddings[fit],
        training_set.targets[fit],
        training_set.embeddings[training_set.holdout],
        training_set.targets[training_set.holdout],
    )


@pytest.fixture(scope="module")
def base(rows) -> tuple[object, dict[str, bytes]]:
    head = fit_head(rows[0], rows[1], config=FAST)
    return head, export_head(head)


def test_the_export_matches_scikit_learn(rows, base) -> None:
    head, files = base
    labels, probabilities = Classifier(files["classifier.onnx"], list(head.classes_))(rows[2])
    assert np.abs(probabilities - head.predict_proba(rows[2])).max() <= 1e-4
    assert np.array_equal(labels, head.predict(rows[2]))
    assert float((labels == rows[3]).mean()) >= 0.95


def test_head_json_gives_back_the_same_head(rows, base) -> None:
    head, files = base
    document = json.loads(files[HEAD_FILE])
    assert document["classes"] == [str(c) for c in head.classes_]
    loaded = load_head(files, FAST)
    assert np.array_equal(loaded.predict_proba(rows[2]), head.predict_proba(rows[2]))
    untouched = finetune_head(files, *rows[:2], config=HeadConfig(finetune_epochs=0))
    assert np.array_equal(untouched.predict_proba(rows[2]), head.predict_proba(rows[2]))


def test_a_fine_tune_learns_the_new_rows_and_keeps_the_scaler(rows, base) -> None:
    """Rows of 1s relabelled 7, with a replay of the reference: the tuned head follows them."""
    head, files = base
    embeddings, targets = rows[0], rows[1]
    ones = embeddings[targets == "1"][:30]
    rng = np.random.default_rng(0)
    replay = rng.choice(len(targets), 90, replace=False)
    tuned = finetune_head(
        files,
        np.vstack([ones, embeddings[replay]]),
        np.concatenate([np.full(len(ones), "7"), targets[replay]]),
        config=FAST,
    )
    assert (head.predict(ones) == "7").mean() < 0.1
    assert (tuned.predict(ones) == "7").mean() >= 0.8  # measured 0.9 (lr 1e-3, 10 epochs)
    # The default keeps 0.3 of that step: a relabelling as abrupt as this one is not followed by
    # one fine-tune (measured 0.0); the rebuild every SCRATCH_EVERY fine-tunes follows it.
    assert np.array_equal(tuned.named_steps["scaler"].mean_, head.named_steps["scaler"].mean_)
    others = rows[3] != "1"
    assert float((tuned.predict(rows[2][others]) == rows[3][others]).mean()) >= 0.9


def test_fine_tuning_is_deterministic(rows, base) -> None:
    _, files = base
    first = finetune_head(files, rows[0][:200], rows[1][:200], config=FAST)
    second = finetune_head(files, rows[0][:200], rows[1][:200], config=FAST)
    assert np.array_equal(first.predict_proba(rows[2]), second.predict_proba(rows[2]))


def test_a_fine_tune_keeps_the_given_share_of_its_step_from_the_base(rows, base) -> None:
    """FINETUNE_INTERPOLATION: the weights end at base + share * (fine-tuned - base)."""
    head, files = base
    full = finetune_head(files, rows[0][:200], rows[1][:200], config=FAST)
    half = HeadConfig(epochs=60, finetune_epochs=10, finetune_interpolation=0.5)
    mixed = finetune_head(files, rows[0][:200], rows[1][:200], config=half)
    before = head.named_steps["classifier"]
    after, tuned = mixed.named_steps["classifier"], full.named_steps["classifier"]
    for layer in range(2):
        halfway = (before.coefs_[layer] + tuned.coefs_[layer]) / 2
        assert np.allclose(after.coefs_[layer], halfway)
        halfway = (before.intercepts_[layer] + tuned.intercepts_[layer]) / 2
        assert np.allclose(after.intercepts_[layer], halfway)
    assert not np.allclose(after.coefs_[1], tuned.coefs_[1])
    # what is served is what was mixed: the export and head.json carry the mixed weights
    exported = export_head(mixed)
    served = Classifier(exported["classifier.onnx"], list(mixed.classes_))(rows[2])[1]
    assert np.abs(served - mixed.predict_proba(rows[2])).max() <= 1e-4
    assert np.array_equal(
        load_head(exported, half).predict_proba(rows[2]), mixed.predict_proba(rows[2])
    )


def test_what_cannot_be_fine_tuned(rows, base) -> None:
    _, files = base
    svc = export_head(fit_head(rows[0], rows[1], config=HeadConfig(kind="svc")))
    assert HEAD_FILE not in svc
    with pytest.raises(WarmStartError, match=r"no head\.json"):
        finetune_head(svc, rows[0], rows[1])
    with pytest.raises(WarmStartError, match="every class"):
        finetune_head(files, rows[0][rows[1] != "3"], rows[1][rows[1] != "3"])
    with pytest.raises(WarmStartError, match="cannot be fine-tuned"):
        finetune_head(files, rows[0], rows[1], config=HeadConfig(kind="svc"))
    deeper = json.loads(files[HEAD_FILE])
    deeper["layers"].insert(1, deeper["layers"][0])
    with pytest.raises(WarmStartError, match="hidden layers"):
        load_head({HEAD_FILE: json.dumps(deeper).encode()})
    other = export_head(fit_head(rows[0], rows[1], config=HeadConfig(epochs=5, seed=1)))
    with pytest.raises(WarmStartError, match="does not describe"):
        load_head({**files, HEAD_FILE: other[HEAD_FILE]})
    with pytest.raises(WarmStartError, match="not valid JSON"):
        load_head({**files, HEAD_FILE: b"{"})


def test_train_head_on_a_set_with_nothing_held_out(built: CoreSettings, base) -> None:
    """A fine-tune on rows that are all trained on: no held-out metrics, no failure."""
    from ctloop.train import train_head
    from ctloop.training_set import TrainingSet

    training_set = load_training_set(built)
    fit = ~training_set.holdout
    rows = TrainingSet(
        training_set.embeddings[fit][:200],
        training_set.targets[fit][:200],
        training_set.is_prod[fit][:200],
        np.zeros(200, bool),
        training_set.weights[fit][:200],
    )
    trained = train_head(rows, FAST, base_files=base[1])
    assert trained.metrics["holdout"] == {"rows": 0}
    assert trained.training["warm_start"] is True and "head.json" in trained.files


def test_members_are_merged_into_one_network_averaging_their_logits(rows) -> None:
    """members=3: one MLP of 3 x hidden_units units whose logits are the mean of the three
    networks fitted from seeds 0, 1, 2 on the same rows; it exports and fine-tunes as one."""
    config = HeadConfig(hidden_units=16, members=3, epochs=20)
    merged = fit_head(rows[0], rows[1], config=config)
    network = merged.named_steps["classifier"]
    assert network.coefs_[0].shape == (rows[0].shape[1], 48)
    scaled = merged.named_steps["scaler"].transform(rows[2])
    logits = []
    for seed in range(3):
        single = fit_head(
            rows[0], rows[1], config=HeadConfig(hidden_units=16, members=1, epochs=20, seed=seed)
        )
        one = single.named_steps["classifier"]
        hidden = np.maximum(scaled @ one.coefs_[0] + one.intercepts_[0], 0)
        logits.append(hidden @ one.coefs_[1] + one.intercepts_[1])
    mean = np.mean(logits, axis=0)
    expected = np.exp(mean - mean.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.abs(merged.predict_proba(rows[2]) - expected).max() < 1e-9
    files = export_head(merged)
    served = Classifier(files["classifier.onnx"], list(merged.classes_))(rows[2])[1]
    assert np.abs(served - merged.predict_proba(rows[2])).max() <= 1e-4
    tuned = finetune_head(files, rows[0][:300], rows[1][:300], config=config)
    assert tuned.named_steps["classifier"].coefs_[0].shape == (rows[0].shape[1], 48)


def test_a_version_with_one_network_is_fine_tuned_as_it_is(rows) -> None:
    """A version trained before members existed (one network of 128 units) keeps being
    fine-tuned with the default settings: a fine-tune continues the base's own network."""
    single = export_head(fit_head(rows[0], rows[1], config=HeadConfig(members=1, epochs=5)))
    tuned = finetune_head(single, rows[0][:300], rows[1][:300])
    assert tuned.named_steps["classifier"].coefs_[0].shape[1] == 128

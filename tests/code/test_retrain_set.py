"""What a retrain starts from and reads (ctloop.retrain_set), and the modes through the trainer
and the command line, on private copies of the built stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.registry import ModelRegistry
from ctloop.retrain_log import RetrainLog
from ctloop.retrain_set import RetrainBase, choose_base, read_training_set
from ctloop.trainer import run_pending
from harness.data import copy_workspace, make_settings, served_feedback, write_prod

pytestmark = pytest.mark.slow

FAST = {"augment_reference_copies": 0, "augment_feedback_copies": 0}


def feed_rows(settings: CoreSettings, built: CoreSettings, count: int) -> None:
    """Append `count` real feedback rows (the unseen digits, over and over)."""
    embeddings, targets, predictions = served_feedback(built)
    rows = np.arange(count) % len(targets)
    write_prod(settings.prod_data_path, embeddings[rows], targets[rows], predictions[rows])


def base_of(settings: CoreSettings, rows: int, **kwargs) -> RetrainBase:
    registry = ModelRegistry(settings.artifacts_dir)
    info = load_embedding(settings.embedding_dir).info
    return choose_base(settings, registry, info, rows, **kwargs)


def test_a_finetune_reads_only_the_newest_rows_and_trains_on_a_bounded_window(
    workspace: CoreSettings, built: CoreSettings
) -> None:
    settings = make_settings(
        workspace.data_dir.parent,
        retrain_read_rows=500,
        finetune_window_rows=100,
        finetune_replay_production=1.0,
        finetune_replay_reference=10.0,
    )
    feed_rows(settings, built, 1200)
    base = base_of(settings, 1200)
    assert base.mode == "finetune" and base.version == "v0001" and base.since == 0
    base = RetrainBase("finetune", "test", base.version, base.files, since=900)

    training_set, scope = read_training_set(settings, 1200, base, seed=1)

    assert scope["production_read"] == [701, 1200]  # nothing older is read
    # the newest since 900 (row 1200 is held out: every 5th)
    assert scope["window_rows"] == 100 and scope["window"][1] == 1199
    assert scope["window"][0] > 900
    assert scope["replay_production_rows"] == 100  # from rows 701..900, older than the base
    assert 990 <= scope["replay_reference_rows"] <= 1000  # 10 per window row, stratified
    prod_trained = training_set.is_prod & ~training_set.holdout
    assert prod_trained.sum() == 200
    assert (training_set.is_prod & training_set.holdout).sum() == 100  # every 5th of 500 read
    ref_trained = training_set.targets[~training_set.is_prod & ~training_set.holdout]
    counts = np.unique(ref_trained, return_counts=True)[1]
    assert len(counts) == 10 and counts.max() - counts.min() <= 1  # every class replayed

    # Twice the rows, the base as far behind: the same amount read and trained on.
    feed_rows(settings, built, 1200)
    later = RetrainBase("finetune", "test", base.version, base.files, since=2100)
    bigger, scope = read_training_set(settings, 2400, later, seed=1)
    assert scope["production_read"] == [1901, 2400]
    assert len(bigger.targets) == len(training_set.targets)


def test_scratch_trains_on_every_row_read(workspace: CoreSettings, built: CoreSettings) -> None:
    settings = make_settings(workspace.data_dir.parent, retrain_read_rows=300)
    feed_rows(settings, built, 400)
    base = base_of(settings, 400, scratch=True)
    assert base.mode == "scratch" and base.files is None
    training_set, scope = read_training_set(settings, 400, base)
    assert scope["production_read"] == [101, 400] and "window" not in scope
    assert training_set.is_prod.sum() == 300


@pytest.mark.parametrize(
    ("overrides", "kwargs", "why"),
    [
        ({"retrain_mode": "scratch"}, {}, "RETRAIN_MODE is scratch"),
        ({"scratch_every": 3}, {"finetunes_since_scratch": 3}, "periodic full rebuild"),
        ({"head_model": "svc"}, {}, "svc head is fitted from scratch"),
        ({}, {"scratch": True}, "full rebuild was asked for"),
    ],
)
def test_scratch_is_chosen_and_says_why(
    workspace: CoreSettings, overrides: dict, kwargs: dict, why: str
) -> None:
    settings = make_settings(workspace.data_dir.parent, **overrides)
    base = base_of(settings, 40, **kwargs)
    assert base.mode == "scratch" and why in base.why


def test_a_version_without_head_json_is_rebuilt_not_finetuned(
    plain_built: CoreSettings, tmp_path: Path
) -> None:
    copy = copy_workspace(plain_built, tmp_path)  # an SVC first model: no head.json
    base = base_of(copy, 40)  # settings default to the MLP head
    assert base.mode == "scratch" and "has no head.json" in base.why


def test_the_loop_finetunes_and_rebuilds_every_n(
    workspace: CoreSettings, built: CoreSettings
) -> None:
    settings = make_settings(workspace.data_dir.parent, scratch_every=2, **FAST)
    for _ in range(3):
        feed_rows_since(settings, built, 20)
        run_pending(settings)
    decisions = RetrainLog(settings.retrain_log_path).decisions()
    assert [d["trigger_rows"] for d in decisions] == [20, 40, 60]
    assert [d["mode"] for d in decisions] == ["finetune", "finetune", "scratch"]
    assert decisions[0]["base_version"] == "v0001"
    assert all(d["train_seconds"] > 0 and d["training_rows"] > 0 for d in decisions)
    registry = ModelRegistry(settings.artifacts_dir)
    first = registry.manifest(decisions[0]["version"])["training"]
    assert first["mode"] == "finetune" and first["base_version"] == "v0001"
    assert first["window"] == [1, 19] and first["production_through"] == 20
    assert first["warm_start"] is True
    rebuild = registry.manifest(decisions[2]["version"])["training"]
    assert rebuild["warm_start"] is False and "SCRATCH_EVERY 2" in rebuild["mode_reason"]


_fed: dict[Path, int] = {}


def feed_rows_since(settings: CoreSettings, built: CoreSettings, count: int) -> None:
    """The next `count` unseen digits (continuing where the last call stopped)."""
    embeddings, targets, predictions = served_feedback(built)
    start = _fed.get(settings.prod_data_path, 0)
    rows = np.arange(start, start + count) % len(targets)
    write_prod(settings.prod_data_path, embeddings[rows], targets[rows], predictions[rows])
    _fed[settings.prod_data_path] = start + count


def test_ctloop_train_scratch_rebuilds_on_demand(
    workspace: CoreSettings, built: CoreSettings
) -> None:
    feed_rows(workspace, built, 40)
    env = {
        **os.environ,
        "DATA_DIR": str(workspace.data_dir),
        "ARTIFACTS_DIR": str(workspace.artifacts_dir),
        "AUGMENT_REFERENCE_COPIES": "0",
        "AUGMENT_FEEDBACK_COPIES": "0",
    }
    for flags, mode in ((["--with-prod"], "finetune"), (["--with-prod", "--scratch"], "scratch")):
        done = subprocess.run(
            [sys.executable, "-m", "ctloop", "train", *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert f"({mode}:" in done.stdout
    versions = sorted((workspace.artifacts_dir / "versions").iterdir())
    modes = [json.loads((v / "manifest.json").read_text())["training"]["mode"] for v in versions]
    assert modes[-2:] == ["finetune", "scratch"]

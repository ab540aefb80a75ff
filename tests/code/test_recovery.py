"""The registry heals by itself (ctloop.recovery): a corrupt or missing pointer is rebuilt from the
history, a champion that no longer verifies gives way to the best version that does, and with no
version left a first model is rebuilt from ref_data.csv, the feedback rows untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from ctloop.candidate import train_candidate
from ctloop.config import CoreSettings
from ctloop.recovery import diagnose, heal
from ctloop.registry import ModelRegistry
from ctloop.retrain_log import RetrainLog
from ctloop.trainer import run_pending
from harness.data import flip, plain_settings, served_feedback, write_prod

pytestmark = pytest.mark.slow


@pytest.fixture
def plain(plain_built: CoreSettings, tmp_path) -> tuple[CoreSettings, ModelRegistry]:
    """A private copy of the plain stack (a head that trains in seconds), serving v0001."""
    shutil.copytree(plain_built.data_dir, tmp_path / "data")
    shutil.copytree(plain_built.artifacts_dir, tmp_path / "artifacts")
    settings = plain_settings(tmp_path)
    return settings, ModelRegistry(settings.artifacts_dir)


def last_move(registry: ModelRegistry) -> dict:
    return registry.history()[-1]


def test_a_healthy_registry_is_left_alone(plain) -> None:
    settings, registry = plain
    before = registry.history_path.read_bytes()
    assert diagnose(registry).healthy and diagnose(registry).champion == "v0001"
    assert heal(settings, registry) is None
    assert registry.history_path.read_bytes() == before


@pytest.mark.parametrize(
    "damage",
    [lambda path: path.write_text('{"version": "v00'), lambda path: path.unlink()],
    ids=["truncated", "deleted"],
)
def test_a_lost_pointer_is_rebuilt_from_the_history(plain, damage) -> None:
    settings, registry = plain
    train_candidate(settings, registry)  # v0002, same data: promoted
    assert registry.current_version() == "v0002"
    damage(registry.current_path)
    found = diagnose(registry)
    assert not found.healthy and found.replacement == "v0002"
    done = heal(settings, registry)
    assert done and "v0002" in done
    assert registry.current_version() == "v0002"
    assert last_move(registry)["reason"].startswith("repaired: ")


def test_a_champion_that_no_longer_verifies_gives_way_to_its_parent(plain) -> None:
    settings, registry = plain
    train_candidate(settings, registry)
    flip(registry.versions_dir / "v0002" / "pipeline.onnx")
    heal(settings, registry)
    assert registry.current_version() == "v0001"
    reason = last_move(registry)["reason"]
    assert "v0002" in reason and "pipeline.onnx does not match its sha256" in reason


@pytest.mark.parametrize(
    "damage",
    [
        lambda versions: flip(versions / "v0001" / "pipeline.onnx"),
        lambda versions: shutil.rmtree(versions / "v0001"),
    ],
    ids=["flipped bytes", "folder deleted"],
)
def test_with_no_version_that_verifies_a_first_model_is_rebuilt_from_the_reference(
    plain, plain_built, damage
) -> None:
    settings, registry = plain
    embeddings, targets, predictions = served_feedback(plain_built)
    write_prod(settings.prod_data_path, embeddings[:30], targets[:30], predictions[:30])
    feedback = settings.prod_data_path.read_bytes()
    damage(registry.versions_dir)
    found = diagnose(registry)
    assert found.replacement is None and "v0001" in found.problem
    done = heal(settings, registry)
    assert done.startswith("trained v0002 (rebuilt from ref_data.csv: ")
    assert registry.current_version() == "v0002"
    registry.load("v0002")  # verifies
    training = registry.manifest("v0002")["training"]
    assert training["production_rows"] == 0 and training["mode"] == "scratch"
    assert settings.prod_data_path.read_bytes() == feedback, "feedback rows untouched"
    assert "rebuilt from ref_data.csv" in last_move(registry)["reason"]


def test_the_trainer_repairs_a_corrupt_pointer_and_goes_on_retraining(plain, plain_built) -> None:
    settings, registry = plain
    embeddings, targets, predictions = served_feedback(plain_built)
    write_prod(settings.prod_data_path, embeddings[:20], targets[:20], predictions[:20])
    registry.current_path.write_text("{")
    (decision,) = run_pending(settings)
    assert decision["trigger_rows"] == 20 and decision["decision"] in ("promoted", "rejected")
    assert registry.current_version() in ("v0001", "v0002")
    assert any(m["reason"].startswith("repaired: ") for m in registry.history())
    assert [d["decision"] for d in RetrainLog(settings.retrain_log_path).decisions()] != ["failed"]


def test_init_on_a_truncated_pointer_repairs_it_and_exits_0(plain) -> None:
    """What a Compose restart runs before the API: it must never keep the API from starting."""
    settings, registry = plain
    registry.current_path.write_text('{"version": "v0')
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "ARTIFACTS_DIR": str(settings.artifacts_dir),
        "HEAD_MODEL": "svc",
        "AUGMENT_REFERENCE_COPIES": "0",
        "AUGMENT_FEEDBACK_COPIES": "0",
        "AUGMENT_EMBEDDING_COPIES": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ctloop", "init"], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "now serving v0001 (repaired: " in done.stdout
    assert registry.current_version() == "v0001"

"""The model registry: versions, the current pointer, integrity, crashes mid-write."""

from __future__ import annotations

import errno
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

from ctloop import registry as registry_module
from ctloop.config import CoreSettings
from ctloop.predict import load_model
from ctloop.registry import (
    CorruptPointerError,
    IntegrityError,
    ModelRegistry,
    RegistryError,
    VersionNotFoundError,
)


def copy_of_current(registry: ModelRegistry) -> tuple[dict[str, bytes], dict]:
    files = registry.load()
    keep = {
        k: v
        for k, v in files.manifest.items()
        if k not in ("version", "parent", "created_at", "files")
    }
    return files.files, keep


def test_first_version_is_served(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    assert registry.version_ids() == ["v0001"]
    assert registry.current_version() == "v0001"
    manifest = registry.manifest("v0001")
    assert manifest["parent"] is None
    assert set(manifest["files"]) == {
        "embedding.onnx",
        "classifier.onnx",
        "pipeline.onnx",
        "head.json",
    }
    for key in (
        "created_at",
        "classes",
        "metrics",
        "training",
        "preprocessing",
        "libraries",
        "embedding",
    ):
        assert key in manifest
    assert manifest["training"]["data_sha256"] and len(manifest["training"]["data_sha256"]) == 64
    assert set(manifest["metrics"]["holdout"]) >= {
        "accuracy",
        "macro_f1",
        "balanced_accuracy",
        "per_class_recall",
    }


def test_register_promote_and_roll_back_move_the_pointer(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    second = registry.register(files, manifest)
    assert second == "v0002"
    assert registry.current_version() == "v0001", "registering must not serve"
    assert registry.manifest(second)["parent"] == "v0001"
    registry.promote(second)
    assert registry.current_version() == "v0002"
    third = registry.register(files, manifest)
    registry.promote(third)
    assert registry.rollback() == "v0002"
    assert registry.current_version() == "v0002"
    assert registry.rollback() == "v0001"
    with pytest.raises(RegistryError, match="no parent"):
        registry.rollback()
    assert registry.rollback("v0003") == "v0003"
    history = [json.loads(line) for line in registry.history_path.read_text().splitlines()]
    champions = [e["version"] for e in history if e.get("stage", "champion") == "champion"]
    assert [e["version"] for e in history if e.get("stage") == "retired"] == [
        "v0001",
        "v0002",
        "v0003",
        "v0002",
        "v0001",
    ]
    assert champions == [
        "v0001",
        "v0002",
        "v0003",
        "v0002",
        "v0001",
        "v0003",
    ]
    assert [m["version"] for m in registry.list_versions() if m["current"]] == ["v0003"]


def test_a_challenger_goes_on_stage_and_is_promoted_or_rolled_back(
    workspace: CoreSettings,
) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    second, third, fourth = (registry.register(files, manifest) for _ in range(3))
    registry.start_stage(second, "canary", 5.0, "passed the offline gate", rows=40)
    assert registry.current_version() == "v0001", "the champion still serves everyone"
    assert registry.current_stage()["version"] == second
    assert registry.current_stage()["percent"] == 5.0

    registry.start_stage(third, "shadow", 100.0, "a newer challenger")  # supersedes v0002
    assert registry.current_stage()["version"] == third
    assert registry.end_stage(promote=True, reason="live accuracy not worse") == third
    assert registry.current_version() == third and registry.current_stage() is None

    registry.start_stage(fourth, "canary", 10.0, "passed the offline gate")
    assert registry.end_stage(promote=False, reason="live accuracy worse") == fourth
    assert registry.current_version() == third and registry.current_stage() is None
    with pytest.raises(RegistryError, match="no challenger"):
        registry.end_stage(promote=False, reason="again")

    stages = {m["version"]: [s["stage"] for s in m["stages"]] for m in registry.list_versions()}
    assert stages == {
        "v0001": ["champion", "retired"],
        "v0002": ["canary", "rolled_back"],
        "v0003": ["shadow", "champion"],
        "v0004": ["canary", "rolled_back"],
    }
    reasons = [s["reason"] for s in registry.list_versions()[3]["stages"]]
    assert reasons == ["passed the offline gate", "live accuracy worse"]


def test_an_unreadable_stage_is_a_corrupt_pointer(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    registry.current_path.write_text(
        json.dumps({"version": "v0001", "stage": {"version": "v0002", "stage": "sideways"}})
    )
    with pytest.raises(CorruptPointerError, match="stage"):
        registry.current_stage()


def test_unknown_version_is_refused(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    with pytest.raises(VersionNotFoundError):
        registry.promote("v0042")
    with pytest.raises(VersionNotFoundError):
        registry.manifest("../../etc")
    assert registry.current_version() == "v0001"


def test_a_crash_while_writing_a_version_leaves_the_served_model_loadable(
    workspace: CoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    real_write = registry_module.write_durable

    def crash_on_classifier(path, data):
        if path.name == "classifier.onnx":
            real_write(path, data[: len(data) // 2])  # half the file is on disk...
            raise OSError("disk full")  # ...then the process dies
        real_write(path, data)

    monkeypatch.setattr(registry_module, "write_durable", crash_on_classifier)
    with pytest.raises(OSError, match="disk full"):
        registry.register(files, manifest)
    monkeypatch.undo()

    assert registry.version_ids() == ["v0001"], "a half-written version must not appear"
    assert registry.current_version() == "v0001"
    model = load_model(registry.load())
    assert model.version == "v0001"
    # The next registration works and takes the next number.
    assert registry.register(files, manifest) == "v0002"
    registry.prune(keep_ancestors=5, keep_others=5)
    assert not registry.staging_dir.exists()


def test_a_crash_while_moving_the_pointer_keeps_the_old_pointer(
    workspace: CoreSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    second = registry.register(files, manifest)

    def crash(*args, **kwargs):
        raise OSError("killed before the rename")

    monkeypatch.setattr(registry_module.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        registry.promote(second)
    monkeypatch.undo()
    assert registry.current_version() == "v0001"
    registry.load()


def test_a_full_disk_refuses_a_version_and_a_move_and_leaves_nothing_behind(
    workspace: CoreSettings, tmp_path
) -> None:
    """The registry on a real tmpfs filled to its last block: registering fails with ENOSPC and
    leaves no half version (nor its room taken), moving the pointer fails and keeps it, and
    both work once room is made."""
    from harness.storage import fill, small_filesystem

    with small_filesystem(tmp_path / "small", "4m") as folder:
        shutil.copytree(workspace.artifacts_dir, folder / "artifacts")
        registry = ModelRegistry(folder / "artifacts")
        files, manifest = copy_of_current(registry)
        second = registry.register(files, manifest)
        pointer, history = registry.current_path.read_bytes(), registry.history_path.read_bytes()
        filler = fill(folder)

        with pytest.raises(OSError, match="No space left") as refused:
            registry.register(files, manifest)
        assert refused.value.errno == errno.ENOSPC
        assert registry.version_ids() == ["v0001", second]
        assert not any(registry.staging_dir.iterdir()), "the half-written version is gone"
        with pytest.raises(OSError, match="No space left"):
            registry.promote(second)
        assert registry.current_path.read_bytes() == pointer
        assert registry.history_path.read_bytes() == history
        assert not list(registry.root.glob(".*.tmp")), "no temporary pointer left"

        filler.unlink()
        third = registry.register(files, manifest)
        registry.promote(third)
        assert registry.current_version() == third and third == "v0003"
        registry.load()


def test_a_move_the_history_cannot_record_is_undone(workspace: CoreSettings) -> None:
    """history.jsonl at its file-size limit (RLIMIT_FSIZE, in a child process): the pointer is put
    back, so the history still holds every move that was served."""
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    second = registry.register(files, manifest)
    for _ in range(4):  # a history longer than the pointer
        registry.promote(second)
        registry.promote("v0001")
    pointer, history = registry.current_path.read_bytes(), registry.history_path.read_bytes()
    assert len(history) > 2 * len(pointer)

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=promote_under_a_size_limit,
        args=(str(workspace.artifacts_dir), second, len(history) + 10, queue),
    )
    child.start()
    outcome = queue.get(timeout=120)
    child.join(timeout=60)
    assert outcome == errno.EFBIG
    assert registry.current_path.read_bytes() == pointer, "the move is undone"
    assert registry.history_path.read_bytes() == history, "no part of a line stays"
    assert registry.current_version() == "v0001"


def promote_under_a_size_limit(artifacts: str, version: str, limit: int, queue) -> None:
    from harness.storage import limit_file_size

    registry = ModelRegistry(Path(artifacts))
    limit_file_size(limit)
    try:
        registry.promote(version)
    except OSError as exc:
        queue.put(exc.errno)
        return
    queue.put("promoted")


def test_a_modified_onnx_file_is_refused(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    path = registry.versions_dir / "v0001" / "classifier.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"classifier\.onnx does not match its sha256"):
        registry.load()


def test_a_missing_file_is_refused(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    (registry.versions_dir / "v0001" / "embedding.onnx").unlink()
    with pytest.raises(IntegrityError, match=r"embedding\.onnx is missing"):
        registry.load()


def test_promoting_a_tampered_version_is_refused(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    second = registry.register(files, manifest)
    (registry.versions_dir / second / "classifier.onnx").write_bytes(b"not onnx")
    with pytest.raises(IntegrityError):
        registry.promote(second)
    assert registry.current_version() == "v0001"


def register_rejected(registry: ModelRegistry, files, manifest) -> str:
    """A challenger the gate rejected: registered, never served."""
    gate = {"decision": "rejected", "champion": registry.current_version()}
    return registry.register(files, {**manifest, "gate": gate})


def test_prune_keeps_the_served_line_and_the_newest_others(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    for _ in range(4):  # v0002..v0005, each promoted: each the parent of the next
        registry.promote(registry.register(files, manifest))
    rejected = [register_rejected(registry, files, manifest) for _ in range(3)]  # v0006..v0008
    assert registry.ancestors("v0005") == ["v0004", "v0003", "v0002", "v0001"]

    removed = registry.prune(keep_ancestors=2, keep_others=1)

    # Served v0005, its parent and grandparent; the newest rejected one.
    assert registry.version_ids() == ["v0003", "v0004", "v0005", "v0008"]
    assert sorted(removed) == ["v0001", "v0002", *rejected[:2]]
    assert registry.rollback() == "v0004"  # what a rollback needs is still there


def test_nothing_is_pruned_while_the_pointer_cannot_be_read(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    register_rejected(registry, files, manifest)
    registry.current_path.write_text('{"version": "v00')  # truncated
    with pytest.raises(CorruptPointerError):
        registry.prune(keep_ancestors=1, keep_others=0)
    assert registry.version_ids() == ["v0001", "v0002"]


def test_a_corrupt_pointer_is_reported_and_repaired_by_a_promotion(
    workspace: CoreSettings,
) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    registry.promote(registry.register(files, manifest))  # v0002 served, v0001 its parent
    for broken in (b'{"version": "v00', b"", b'["v0002"]', b'{"version": "../etc"}', b"\xff"):
        registry.current_path.write_bytes(broken)
        with pytest.raises(CorruptPointerError):
            registry.current_version()
        assert [m["version"] for m in registry.list_versions()] == ["v0001", "v0002"]
    # What to serve instead: the last version the history moved the pointer to, then its line.
    assert registry.fallbacks(None) == ["v0002", "v0001"]
    registry.rollback("v0002")  # naming a version repairs the pointer
    assert registry.current_version() == "v0002"


def test_fallbacks_never_include_a_rejected_challenger(workspace: CoreSettings) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    registry.promote(registry.register(files, manifest))  # v0002
    register_rejected(registry, files, manifest)  # v0003
    assert registry.fallbacks("v0002") == ["v0001"]
    assert "v0003" not in registry.fallbacks(None)


def test_a_version_with_an_unreadable_manifest_is_left_out_of_the_list(
    workspace: CoreSettings,
) -> None:
    registry = ModelRegistry(workspace.artifacts_dir)
    files, manifest = copy_of_current(registry)
    second = registry.register(files, manifest)
    (registry.versions_dir / second / "manifest.json").write_text("{ not json")
    assert [m["version"] for m in registry.list_versions()] == ["v0001"]
    with pytest.raises(IntegrityError, match="manifest cannot be read"):
        registry.load(second)


def test_loaded_model_predicts_with_its_own_embedding(workspace: CoreSettings) -> None:
    model = load_model(ModelRegistry(workspace.artifacts_dir).load())
    pixels = np.zeros((3, 64), dtype=np.float32)
    embeddings, labels, probabilities = model.predict_pixels(pixels)
    assert embeddings.shape == (3, 32)
    assert probabilities.shape == (3, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert set(labels) <= set(model.classes)

"""The pointer's history (artifacts/history.jsonl) stays bounded by rotation: every version still
registered keeps its whole story, the last champion is still known, a new reader reads a bounded
amount, and the registry's answers are those of the whole history."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from ctloop import journal
from ctloop import pointer as pointer_module
from ctloop.config import CoreSettings
from ctloop.pointer import ServingPointer
from ctloop.registry import ModelRegistry

SMALL = 8192


def stages(moves: list[dict], version: str) -> list[dict]:
    return [
        {"stage": m.get("stage", "champion"), "since": m.get("since"), "reason": m.get("reason")}
        for m in moves
        if m.get("version") == version
    ]


def last_champion(moves: list[dict]) -> str | None:
    return next(
        (m["version"] for m in reversed(moves) if m.get("stage", "champion") == "champion"), None
    )


def recording(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every move written, in order, as the whole (unrotated) history would hold it."""
    moves: list[dict] = []
    write = ServingPointer._write

    def recorded(self: ServingPointer, pointer: dict, new: list[dict]) -> None:
        write(self, pointer, new)
        moves.extend(new)

    monkeypatch.setattr(ServingPointer, "_write", recorded)
    return moves


def move_like_a_registry(
    pointer: ServingPointer, registered: list[str], rng: random.Random, keep: int = 6
) -> None:
    """One release as the loop makes them (direct, or a stage that ends either way, now and
    then a rollback), then a prune that keeps the served versions and the newest others."""
    version = f"v{int(registered[-1][1:]) + 1:04d}" if registered else "v0001"
    registered.append(version)
    reason = f"retrain at {rng.randint(1, 10**6)} rows" + " " * rng.randint(0, 80)
    roll = rng.random()
    if roll < 0.35 or pointer.champion() is None:
        pointer.set_champion(version, reason)
    elif roll < 0.85:
        pointer.set_stage(version, rng.choice(["shadow", "canary"]), 5.0, reason, 100)
        if rng.random() < 0.8:
            pointer.end_stage("judged live", version=version, promote=rng.random() < 0.5)
    elif len(registered) > 2:
        pointer.set_champion(rng.choice(registered[:-1]), "rollback")
    served = {pointer.champion(), (pointer.stage() or {}).get("version")}
    others = [name for name in registered if name not in served]
    registered[:] = [name for name in registered if name in served or name in others[-keep:]]


def test_every_registered_version_keeps_its_story_across_rotations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """800 releases, a history rotated every 8 KB: at every step checked, each version still
    registered has the stages the whole history gives it, the last champion is the same, the
    history has every move of those versions in order; the file stays under its bound."""
    monkeypatch.setattr(os, "fsync", lambda descriptor: None)  # answers, not durability
    moves = recording(monkeypatch)
    registered: list[str] = []
    pointer = ServingPointer(
        tmp_path, FileLock(str(tmp_path / ".registry.lock")), lambda: registered, SMALL
    )
    rng = random.Random(5)
    longest = 0
    for step in range(800):
        written = len(moves)
        move_like_a_registry(pointer, registered, rng)
        lines = [json.dumps(m, separators=(",", ":")) for m in moves[written:]]
        longest = max(longest, *(len(line) + 1 for line in lines))
        assert pointer.history_path.stat().st_size <= SMALL + longest
        if step % 37 == 0 or step == 799:
            fresh = ServingPointer(tmp_path, FileLock(str(tmp_path / ".registry.lock")))
            for reader in (pointer, fresh):
                for version in registered:
                    assert reader.stages_of(version) == stages(moves, version), (step, version)
                assert reader.last_champion() == last_champion(moves)
                kept = [m for m in reader.history() if m["version"] in registered]
                assert kept == [m for m in moves if m["version"] in registered]
    assert len(list(tmp_path.glob("history.*.jsonl"))) == pointer_module.HISTORY_KEEP_ARCHIVES
    assert json.loads(pointer.history_path.read_text().splitlines()[0])["event"] == "carry"
    assert len(moves) > 20 * len(pointer.history()), "it was rotated, and is bounded"
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_last_champion_survives_when_no_version_is_registered(tmp_path: Path) -> None:
    """current.json lost, every version folder gone: the history still names the last champion
    (what `ctloop init` and the API fall back to), however many rotations ago it was moved."""
    pointer = ServingPointer(tmp_path, FileLock(str(tmp_path / ".lock")), lambda: [], 512)
    pointer.set_champion("v0001", "first")
    pointer.set_stage("v0002", "canary", 5.0, "trying", 10)
    for n in range(40):  # rolled back again and again: many rotations
        pointer.set_stage(f"v{n + 3:04d}", "shadow", 5.0, "trying " + "x" * 60, 10)
    assert len(list(tmp_path.glob("history.*.jsonl"))) == 3
    assert pointer.history_path.stat().st_size < 512 + 200
    assert ServingPointer(tmp_path, FileLock(str(tmp_path / ".lock"))).last_champion() == "v0001"


def test_a_fresh_reader_reads_at_most_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[str] = []
    pointer = ServingPointer(tmp_path, FileLock(str(tmp_path / ".lock")), lambda: registered, SMALL)
    rng = random.Random(8)
    for _ in range(300):
        move_like_a_registry(pointer, registered, rng)
    sizes: list[int] = []
    parse = journal.parse_json_lines
    monkeypatch.setattr(
        journal, "parse_json_lines", lambda data, name="": (sizes.append(len(data)), parse(data))[1]
    )
    fresh = ServingPointer(tmp_path, FileLock(str(tmp_path / ".lock")))
    fresh.last_champion()
    fresh.stages_of(registered[-1])
    assert 0 < max(sizes) <= SMALL + 400
    assert len(sizes) == 2


# -- through the registry ------------------------------------------------------------------------


def test_the_registry_answers_as_with_the_whole_history(
    workspace: CoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real versions released, staged, rolled back and pruned (as the trainer prunes) while the
    history rotates every 1 KB: list_versions, fallbacks (with the pointer lost too) and the
    next version id are those of the same registry with its whole history unrotated."""
    monkeypatch.setattr(pointer_module, "HISTORY_ROTATE_BYTES", 1024)
    moves = recording(monkeypatch)
    registry = ModelRegistry(workspace.artifacts_dir)
    files = registry.load().files
    manifest = {
        k: v
        for k, v in registry.manifest("v0001").items()
        if k not in ("version", "parent", "created_at", "files")
    }
    rng = random.Random(3)
    for n in range(30):
        gate = {"decision": "promoted" if rng.random() < 0.8 else "rejected"}
        version = registry.register(files, {**manifest, "gate": gate})
        if gate["decision"] == "rejected":
            pass
        elif rng.random() < 0.4:
            registry.promote(version, f"retrain {n}")
        else:
            registry.start_stage(version, "canary", 5.0, f"retrain {n}", n)
            registry.end_stage(rng.random() < 0.5, f"judged {n}", version=version)
        if n % 7 == 6 and registry.manifest(registry.current_version() or "").get("parent"):
            registry.rollback()
        registry.prune(keep_ancestors=2, keep_others=2)
    assert list(registry.root.glob("history.*.jsonl")), "the history was rotated"

    whole = tmp_path / "whole"
    shutil.copytree(registry.root, whole)
    (whole / "history.jsonl").write_text("".join(json.dumps(m) + "\n" for m in moves))
    unrotated = ModelRegistry(whole)
    assert registry.list_versions() == unrotated.list_versions()
    assert registry.fallbacks(registry.current_version()) == unrotated.fallbacks(
        unrotated.current_version()
    )
    for kept in (registry, unrotated):
        kept.current_path.write_text("{")  # lost: the history's last champion is the way back
    assert registry.fallbacks(None) == unrotated.fallbacks(None)
    assert registry.pointer.last_champion() == unrotated.pointer.last_champion()
    assert registry._next_version() == unrotated._next_version()

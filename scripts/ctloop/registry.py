"""A versioned model registry on the filesystem (artifacts/).

    artifacts/
      versions/v0001/{embedding.onnx, classifier.onnx, pipeline.onnx, manifest.json}
      versions/v0002/...
      current.json        {"version": "v0002", ..., "stage": ...}: the served version (and the
                          challenger on stage, during progressive delivery): ctloop.pointer
      history.jsonl       one line per move of the pointer, rotated past 256 KiB (the moves of
                          the versions still registered carried over): ctloop.pointer
      .staging/           versions being written

A version is written in .staging/ (every file fsynced) and renamed into versions/ in one step, so
a crash leaves either no version or a complete one. The pointer is replaced atomically (temporary
file, fsync, rename). Versions are never modified; loading checks every file's sha256.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ctloop.pointer import (
    VERSION,
    CorruptPointerError,
    RegistryError,
    ServingPointer,
    StageMovedError,
)
from ctloop.util import fsync_dir, json_bytes, read_json, sha256_hex, utc_iso, write_durable

__all__ = [
    "CorruptPointerError",
    "IntegrityError",
    "ModelRegistry",
    "RegistryError",
    "StageMovedError",
]

MANIFEST = "manifest.json"
REQUIRED_FILES = ("embedding.onnx", "classifier.onnx", "pipeline.onnx")
_VERSION = VERSION
log = logging.getLogger("ctloop.registry")


class VersionNotFoundError(RegistryError):
    pass


class IntegrityError(RegistryError):
    """A version's files do not match its manifest (tampered, truncated or half-written)."""


@dataclass(frozen=True)
class VersionFiles:
    """A verified version: its manifest and the bytes of its files."""

    version: str
    manifest: dict
    files: dict[str, bytes]


class ModelRegistry:
    """Register, load, promote, roll back and list model versions under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.staging_dir = self.root / ".staging"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / ".registry.lock"), timeout=60)
        self.pointer = ServingPointer(self.root, self._lock, registered=self.version_ids)
        self.current_path = self.pointer.path
        self.history_path = self.pointer.history_path

    # -- writing -------------------------------------------------------------------------------

    def register(self, files: dict[str, bytes], manifest: dict, parent: str | None = None) -> str:
        """Store a new version (not served yet) and return its id; `parent` defaults to current."""
        missing = [name for name in REQUIRED_FILES if name not in files]
        if missing:
            raise RegistryError(f"a version needs {', '.join(missing)}")
        with self._lock:
            version = self._next_version()
            staging = self.staging_dir / f"{version}.{uuid.uuid4().hex}"
            staging.mkdir(parents=True)
            try:
                for name, data in files.items():
                    write_durable(staging / name, data)
                full_manifest = {
                    "version": version,
                    "parent": parent if parent is not None else self._current_or_none(),
                    "created_at": utc_iso(),
                    **manifest,
                    "files": {name: sha256_hex(data) for name, data in sorted(files.items())},
                }
                write_durable(staging / MANIFEST, json_bytes(full_manifest))
                fsync_dir(staging)
                self.versions_dir.mkdir(exist_ok=True)
                os.rename(staging, self.versions_dir / version)
            except OSError:  # a full disk: the half-written version goes, its room with it
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_dir(self.versions_dir)
        return version

    def promote(self, version: str, reason: str = "promote") -> None:
        """Serve `version` to everyone from now on (after checking that it loads)."""
        self.load(version)
        self.pointer.set_champion(version, reason)

    def start_stage(
        self, version: str, stage: str, percent: float, reason: str, rows: int = 0
    ) -> None:
        """Put `version` on stage (shadow or canary) beside the champion (after checking it)."""
        self.load(version)
        self.pointer.set_stage(version, stage, percent, reason, rows)

    def end_stage(self, promote: bool, reason: str, version: str | None = None) -> str:
        """Promote the challenger on stage to champion, or roll it back; its version. With
        `version`: only if that one is still on stage (StageMovedError otherwise)."""
        stage = self.pointer.stage()
        if stage is None:
            raise StageMovedError("no challenger is on stage")
        if promote:
            self.load(stage["version"])
        return self.pointer.end_stage(reason, version=version or stage["version"], promote=promote)

    def rollback(self, to: str | None = None) -> str:
        """Serve `to`, or by default the current version's parent; return the version now served.
        With an unreadable pointer only a named version can be served (that repairs it)."""
        try:
            current = self.current_version()
        except CorruptPointerError:
            if to is None:
                raise
            current = None
        target: str | None
        if to:
            target = to
        elif current is None:
            raise RegistryError("nothing is served yet: there is nothing to roll back")
        else:
            target = self.manifest(current).get("parent")
        if not target:
            raise RegistryError(f"{current} has no parent version to roll back to")
        if target == current:
            raise RegistryError(f"{current} is already served")
        self.promote(target, reason=f"rollback from {current or 'an unreadable pointer'}")
        return target

    def prune(self, keep_ancestors: int, keep_others: int) -> list[str]:
        """Delete the versions nobody needs any more and return them. Kept: the served version,
        its ancestors up to `keep_ancestors` generations (what a rollback goes back to), and the
        newest `keep_others` of the rest (recent rejected challengers, for inspection). Nothing
        is deleted while the pointer cannot be read."""
        with self._lock:
            current = self.current_version()
            if current is None:
                return []
            keep = {current, *self.ancestors(current)[:keep_ancestors]}
            stage = self.current_stage()
            if stage is not None:  # the challenger on stage is served too
                keep.add(stage["version"])
            others = [name for name in self.version_ids() if name not in keep]
            doomed = others[: max(0, len(others) - keep_others)]
            for name in doomed:
                shutil.rmtree(self.versions_dir / name)
            self._clean_staging()
        return doomed

    # -- reading -------------------------------------------------------------------------------

    def current_version(self) -> str | None:
        """The champion (None before the first); CorruptPointerError if unreadable."""
        return self.pointer.champion()

    def current_pointer(self) -> dict | None:
        return self.pointer.read()

    def current_stage(self) -> dict | None:
        """The challenger on stage, if any; CorruptPointerError if unreadable."""
        return self.pointer.stage()

    def ancestors(self, version: str) -> list[str]:
        """The version's parent, its parent's parent, ... as far as manifests can be read."""
        found: list[str] = []
        while True:
            try:
                parent = self.manifest(version).get("parent")
            except (RegistryError, OSError, ValueError):
                return found
            if not parent or parent in found:
                return found
            found.append(parent)
            version = parent

    def fallbacks(self, wanted: str | None) -> list[str]:
        """What to serve when `wanted` (the pointer's version, None if it cannot be read) does
        not load, best first: versions that were served before, never a rejected challenger.
        The pointer's ancestors first; with no pointer, the newest version the history moved the
        pointer to, then its ancestors; then every other version that passed the gate, newest
        first."""
        order: list[str] = []
        base = wanted
        if wanted is None:
            base = self.pointer.last_champion()
            if base is not None:
                order.append(base)
        if base is not None:
            order += self.ancestors(base)
        # A challenger that passed the gate but was only ever on stage (shadow, canary) and
        # rolled back there was judged worse live: never a fallback.
        staged_only = self._staged_only()
        for name in reversed(self.version_ids()):
            try:
                decision = (self.manifest(name).get("gate") or {}).get("decision")
            except (RegistryError, OSError, ValueError):
                continue
            if decision == "promoted" and name not in staged_only:
                order.append(name)
        return [version for version in dict.fromkeys(order) if version != wanted]

    def history(self) -> list[dict]:
        """Every move of the pointer, oldest first (of the versions still registered, before the
        history's last rotation: `ServingPointer.history`)."""
        return self.pointer.history()

    def version_ids(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        numbered = {
            path.name: int(match.group(1))
            for path in self.versions_dir.iterdir()
            if (match := _VERSION.match(path.name))
        }
        return sorted(numbered, key=numbered.__getitem__)

    def manifest(self, version: str) -> dict:
        path = self.versions_dir / version / MANIFEST
        if not _VERSION.match(version) or not path.exists():
            raise VersionNotFoundError(f"no model version {version!r} in {self.versions_dir}")
        try:
            return read_json(path)
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{version}: its manifest cannot be read ({exc})") from exc

    def list_versions(self) -> list[dict]:
        """Every readable version's manifest, oldest first, with `current` set on the champion
        and `stages` its history (a version whose manifest cannot be read is left out: `ctloop
        registry verify` names it)."""
        try:
            current = self.current_version()
        except CorruptPointerError:
            current = None
        history: dict[str, list[dict]] = {}
        for move in self.history():
            history.setdefault(str(move.get("version")), []).append(
                {
                    "stage": move.get("stage", "champion"),
                    "since": move.get("since"),
                    "reason": move.get("reason"),
                }
            )
        manifests = []
        for name in self.version_ids():
            try:
                manifest = self.manifest(name)
                stages = history.get(name, [])
                manifests.append({**manifest, "current": name == current, "stages": stages})
            except (RegistryError, OSError, ValueError) as exc:
                log.error("leaving out version %s: %s", name, exc)
        return manifests

    def load(self, version: str | None = None) -> VersionFiles:
        """Read a version (default: the served one) and verify every file against its manifest."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise VersionNotFoundError(
                    f"no model is served yet in {self.root}: train one first"
                )
        manifest = self.manifest(version)
        expected = manifest.get("files", {})
        missing = [name for name in REQUIRED_FILES if name not in expected]
        if missing:
            raise IntegrityError(f"{version}: the manifest lists no {', '.join(missing)}")
        files = {}
        for name, digest in expected.items():
            path = self.versions_dir / version / name
            try:
                data = path.read_bytes()
            except FileNotFoundError as exc:
                raise IntegrityError(f"{version}: {name} is missing") from exc
            if sha256_hex(data) != digest:
                raise IntegrityError(f"{version}: {name} does not match its sha256 in the manifest")
            files[name] = data
        return VersionFiles(version=version, manifest=manifest, files=files)

    # -- internals -----------------------------------------------------------------------------

    def _current_or_none(self) -> str | None:
        """The champion, or None while the pointer cannot be read (a rebuild replaces it)."""
        try:
            return self.current_version()
        except CorruptPointerError:
            return None

    def _next_version(self) -> str:
        """One past every version that exists or that the pointer names: an id is never reused,
        even when a version's folder was deleted (the history and the logs still name it)."""
        named = set(self.version_ids())
        try:
            pointer = self.current_pointer() or {}
        except CorruptPointerError:
            pointer = {"version": self.pointer.last_champion()}
        named.update(str(pointer.get(key)) for key in ("version", "previous"))
        named.add(str((pointer.get("stage") or {}).get("version")))
        numbers = [int(match.group(1)) for name in named if (match := _VERSION.match(name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def _staged_only(self) -> set[str]:
        """Versions the history put on stage and never made champion."""
        staged: set[str] = set()
        champions: set[str] = set()
        for move in self.history():
            stage = move.get("stage", "champion")
            (champions if stage == "champion" else staged).add(str(move.get("version")))
        return staged - champions

    def _clean_staging(self) -> None:
        if self.staging_dir.exists():
            shutil.rmtree(self.staging_dir)

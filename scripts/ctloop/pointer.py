"""artifacts/current.json and artifacts/history.jsonl: which version serves, and how it came to.

The one module that writes and reads them. current.json names the champion (the version every
client gets) and, during progressive delivery, the one challenger on stage:

    {"version": "v0007", "previous": "v0005", "since": ..., "reason": ...,
     "stage": {"version": "v0009", "stage": "canary", "percent": 5.0, "since": ...,
               "reason": ..., "from_rows": 840}}

It is replaced whole and atomically (temporary file, fsync, rename), so every worker reads one
consistent state: never a half-moved pointer, never an unknown mix. Each move appends one line to
history.jsonl, with the version's new stage (`champion`, `shadow`, `canary`, `retired`,
`rolled_back`) and the reason: the whole story of every version still registered is in that file.

    {"version": "v0009", "stage": "canary", "since": ..., "reason": ..., "percent": 5.0}

history.jsonl stays bounded (`ctloop.journal`): a move that finds it at HISTORY_ROTATE_BYTES
(256 KiB) or more, under the registry's lock, first replaces it by a new file whose first line
carries what the answers need from the moves before:

    {"event": "carry", "at": ..., "last_champion": "v0007", "moves": [every move so far of each
     version still registered (`ModelRegistry.version_ids`), oldest first]}

the old one kept as `history.<UTC time>.jsonl` beside it (the newest HISTORY_KEEP_ARCHIVES, 3; no
answer reads them). `history()`, `stages_of()` and `last_champion()` read that file alone, so they
are bounded, and give the same answers as the whole story for every version still registered.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from filelock import FileLock

from ctloop.journal import Journal, since_carry
from ctloop.util import json_bytes, read_json, utc_iso, write_atomic

log = logging.getLogger("ctloop.pointer")

VERSION = re.compile(r"^v(\d{4,})$")
STAGES = ("shadow", "canary")
HISTORY_ROTATE_BYTES = 256 * 1024  # history.jsonl's size at which the next move rotates it
HISTORY_KEEP_ARCHIVES = 3  # rotated histories kept beside it, newest first


class RegistryError(RuntimeError):
    """The registry (its versions or its pointer) cannot do what was asked."""


class PointerError(RegistryError):
    """The pointer cannot do what was asked."""


class StageMovedError(PointerError):
    """The stage a move was meant for has ended or changed meanwhile."""


class CorruptPointerError(PointerError):
    """current.json cannot be read as a pointer (truncated, edited, unreadable)."""


class ServingPointer:
    """`registered` names the versions still registered: a rotation of the history carries their
    moves only (every version's, without it)."""

    def __init__(
        self,
        root: Path,
        lock: FileLock,
        registered: Callable[[], Iterable[str]] | None = None,
        rotate_bytes: int | None = None,
    ) -> None:
        self.path = Path(root) / "current.json"
        self.history_path = Path(root) / "history.jsonl"
        self._lock = lock
        self._registered = registered
        bound = HISTORY_ROTATE_BYTES if rotate_bytes is None else rotate_bytes
        self._journal = Journal(self.history_path, lock, bound, HISTORY_KEEP_ARCHIVES)

    # -- reading ---------------------------------------------------------------------------------

    def read(self) -> dict | None:
        """The pointer (None before the first version); CorruptPointerError if unreadable."""
        try:
            pointer = read_json(self.path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CorruptPointerError(f"{self.path} cannot be read: {exc}") from exc
        if not VERSION.match(str(pointer.get("version"))):
            raise CorruptPointerError(f"{self.path} names no version: {pointer}")
        stage = pointer.get("stage")
        if stage is not None and (
            not isinstance(stage, dict)
            or not VERSION.match(str(stage.get("version")))
            or stage.get("stage") not in STAGES
        ):
            raise CorruptPointerError(f"{self.path} has an unreadable stage: {stage}")
        return pointer

    def champion(self) -> str | None:
        pointer = self.read()
        return pointer["version"] if pointer else None

    def stage(self) -> dict | None:
        """The challenger on stage ({"version", "stage", "percent", ...}), if any."""
        pointer = self.read()
        return pointer.get("stage") if pointer else None

    def history(self) -> list[dict]:
        """Every move, oldest first: since the history was last rotated, after the moves before
        that of the versions then still registered (a bounded read)."""
        carry, moves = since_carry(self._journal.read_all())
        return carried_moves(carry) + moves

    def stages_of(self, version: str) -> list[dict]:
        """The stages one version went through, oldest first: {"stage", "since", "reason"}."""
        return [
            {
                "stage": move.get("stage", "champion"),
                "since": move.get("since"),
                "reason": move.get("reason"),
            }
            for move in self.history()
            if move.get("version") == version
        ]

    def last_champion(self) -> str | None:
        """The last version the history made champion (the fallback when current.json is lost)."""
        carry, moves = since_carry(self._journal.read_all())
        return last_champion_in(moves) or carried_champion(carry)

    # -- moving ----------------------------------------------------------------------------------

    def set_champion(self, version: str, reason: str) -> None:
        """`version` serves everyone from now on; a stage it ends is closed as promoted, a stage
        of another version is closed as rolled back, the champion it replaces is retired."""
        with self._lock:
            pointer = self._read_for_update()
            previous = pointer.get("version")
            stage = pointer.get("stage")
            moves = []
            if stage is not None and stage["version"] != version:
                moves.append(self._move(stage["version"], "rolled_back", f"{reason} instead"))
            if previous and previous != version:
                moves.append(self._move(previous, "retired", f"{version} is champion: {reason}"))
            moves.append({**self._move(version, "champion", reason), "previous": previous})
            self._write({"version": version, "previous": previous, "since": utc_iso(),
                         "reason": reason, "stage": None}, moves)  # fmt: skip

    def set_stage(self, version: str, stage: str, percent: float, reason: str, rows: int) -> None:
        """Put `version` on stage beside the champion; a challenger already there is rolled back."""
        if stage not in STAGES:
            raise PointerError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
        with self._lock:
            pointer = self._read_for_update()
            if not pointer.get("version"):
                raise PointerError("no champion is served yet: a challenger needs one beside it")
            moves = []
            current = pointer.get("stage")
            if current is not None:
                moves.append(
                    self._move(current["version"], "rolled_back", f"superseded by {version}")
                )
            on_stage = {
                "version": version,
                "stage": stage,
                "percent": percent,
                "since": utc_iso(),
                "reason": reason,
                "from_rows": rows,
            }
            moves.append({**self._move(version, stage, reason), "percent": percent})
            self._write({**pointer, "stage": on_stage}, moves)

    def end_stage(self, reason: str, version: str | None = None, promote: bool = False) -> str:
        """Take the challenger off stage: promoted to champion, or rolled back (the champion
        keeps serving). With `version`, only if that version is still the one on stage (several
        workers may judge the same stage: the first move wins, the others get StageMovedError).
        Returns its version."""
        with self._lock:
            pointer = self._read_for_update()
            stage = pointer.get("stage")
            if stage is None:
                raise StageMovedError("no challenger is on stage")
            if version is not None and stage["version"] != version:
                raise StageMovedError(f"{version} is no longer on stage ({stage['version']} is)")
            if promote:
                self.set_champion(stage["version"], reason)  # the lock is re-entrant
            else:
                moves = [self._move(stage["version"], "rolled_back", reason)]
                self._write({**pointer, "stage": None}, moves)
            return stage["version"]

    # -- internals -------------------------------------------------------------------------------

    def _read_for_update(self) -> dict:
        try:
            return self.read() or {}
        except CorruptPointerError:  # moving the champion is how a broken pointer is repaired
            return {}

    def _move(self, version: str, stage: str, reason: str) -> dict:
        return {"version": version, "stage": stage, "since": utc_iso(), "reason": reason}

    def _write(self, pointer: dict, moves: list[dict]) -> None:
        """The new pointer first (what every worker reads), then its history lines. A move the
        history cannot take (no room) is undone: the old pointer is put back and the OSError
        raised, so that the history holds every move that was served."""
        try:
            before = self.path.read_bytes()
        except FileNotFoundError:
            before = None
        write_atomic(self.path, json_bytes(pointer))
        try:
            for move in moves:
                self._journal.append(move, self._carry)
        except OSError:
            log.error(
                "the pointer move to %s is undone: its history line cannot be written",
                pointer.get("version"),
            )
            with contextlib.suppress(OSError):
                if before is None:
                    self.path.unlink()
                else:
                    write_atomic(self.path, before)
            raise

    def _carry(self) -> dict:
        """What a rotation of the history keeps (under the lock): the last champion, and every
        move of the versions still registered."""
        carry, moves = since_carry(self._journal.read_all())
        last = last_champion_in(moves) or carried_champion(carry)
        every = carried_moves(carry) + moves
        if self._registered is not None:
            kept = {*self._registered(), *([last] if last else [])}
            every = [move for move in every if str(move.get("version")) in kept]
        return {"last_champion": last, "moves": every}


def last_champion_in(moves: list[dict]) -> str | None:
    for move in reversed(moves):
        if move.get("stage", "champion") == "champion" and VERSION.match(str(move.get("version"))):
            return str(move["version"])
    return None


def carried_champion(carry: dict | None) -> str | None:
    last = (carry or {}).get("last_champion")
    return last if isinstance(last, str) and VERSION.match(last) else None


def carried_moves(carry: dict | None) -> list[dict]:
    moves = (carry or {}).get("moves")
    return [move for move in moves if isinstance(move, dict)] if isinstance(moves, list) else []

"""artifacts/retrains.jsonl, the retrain ledger: the one module that appends and reads it.

One JSON object per line, appended durably:

- a decision: {"trigger_rows": N, "decision": "promoted" | "rejected" | "failed" | "superseded",
  "version": ..., "reason": ..., "seconds": ..., "finished_at": ...};
- an attempt: {"trigger_rows": N, "event": "attempt", "attempt": 1, "pid": ..., "started_at": ...},
  written before a trainer starts on a trigger, so that a trigger whose trainer keeps dying is
  given up after a bounded number of attempts instead of being retried forever;
- a check: {"event": "check", "rows": N, "drift_share": ..., "served_accuracy": ..., ...}, what
  the drift and quality triggers saw (`ctloop.triggers`);
- a carry, the first line after a rotation: {"event": "carry", "at": ..., "last_decision": {...},
  "last_decided": N, "last_checked": N, "last_by_reason": {reason: N}, "open_attempts":
  [[trigger_rows, attempts], ...], "streak": [decision, count], "finetunes_since_scratch": N,
  "decision_counts": {decision: count}}: every answer below as it stood at the rotation.

The file stays bounded (`ctloop.journal`): an append that finds it at ROTATE_BYTES (1 MiB) or
more, under its lock (`retrains.jsonl.lock` beside it), first replaces it by a new file holding
the carry line alone; the old one is kept as `retrains.<UTC time>.jsonl` beside it, the newest
KEEP_ARCHIVES (3) of them, for people: no answer reads them. So a new process (the trainer, each
serving worker) reads at most ROTATE_BYTES and one line, whatever the history, and gets the same
answers as from every line ever written.

With DATABASE_URL set, the same lines and rotation live in PostgreSQL (`open_ledger`,
ctloop.prod_db.PostgresJournal), and the file is not used.

Light on purpose (no scikit-learn): the serving workers read it for /model and /metrics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from filelock import FileLock

from ctloop.journal import CARRY, Journal, since_carry

if TYPE_CHECKING:
    from ctloop.prod_db import PostgresJournal

DECISIONS = ("promoted", "rejected", "failed", "superseded")
TRAINED = ("promoted", "rejected")  # decisions of a retrain that trained (a fine-tune, a rebuild)
ROTATE_BYTES = 1 << 20  # the file's size at which the next append rotates it
KEEP_ARCHIVES = 3  # rotated files kept beside it, newest first


def is_decision(entry: dict) -> bool:
    return "decision" in entry and isinstance(entry.get("trigger_rows"), int)


def is_trigger(value: object) -> bool:
    """A row count an attempt can be counted under (NaN equals nothing, not even itself)."""
    return isinstance(value, (int, float)) and value == value


@dataclass
class LedgerState:
    """What every answer needs from the lines read so far; a carry line holds it whole."""

    last_decision: dict | None = None
    last_decided: int = 0
    last_checked: int = 0
    last_by_reason: dict[str, int] = field(default_factory=dict)
    open_attempts: dict[Any, int] = field(default_factory=dict)  # only triggers not decided since
    streak: tuple[Any, int] | None = None  # the latest decision but superseded, times in a row
    finetunes_since_scratch: int = 0
    decision_counts: dict[str, int] = field(default_factory=dict)

    def add(self, entry: dict) -> None:
        trigger = entry.get("trigger_rows")
        if is_trigger(trigger):
            if "decision" in entry:
                self.open_attempts.pop(trigger, None)
            elif entry.get("event") == "attempt":
                self.open_attempts[trigger] = self.open_attempts.get(trigger, 0) + 1
        if is_decision(entry):
            self._add_decision(entry, entry["trigger_rows"])
        elif entry.get("event") == "check" and isinstance(entry.get("rows"), int):
            self.last_checked = max(self.last_checked, entry["rows"])

    def _add_decision(self, entry: dict, trigger: int) -> None:
        decision = entry["decision"]
        self.last_decision = entry
        self.last_decided = max(self.last_decided, trigger)
        reasons = entry.get("reasons") or ()
        for reason in reasons if isinstance(reasons, (list, str, dict)) else ():
            if isinstance(reason, str):
                self.last_by_reason[reason] = max(self.last_by_reason.get(reason, trigger), trigger)
        if isinstance(decision, str):
            self.decision_counts[decision] = self.decision_counts.get(decision, 0) + 1
        if decision != "superseded":
            again = self.streak is not None and self.streak[0] == decision
            self.streak = (decision, self.streak[1] + 1 if self.streak and again else 1)
        if decision in TRAINED and entry.get("mode") == "scratch":
            self.finetunes_since_scratch = 0
        elif decision in TRAINED and entry.get("mode") == "finetune":
            self.finetunes_since_scratch += 1

    def carry(self) -> dict:
        return {
            "last_decision": self.last_decision,
            "last_decided": self.last_decided,
            "last_checked": self.last_checked,
            "last_by_reason": self.last_by_reason,
            "open_attempts": [[trigger, count] for trigger, count in self.open_attempts.items()],
            "streak": list(self.streak) if self.streak is not None else None,
            "finetunes_since_scratch": self.finetunes_since_scratch,
            "decision_counts": self.decision_counts,
        }

    @classmethod
    def from_carry(cls, line: dict) -> LedgerState:
        """The state a carry line holds (a part that cannot be read is left at its start)."""
        state = cls()
        if isinstance(line.get("last_decision"), dict):
            state.last_decision = line["last_decision"]
        for name in ("last_decided", "last_checked", "finetunes_since_scratch"):
            if isinstance(line.get(name), int):
                setattr(state, name, line[name])
        for name in ("last_by_reason", "decision_counts"):
            if isinstance(line.get(name), dict):
                values = {k: v for k, v in line[name].items() if isinstance(v, int)}
                setattr(state, name, values)
        for pair in line.get("open_attempts") or ():
            if isinstance(pair, list) and len(pair) == 2 and is_trigger(pair[0]):
                state.open_attempts[pair[0]] = pair[1] if isinstance(pair[1], int) else 0
        streak = line.get("streak")
        if isinstance(streak, list) and len(streak) == 2 and isinstance(streak[1], int):
            state.streak = (streak[0], streak[1])
        return state


class RetrainLog:
    """The ledger, read incrementally: each call reads only the lines appended since the last
    (the whole file again, bounded, after a rotation). Safe to share between threads."""

    def __init__(
        self,
        path: Path,
        rotate_bytes: int | None = None,
        keep_archives: int | None = None,
        journal: Journal | PostgresJournal | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._journal = journal or Journal(
            self.path,
            FileLock(str(self.lock_path), timeout=60),
            ROTATE_BYTES if rotate_bytes is None else rotate_bytes,
            KEEP_ARCHIVES if keep_archives is None else keep_archives,
        )
        self._guard = threading.RLock()
        self._state = LedgerState()

    def append(self, entry: dict) -> None:
        """One line, durably, under the ledger's lock (the file rotated first when it is due);
        OSError, and the file as it was, when the line cannot be written."""
        self._journal.append(entry, self._carry)

    def _carry(self) -> dict:
        with self._guard:
            self.refresh()
            return self._state.carry()

    def archives(self) -> list[Path]:
        """The rotated files kept beside the ledger, oldest first."""
        return self._journal.archives()

    def refresh(self) -> None:
        """Read what was appended since the last call (the whole file again if it was replaced)."""
        with self._guard:
            entries, restart = self._journal.read_new()
            if restart:
                self._state = LedgerState()
            for entry in entries:
                if entry.get("event") == CARRY:
                    self._state = LedgerState.from_carry(entry)
                else:
                    self._state.add(entry)

    def entries(self) -> list[dict]:
        """The lines since the file was last rotated (every line if it never was), oldest first;
        the carry line, and a torn or unreadable line, are left out."""
        return since_carry(self._journal.read_all())[1]

    def decisions(self) -> list[dict]:
        """The decision lines since the file was last rotated, oldest first, after the last
        decision before the rotation (from the carry line): the last one is always the last
        decision; older ones are in the archives, and `decision_counts` counts them all."""
        carry, entries = since_carry(self._journal.read_all())
        decisions = [entry for entry in entries if is_decision(entry)]
        before = LedgerState.from_carry(carry).last_decision if carry is not None else None
        return decisions if before is None else [before, *decisions]

    def decision_counts(self) -> dict[str, int]:
        """How many decisions of each kind were ever written ("promoted": 12, ...)."""
        with self._guard:
            self.refresh()
            return dict(self._state.decision_counts)

    def last_decision(self) -> dict | None:
        with self._guard:
            self.refresh()
            return self._state.last_decision

    def last_decided_trigger(self) -> int:
        """The largest row count decided so far (0 before the first)."""
        with self._guard:
            self.refresh()
            return self._state.last_decided

    def last_checked_rows(self) -> int:
        """The row count at the last drift and quality check (0 before the first)."""
        with self._guard:
            self.refresh()
            return self._state.last_checked

    def last_trigger_for(self, reason: str) -> int:
        """The largest row count a retrain for this reason started at (far back if none)."""
        with self._guard:
            self.refresh()
            return self._state.last_by_reason.get(reason, -(10**12))

    def attempts(self, trigger_rows: int) -> int:
        """How many trainers started on this trigger since it was last decided."""
        with self._guard:
            self.refresh()
            return self._state.open_attempts.get(trigger_rows, 0)

    def streak(self, decision: str) -> int:
        """How many of the latest decisions in a row are `decision` (superseded ones skipped)."""
        with self._guard:
            self.refresh()
            streak = self._state.streak
            return streak[1] if streak is not None and streak[0] == decision else 0

    def finetunes_since_scratch(self) -> int:
        """Fine-tunes decided (promoted or rejected) since the last full rebuild."""
        with self._guard:
            self.refresh()
            return self._state.finetunes_since_scratch


class LedgerSettings(Protocol):
    @property
    def retrain_log_path(self) -> Path: ...

    @property
    def database_url(self) -> str | None: ...


def open_ledger(settings: LedgerSettings) -> RetrainLog:
    """The configured ledger: in PostgreSQL when DATABASE_URL is set (ctloop.prod_db), else
    artifacts/retrains.jsonl; the same lines and answers either way."""
    if settings.database_url:
        from ctloop.prod_db import PostgresJournal

        return RetrainLog(settings.retrain_log_path, journal=PostgresJournal(settings.database_url))
    return RetrainLog(settings.retrain_log_path)

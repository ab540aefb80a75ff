"""artifacts/retrains.jsonl, the retrain ledger: the one module that appends and reads it.

One JSON object per line, appended durably, never rewritten:

- a decision: {"trigger_rows": N, "decision": "promoted" | "rejected" | "failed" | "superseded",
  "version": ..., "reason": ..., "seconds": ..., "finished_at": ...};
- an attempt: {"trigger_rows": N, "event": "attempt", "attempt": 1, "pid": ..., "started_at": ...},
  written before a trainer starts on a trigger, so that a trigger whose trainer keeps dying is
  given up after a bounded number of attempts instead of being retried forever;
- a check: {"event": "check", "rows": N, "drift_share": ..., "served_accuracy": ..., ...}, what
  the drift and quality triggers saw (`ctloop.triggers`).

Light on purpose (no scikit-learn): the serving workers read it for /model and /metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

from ctloop.util import append_json_line, read_json_lines

DECISIONS = ("promoted", "rejected", "failed", "superseded")


class RetrainLog:
    """The ledger, read incrementally: each call reads only the lines appended since the last."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self._inode, self._offset = inode, 0
        self._entries: list[dict] = []
        self._decisions: list[dict] = []
        self._last_decided = 0
        self._last_checked = 0
        self._last_by_reason: dict[str, int] = {}

    def append(self, entry: dict) -> None:
        append_json_line(self.path, entry)

    def refresh(self) -> None:
        """Read what was appended since the last call (everything again if the file changed)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self._reset(None)
            return
        if status.st_ino != self._inode or status.st_size < self._offset:
            self._reset(status.st_ino)
        if status.st_size == self._offset:
            return
        new, self._offset = read_json_lines(self.path, self._offset)
        self._entries.extend(new)
        for entry in new:
            if "decision" in entry and isinstance(entry.get("trigger_rows"), int):
                self._decisions.append(entry)
                self._last_decided = max(self._last_decided, entry["trigger_rows"])
                for reason in entry.get("reasons") or ():
                    last = self._last_by_reason.get(reason, entry["trigger_rows"])
                    self._last_by_reason[reason] = max(last, entry["trigger_rows"])
            elif entry.get("event") == "check" and isinstance(entry.get("rows"), int):
                self._last_checked = max(self._last_checked, entry["rows"])

    def entries(self) -> list[dict]:
        """Every line so far, oldest first (a torn or unreadable line is left out)."""
        self.refresh()
        return list(self._entries)

    def decisions(self) -> list[dict]:
        """The decision lines, oldest first."""
        self.refresh()
        return list(self._decisions)

    def last_decision(self) -> dict | None:
        self.refresh()
        return self._decisions[-1] if self._decisions else None

    def last_decided_trigger(self) -> int:
        """The largest row count decided so far (0 before the first)."""
        self.refresh()
        return self._last_decided

    def last_checked_rows(self) -> int:
        """The row count at the last drift and quality check (0 before the first)."""
        self.refresh()
        return self._last_checked

    def last_trigger_for(self, reason: str) -> int:
        """The largest row count a retrain for this reason started at (far back if none)."""
        self.refresh()
        return self._last_by_reason.get(reason, -(10**12))

    def attempts(self, trigger_rows: int) -> int:
        """How many trainers started on this trigger since it was last decided."""
        count = 0
        for entry in self.entries():
            if entry.get("trigger_rows") != trigger_rows:
                continue
            count = 0 if "decision" in entry else count + (entry.get("event") == "attempt")
        return count

    def streak(self, decision: str) -> int:
        """How many of the latest decisions in a row are `decision` (superseded ones skipped)."""
        count = 0
        for entry in reversed(self.decisions()):
            if entry["decision"] == "superseded":
                continue
            if entry["decision"] != decision:
                break
            count += 1
        return count

    def finetunes_since_scratch(self) -> int:
        """Fine-tunes decided (promoted or rejected) since the last full rebuild."""
        count = 0
        for entry in reversed(self.decisions()):
            if entry.get("mode") == "scratch" and entry["decision"] in ("promoted", "rejected"):
                break
            count += entry.get("mode") == "finetune" and entry["decision"] in (
                "promoted",
                "rejected",
            )
        return count

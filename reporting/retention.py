"""What the Evidently workspace keeps, so that `evidently ui` holds a bounded amount for months.

`evidently ui` loads every snapshot of the workspace into memory, and a snapshot with its report
(the per-column drift plots) is about 5 MB at 32 embedding columns. So:

- the newest REPORTING_KEEP_SNAPSHOTS snapshots are kept whole (figures and report);
- older ones are kept one per REPORTING_HISTORY_STEP_SECONDS (the newest of each step), with
  their figures only: every plot over time still has its point, the report is gone (its HTML
  file is in the reports folder while it is among the newest REPORTING_KEEP_REPORTS);
- snapshots older than REPORTING_HISTORY_DAYS are deleted.

A snapshot's time is read from its id (Evidently's ids are UUIDv7: milliseconds since the epoch
first), so deciding reads no snapshot. Thinning writes the figures-only snapshot to a file beside
the workspace, then renames it over the snapshot: a crash leaves the old file or the new one,
both whole, and `evidently ui`'s file watcher sees a created file and reloads it. A snapshot file
that cannot be read (a crash while Evidently wrote it) would stop `evidently ui` from starting:
the first pass of a process removes it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reporting.workspace import SNAPSHOTS, WorkspaceFiles, write_renamed_in

log = logging.getLogger("reporting.retention")

HEAVY = ("widgets", "tests_widgets")  # a snapshot's rendered report: what thinning empties


def snapshot_seconds(snapshot_id: uuid.UUID) -> float:
    """When a snapshot was added: the UUIDv7 time stamp of its id, in seconds since the epoch."""
    return (snapshot_id.int >> 80) / 1000.0


@dataclass(frozen=True)
class Plan:
    """What to do with a project's snapshots: keep whole, keep figures only, delete."""

    whole: list[uuid.UUID] = field(default_factory=list)
    thin: list[uuid.UUID] = field(default_factory=list)
    delete: list[uuid.UUID] = field(default_factory=list)


def plan(
    snapshot_ids: Iterable[uuid.UUID], now: float, keep: int, step_seconds: float, days: float
) -> Plan:
    """Keep the newest `keep` whole; of the others younger than `days`, the newest of each step
    of `step_seconds` with figures only; delete the rest."""
    ordered = sorted(snapshot_ids, key=snapshot_seconds)
    whole, older = ordered[len(ordered) - keep :], ordered[: max(len(ordered) - keep, 0)]
    thin: list[uuid.UUID] = []
    delete: list[uuid.UUID] = []
    oldest = now - days * 86400
    steps: set[int] = set()
    for snapshot_id in reversed(older):
        seconds = snapshot_seconds(snapshot_id)
        step = int(seconds // step_seconds)
        if seconds < oldest or step in steps:
            delete.append(snapshot_id)
        else:
            steps.add(step)
            thin.append(snapshot_id)
    return Plan(whole=whole, thin=thin[::-1], delete=delete[::-1])


class Retention:
    """Applies the plan to one workspace; remembers which snapshots it already thinned."""

    def __init__(self, workspace_dir: Path, keep: int, step_seconds: float, days: float) -> None:
        self.workspace_dir = Path(workspace_dir)
        self.keep, self.step_seconds, self.days = keep, step_seconds, days
        self._thin: set[uuid.UUID] = set()  # thinned, or checked to be thin, by this process
        self._checked = False  # heal() has checked every file

    def heal(self) -> None:
        """Once per process, before the workspace is opened (opening it reads every snapshot):
        remove snapshot files that cannot be read."""
        if self._checked:
            return
        for path in sorted(self.workspace_dir.glob(f"*/{SNAPSHOTS}/*.json")):
            try:
                json.loads(path.read_bytes())
            except (OSError, ValueError) as error:
                log.error(
                    "snapshot file cannot be read; removing it so that `evidently ui` starts",
                    extra={"path": str(path), "error": str(error)},
                )
                path.unlink(missing_ok=True)
        self._checked = True

    def apply(self, workspace: WorkspaceFiles, project_id: uuid.UUID, now: float) -> Plan:
        """Thin and delete as planned; returns the plan."""
        folder = workspace.snapshot_folder(project_id)
        runs = workspace.list_runs(project_id)
        decided = plan(runs, now, self.keep, self.step_seconds, self.days)
        for snapshot_id in decided.delete:
            workspace.delete_run(project_id, snapshot_id)
            self._thin.discard(snapshot_id)
        for snapshot_id in decided.thin:
            if snapshot_id not in self._thin:
                thin_snapshot(folder / f"{snapshot_id}.json", self.workspace_dir.parent)
                self._thin.add(snapshot_id)
        return decided


def thin_snapshot(path: Path, scratch: Path) -> bool:
    """Empty the snapshot's rendered report in place (atomically); False if it already was."""
    try:
        snapshot = json.loads(path.read_bytes())
    except FileNotFoundError:
        return False
    if not any(snapshot.get(key) for key in HEAVY):
        return False
    for key in HEAVY:
        snapshot[key] = []
    # Written outside the watched workspace, then renamed in: the watcher sees one created file.
    write_renamed_in(path, json.dumps(snapshot).encode("utf-8"), scratch)
    return True

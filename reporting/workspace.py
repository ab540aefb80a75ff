"""The Evidently workspace folder, written file by file: projects, dashboards, snapshots.

Evidently's `Workspace` reads every snapshot of the folder when it is opened (its dataset manager
loads the whole local state), so adding one snapshot to weeks of history would cost what the
history costs: 744 MB of peak RSS with 864 snapshots against 525 MB with 48 (docs/history.md).
The service only writes, so it goes through Evidently's own file layer (the `LocalState` that
`Workspace` writes through, same layout and serialisation), which opens nothing it is not asked
for. A snapshot is written beside the workspace and renamed in: never seen half-written, and
`evidently ui`'s file watcher sees one created file.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from evidently.core.report import Snapshot
from evidently.legacy.core import new_id
from evidently.legacy.utils import NumpyEncoder
from evidently.sdk.models import DashboardModel, ProjectModel
from evidently.ui.storage.local.base import LocalState

from ctloop.util import fsync_dir

SNAPSHOTS = "snapshots"  # a project's snapshots: <workspace>/<project id>/snapshots/<id>.json


class WorkspaceFiles:
    """One workspace folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._state = LocalState(str(self.path))

    def find_projects(self, name: str) -> list[ProjectModel]:
        """The projects of that name, oldest id first."""
        found = []
        for project_id in self._state.list_projects():
            try:
                project = self._state.read_project(project_id)
            except FileNotFoundError:  # a folder without its metadata: not a project
                continue
            if project.name == name:
                found.append(project)
        return sorted(found, key=lambda project: project.id)

    def create_project(self, name: str, description: str) -> ProjectModel:
        return self._state.write_project(ProjectModel(name=name, description=description))

    def save_dashboard(self, project_id: uuid.UUID, dashboard: DashboardModel) -> None:
        self._state.write_dashboard(project_id, dashboard)

    def snapshot_folder(self, project_id: uuid.UUID) -> Path:
        return self.path / str(project_id) / SNAPSHOTS

    def add_run(self, project_id: uuid.UUID, snapshot: Snapshot) -> uuid.UUID:
        """Write the snapshot whole under a new id (UUIDv7, as Evidently names them)."""
        snapshot_id = new_id()
        model = snapshot.to_snapshot_model()
        text = json.dumps(model.dict(), cls=NumpyEncoder).encode("utf-8")
        folder = self.snapshot_folder(project_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_renamed_in(folder / f"{snapshot_id}.json", text, self.path.parent)
        return snapshot_id

    def list_runs(self, project_id: uuid.UUID) -> list[uuid.UUID]:
        folder = self.snapshot_folder(project_id)
        if not folder.is_dir():
            return []
        return [uuid.UUID(str(found)) for found in self._state.list_snapshots(project_id)]

    def delete_run(self, project_id: uuid.UUID, snapshot_id: uuid.UUID) -> None:
        (self.snapshot_folder(project_id) / f"{snapshot_id}.json").unlink(missing_ok=True)


def write_renamed_in(path: Path, data: bytes, scratch: Path) -> None:
    """Write `data` to `scratch` (outside the watched workspace, on the same file system), fsync
    it, rename it to `path`: the file there is always whole."""
    temporary = scratch / f".{path.name}.writing"
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(path.parent)

"""The dashboard on a model of sounds: unchanged, it flags a new microphone's noise as drift and
scores the feedback's quality as for pictures (it reads embeddings and labels, never media)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from evidently.core.report import Snapshot
from evidently.ui.workspace import Workspace

from ctloop.config import CoreSettings
from harness.data import copy_reference, served_feedback, write_prod
from harness.reporting import reporting_settings
from harness.speech import with_noise
from reporting.project import update
from reporting.snapshots import metric_values


def figures(tmp_path: Path, built: CoreSettings, feedback) -> dict[str, object]:
    data_dir = tmp_path / "data"
    copy_reference(built, data_dir)
    settings = reporting_settings(data_dir)
    write_prod(settings.prod_data_path, *feedback)
    result = update(settings)
    model = Workspace(str(settings.workspace_dir)).get_run(result.project_id, result.snapshot_id)
    return {kind: value for kind, _, value in metric_values(Snapshot.load_model(model))}


def test_noisy_recordings_drift_and_the_quality_is_the_served_one(
    tmp_path: Path, built_audio: CoreSettings
) -> None:
    clean = served_feedback(built_audio)
    noisy = served_feedback(built_audio, lambda wav, index: with_noise(wav, 0.0, index))
    calm = figures(tmp_path / "clean", built_audio, clean)
    loud = figures(tmp_path / "noisy", built_audio, noisy)
    assert calm["DriftedColumnsCount"]["share"] <= 0.2
    assert loud["DriftedColumnsCount"]["share"] >= 0.5
    for (_, truth, served), seen in ((clean, calm), (noisy, loud)):
        assert seen["AccuracyScore"] == np.mean(truth == served)
    assert calm["AccuracyScore"] >= 0.95 > loud["AccuracyScore"]

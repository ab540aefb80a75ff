"""A short drift scenario against a live server: the claims the simulator's report makes hold."""

from __future__ import annotations

import pytest

from ctloop.registry import ModelRegistry
from harness.data import PLAIN_ENV, copy_workspace
from harness.processes import LiveServer, ReportingServer
from traffic.report import plot, summary, write_csv
from traffic.scenario import Scenario, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def played(plain_built, tmp_path_factory):
    """On the plain model (PLAIN_ENV): a drift it visibly suffers, to check what the report
    says about it; the default model reads slanted digits at 0.95 from the start."""
    root = tmp_path_factory.mktemp("traffic")
    settings = copy_workspace(plain_built, root)
    dashboard_env = {"REPORTING_REFRESH_SECONDS": "1", "MONITORING_MIN_ROWS": "20"}
    with (
        LiveServer(settings, root / "server.log", RETRAIN_EVERY="20", **PLAIN_ENV) as server,
        ReportingServer(settings.data_dir, root / "reporting.log", **dashboard_env) as dashboard,
    ):
        scenario = Scenario(
            url=server.url,
            samples_dir=settings.samples_dir,
            transform="slant",
            clean_windows=2,
            drift_windows=3,
            evaluation_size=80,
            metrics_url=dashboard.metrics_url,
            token=server.token,
        )
        records = run(scenario)
    return settings, records, root


def test_the_drift_takes_accuracy_away_from_the_initial_model(played) -> None:
    _, records, _ = played
    first = records[0]  # scored after one clean window
    assert first.clean_accuracy >= 0.95
    assert first.drifted_accuracy < first.clean_accuracy - 0.2


def test_the_drift_share_rises_above_its_pre_drift_value(played) -> None:
    _, records, _ = played
    before = records[1].drift_share  # the last clean window: 40 clean rows
    after = [record.drift_share for record in records if record.phase != "clean"]
    assert before is not None and before < 0.5
    assert max(after) >= 0.5 > before


def test_retraining_on_feedback_wins_back_accuracy_on_the_drifted_stream(played) -> None:
    _, records, _ = played
    right_after = records[1].drifted_accuracy
    assert records[-1].drifted_accuracy > right_after + 0.15
    assert records[-1].retrains == 5 and records[-1].promoted >= 1


def test_no_promoted_model_is_worse_than_its_predecessor_on_the_gate_set(played) -> None:
    settings, _, _ = played
    for manifest in ModelRegistry(settings.artifacts_dir).list_versions():
        gate = manifest.get("gate")
        if gate["champion_score"] is None:  # the first model: nothing to compare with
            assert manifest["version"] == "v0001"
            continue
        if gate["decision"] == "promoted":
            assert gate["challenger_score"]["score"] >= gate["champion_score"]["score"]


def test_the_report_files(played) -> None:
    _, records, root = played
    write_csv(records, root / "out" / "traffic.csv")
    plot(records, root / "out" / "traffic.png", "test")
    lines = (root / "out" / "traffic.csv").read_text().splitlines()
    assert len(lines) == 1 + len(records) and lines[0].startswith("window,phase,rows")
    assert (root / "out" / "traffic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = summary(records, 20)
    assert figures["rows_to_flag_drift"] is not None and figures["rows_to_flag_drift"] <= 60

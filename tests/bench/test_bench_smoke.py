"""Every standing benchmark still starts, measures and writes its figures on today's code: each
one's smoke run (`python -m bench.<name> --smoke DIR`: its own code, tiny sizes, one-second load
runs, real servers) on a copy of the built workspace, its output read back. The tests run the
benchmarks as processes and never import them (import-linter). bench.abuse's smoke run is
tests/serving/test_api_bad_input.py's test_the_abuse_benchmark_runs.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ctloop.config import CoreSettings
from harness.data import copy_workspace
from harness.processes import REPO, child_environment

needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None,
    reason="wrk is not installed (apt-get install wrk): this benchmark drives its load with it",
)
NUMBER = r"([\d,]+(?:\.\d+)?)"


def smoke(name: str, root: Path, built: CoreSettings | None = None, timeout: float = 300) -> str:
    """Standard output of bench.<name>'s smoke run in `root` (on a copy of `built`, if given)."""
    if built is not None:
        copy_workspace(built, root)
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--smoke", str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_environment(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def figures(pattern: str, text: str) -> list[float]:
    """The numbers of the first line matching `pattern` (NUMBER groups), commas dropped."""
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no line like {pattern!r} in:\n{text}"
    return [float(value.replace(",", "")) for value in match.groups()]


@pytest.fixture
def docs_untouched():
    """A smoke run writes under its own folder: docs/benchmarks.md stays as it was."""
    page = REPO / "docs" / "benchmarks.md"
    before = page.read_bytes()
    yield
    assert page.read_bytes() == before, "a smoke run wrote into docs/benchmarks.md"


@pytest.mark.slow
@needs_wrk
def test_serving_benchmark(built, tmp_path, docs_untouched) -> None:
    """make bench: every scenario (product JSON and multipart, bare route, naive scikit-learn
    route, two workers, during retrains, /feedback), BentoML left out (its .venv-bench is make
    bench's); each server answered the bench's 3 before it was measured."""
    out = smoke("serving", tmp_path, built)
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    measured = {run["scenario"].split()[0]: run for run in results["runs"]}
    assert set(measured) >= {"1", "2", "3", "4", "1b", "6a", "6b", "7"}, sorted(measured)
    assert "5" not in measured and results["notes"]["bentoml"].startswith("skipped: a smoke run")
    for run in results["runs"]:
        assert run["requests"] > 0 and run["rps"] > 0 and run["errors"] == 0, run
        assert 0 < run["p50_ms"] <= run["p99_ms"], run
        assert f"{run['rps']:8.0f} req/s" in out, run  # printed as it was measured
    assert results["notes"]["start_to_ready_s"] > 0
    assert all(entry["rss_after_mib"] and min(entry["rss_after_mib"]) > 0
               for entry in results["memory"]), results["memory"]  # fmt: skip
    assert sum(results["spread"][0]["requests_by_worker"].values()) > 0, results["spread"]
    retrains = results["retrains"]
    trained = [entry for entry in retrains["ledger"] if entry.get("seconds", 0) > 0]
    assert trained and retrains["rows"] >= 20, retrains
    (appends,) = results["feedback_rows"]
    # Every acknowledged row is on disk (requests still in flight when wrk stops add a few).
    assert 0 < appends["acknowledged"] <= appends["rows_added"], appends
    report = (tmp_path / "benchmarks.md").read_text()
    for section in ("## Targets", "## /predict while retrains run back to back", "## Memory"):
        assert section in report, section
    assert re.search(r"works through [1-9]\d* retrains", report), report


@needs_wrk
def test_ab_benchmark(built, tmp_path) -> None:
    """make bench-ab: two checkouts served side by side, interleaved (this one against itself)."""
    out = smoke("ab", tmp_path, built)
    for name in ("baseline", "candidate"):
        rps, p50, p99, errors = figures(
            rf"^round 1 {name} +{NUMBER} req/s +p50 +{NUMBER} ms +p99 +{NUMBER} ms +errors (\d+)",
            out,
        )
        assert rps > 0 and 0 < p50 <= p99 and errors == 0, out
    throughput, p99 = figures(rf"candidate/baseline: throughput x{NUMBER}, p99 x{NUMBER}", out)
    assert throughput > 0 and p99 > 0, out


@pytest.mark.slow
@needs_wrk
def test_delivery_benchmark(built, tmp_path, docs_untouched) -> None:
    """make bench-delivery: a server with a shadow at 100 % against one with no stage, its
    block written into the smoke folder's benchmarks.md."""
    smoke("delivery", tmp_path, built)
    block = (tmp_path / "benchmarks.md").read_text()
    assert block.count("<!-- delivery -->") == 1 and "<!-- /delivery -->" in block, block
    for server in ("no stage", "shadow 100 %"):
        rps, p50, p99, errors = figures(
            rf"^\| {server} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| (\d+) \|", block
        )
        assert rps > 0 and 0 < p50 <= p99 and errors == 0, block
    (ratio,) = figures(rf"p99 ratio shadow / no stage: \*\*{NUMBER}\*\*", block)
    answered, agreed = figures(
        rf"The shadow answered {NUMBER} images \(agreeing .* on {NUMBER}%", block
    )
    assert ratio > 0 and answered > 0 and agreed > 50, block


@pytest.mark.slow
def test_burst_benchmark(built, tmp_path) -> None:
    """python -m bench.burst: a burst of feedback, then every retrain it triggered decided."""
    out = smoke("burst", tmp_path, built)
    sent, clients, seconds, rate = figures(
        rf"^burst: {NUMBER} feedbacks from {NUMBER} clients in {NUMBER} s \({NUMBER}/s\)", out
    )
    assert sent == 40 and clients > 0 and seconds > 0 and rate > 0, out
    rows, last = figures(rf"replies \{{200: 40\}}, {NUMBER} rows, last trigger {NUMBER}", out)
    assert rows == 40 and last == 40, out
    decided, backlog = figures(
        rf"^last trigger decided {NUMBER} s after .* backlog then (\d+)", out
    )
    assert decided > 0 and backlog == 0, out
    (retrains,) = figures(rf"^decisions: {NUMBER} retrains", out)
    assert retrains >= 1, out


@pytest.mark.slow
def test_traffic_docs_benchmark(built, tmp_path) -> None:
    """make traffic-docs: the drift scenario against a 2-worker API and the dashboard, one clean
    window and one drifted (slant), its page, curve and CSV written into the smoke folder."""
    out = smoke("traffic_docs", tmp_path, built)
    assert re.search(r"^  window  1 clean ", out, re.MULTILINE), out
    assert re.search(r"^  window  2 slant ", out, re.MULTILINE), out
    with (tmp_path / "traffic.csv").open(newline="") as handle:
        windows = list(csv.DictReader(handle))
    assert [row["phase"] for row in windows] == ["clean", "slant"], windows
    for row in windows:
        assert 0.5 <= float(row["clean_accuracy"]) <= 1, row
        assert 0 < float(row["drifted_accuracy"]) <= 1, row
        assert 0 <= float(row["drift_share"]) <= 1, row  # the dashboard's, read over HTTP
    assert [int(row["rows"]) for row in windows] == [20, 40], windows
    page = (tmp_path / "traffic.md").read_text()
    assert "| slant (default) |" in page and "## Fine-tuning and retraining" in page, page
    assert (tmp_path / "traffic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_feedback_writer_benchmark(tmp_path) -> None:
    """python -m bench.feedback_writer: durable appends to one prod_data.csv by 1 and 2 writer
    processes (the benchmark itself checks that every row counted is on disk)."""
    out = smoke("feedback_writer", tmp_path)
    for writers in (1, 2):
        (rate,) = figures(rf"^{writers} writer\(s\): median {NUMBER} durable rows/s", out)
        assert rate > 0, out


@pytest.mark.slow
def test_own_data_benchmark(tmp_path) -> None:
    """bench.own_data (issue 26): the stack's `ctloop init` and the notebook's bar on the same
    split, for scikit-image's LFW subset and a set whose classes differ only by colour."""
    out = smoke("own_data", tmp_path)
    results = json.loads((tmp_path / "own-data.json").read_text())
    assert sorted(results) == ["colour", "lfw", "settings"] and results["settings"] == {}
    lfw, colour = results["lfw"], results["colour"]
    # 200 images: 160 in the reference part, 32 of them held out (the stack's split).
    assert lfw["notebook"]["held_out_rows"] == 32 and 0.8 <= lfw["notebook"]["best"] <= 1
    assert colour["notebook"]["best"] >= 0.95  # the colour is there to be seen
    for name in ("lfw", "colour"):
        stack = results[name]["stack"]
        assert stack["init_seconds"] > 0 and (stack["accuracy"] is None) == ("error" in stack)
        assert re.search(rf"^{name}\s", out, re.MULTILINE), out

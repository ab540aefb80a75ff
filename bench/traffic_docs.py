"""docs/traffic.md: the drift scenario on fresh local stacks, every transformation, both modes.

    make traffic-docs     # or: .venv/bin/python bench/traffic_docs.py [--transforms slant,rotate]
                          #         [--modes finetune,scratch] [--runs DIR [--report-only]]
    .venv/bin/python -m bench.traffic_docs --smoke DIR   # slant, fine-tuning, 2 windows; into DIR

With --runs, each run's figures are kept as JSON and the report covers every run kept there:
one process per mode then shares the cores (`--modes finetune --runs D` beside `--modes scratch
--transforms slant,rotate,shift,thick --runs D --output /tmp/x`, then `--runs D --report-only`).

Each transformation and RETRAIN_MODE gets a fresh stack (reference data, first model, `python -m
serving` with the Compose settings: 2 workers, RETRAIN_EVERY=20, and the dashboard,
`reporting.serve`, whose drift share the simulator reads over HTTP). The seconds per retrain and
the gate's scores come from the stack's retrain ledger once the run is over.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from bench import smoke
from harness.data import make_settings
from harness.processes import LiveServer, ReportingServer, child_environment
from traffic.report import describe, plot, summary, write_csv
from traffic.scenario import Scenario, WindowRecord, run

REPO = Path(__file__).resolve().parents[1]
DEFAULT = "slant"
ALL = ["slant", "rotate", "thick", "shift", "blur", "thin", "noise", "invert"]
GEOMETRIC = ["slant", "rotate", "shift", "thick"]
MODES = ["finetune", "scratch"]  # RETRAIN_MODE; the first is the default
# A smoke run's scenario: one clean window and one drifted, scored on 20 evaluation images.
SMOKE_SCENARIO = {"clean_windows": 1, "drift_windows": 1, "evaluation_size": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transforms", default=",".join(ALL))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--compare",
        default=",".join(ALL),
        help="transformations run in every mode (the others in the first mode only)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--runs",
        type=Path,
        help="keep each run's figures here as JSON, and report every run found there (so that "
        "two processes, one per mode, can share the machine's cores and one report)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing: write the report from --runs"
    )
    args = smoke.parse(parser, transforms=DEFAULT, modes=MODES[0], compare="")
    if args.smoke:
        args.output = args.smoke
    modes, compared = args.modes.split(","), args.compare.split(",")
    names = args.transforms.split(",")
    # Every transformation in the default mode first, then the comparisons; traffic.md is
    # written after each run, so a long run that is stopped keeps what it measured.
    plan = [(name, modes[0]) for name in names]
    plan += [(name, mode) for mode in modes[1:] for name in names if name in compared]
    if args.report_only:
        plan = []
    by_mode: dict[tuple[str, str], dict] = {}
    if args.runs:
        args.runs.mkdir(parents=True, exist_ok=True)
    for name, mode in plan:
        with tempfile.TemporaryDirectory(prefix=f"ctloop-traffic-{name}-", dir=args.smoke) as tmp:
            by_mode[(name, mode)] = play(Path(tmp), name, mode, workspace=args.smoke)
        if args.runs:
            keep(args.runs, name, mode, by_mode[(name, mode)])
        write_report({**kept(args.runs), **by_mode}, args.output)
    if not plan:
        write_report(kept(args.runs), args.output)
    print(f"written to {args.output / 'traffic.md'}")


def write_report(by_mode: dict[tuple[str, str], dict], output: Path) -> None:
    """traffic.md (and, once the default scenario ran in the default mode, its curve and CSV)."""
    ordered = {
        key: by_mode[key]
        for key in sorted(by_mode, key=lambda k: (MODES.index(k[1]), ALL.index(k[0])))
    }
    results = {name: result for (name, mode), result in ordered.items() if mode == MODES[0]}
    if DEFAULT in results:
        records = results[DEFAULT]["records"]
        write_csv(records, output / "traffic.csv")
        plot(records, output / "traffic.png", f"drift '{DEFAULT}' after 3 clean windows (k = 20)")
    lines = [*report(results, measured(ordered)), "", *modes_section(ordered)]
    (output / "traffic.md").write_text("\n".join(lines) + "\n")


def keep(folder: Path, name: str, mode: str, result: dict) -> None:
    document = {**result, "records": [asdict(r) for r in result["records"]]}
    (folder / f"{name}-{mode}.json").write_text(json.dumps(document, indent=1) + "\n")


def kept(folder: Path | None) -> dict[tuple[str, str], dict]:
    """The runs kept in `folder` (any process's), by (transformation, mode)."""
    runs = {}
    for path in sorted(folder.glob("*.json")) if folder else []:
        name, mode = path.stem.rsplit("-", 1)
        document = json.loads(path.read_text())
        document["records"] = [WindowRecord(**r) for r in document["records"]]
        runs[(name, mode)] = document
    return runs


def play(
    root: Path,
    transform: str,
    mode: str = MODES[0],
    workspace: Path | None = None,
    init_env: dict[str, str] | None = None,
    retrain_every: int = 20,
    **scenario_sizes: int,
) -> dict:
    """A fresh stack (reference, first model, 2-worker API, dashboard) and the scenario on it;
    with `workspace` (a smoke run's), a copy of its reference and first model, and the smoke
    run's short scenario. `init_env`: `ctloop init`'s other settings (DATASET=...);
    `scenario_sizes`: the Scenario's windows and evaluation size."""
    settings = make_settings(root)
    if workspace is not None:
        smoke.copy(workspace, root)
    else:
        environment = child_environment(
            DATA_DIR=str(settings.data_dir),
            ARTIFACTS_DIR=str(settings.artifacts_dir),
            **(init_env or {}),
        )
        subprocess.run(
            [sys.executable, "-m", "ctloop", "init"],
            env=environment,
            check=True,
            capture_output=True,
        )
    compose_like = {
        "RETRAIN_EVERY": str(retrain_every),
        "SERVING_MODEL_POLL_SECONDS": "1",
        "SERVING_TRAINER_CHECK_SECONDS": "5",
        "RETRAIN_MODE": mode,
    }
    dashboard_env = {
        "REPORTING_REFRESH_SECONDS": "2",
        "MONITORING_MIN_ROWS": str(retrain_every),
    }
    with (
        LiveServer(settings, root / "serving.log", workers=2, **compose_like) as serving,
        ReportingServer(settings.data_dir, root / "reporting.log", **dashboard_env) as dashboard,
    ):
        scenario = Scenario(
            url=serving.url,
            samples_dir=settings.samples_dir,
            transform=transform,
            metrics_url=dashboard.metrics_url,
            token=serving.token,
            retrain_timeout=900.0,  # a five-network rebuild takes minutes on a busy core
            **(SMOKE_SCENARIO if workspace is not None else scenario_sizes),
        )
        print(f"\n== {transform} ({mode})", flush=True)
        records = run(scenario, on_window=show)
    decisions = [
        entry
        for line in settings.retrain_log_path.read_text().splitlines()
        if "decision" in (entry := json.loads(line))
    ]
    return {
        "records": records,
        "summary": summary(records, retrain_every),
        "decisions": decisions,
    }


def show(r) -> None:
    print(
        f"  window {r.window:2} {r.phase:6} rows {r.rows:3}  served {r.served_accuracy:.2f}  "
        f"drifted {r.drifted_accuracy:.2f}  clean {r.clean_accuracy:.2f}  "
        f"dashboard drift {describe(r.drift_share)}  " + "; ".join(r.decisions),
        flush=True,
    )


def measured(by_mode: dict) -> str:
    """When the runs reported ran: the first and last retrain in their ledgers (UTC)."""
    times = sorted(
        d["finished_at"] for r in by_mode.values() for d in r["decisions"] if d.get("finished_at")
    )
    if not times:
        return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    return f"{times[0][:16].replace('T', ' ')} to {times[-1][11:16]} UTC"


def report(results: dict, when: str) -> list[str]:
    default = results.get(DEFAULT)
    out = [
        "# The drift scenario: production traffic, drift, feedback, retraining",
        "",
        f"Measured {when} by `make traffic-docs` "
        "(`bench/traffic_docs.py`, which runs `python -m traffic` against fresh local stacks: "
        "2 workers, RETRAIN_EVERY=20, the gate on, PROD_WEIGHT=1). On sounds and on other "
        "datasets: [own-data.md](own-data.md#the-drift-scenario-on-other-datasets).",
        "",
        "The 360 unseen digits (never in `ref_data.csv`) are split once: 100 for evaluation, never "
        "sent as feedback, and 260 for traffic: 3 clean windows of 20, then 10 windows of 20 "
        "drifted images. Each traffic image goes to `/predict`, then to `/feedback` with its true "
        "class; every window of 20 rows starts a retrain. After each window the served model is "
        "scored on the 100 evaluation images, clean and drifted. The drift share is the "
        "dashboard's (KS test per embedding column, p < 0.05, on all production rows), read by the "
        "simulator from its HTTP API once a snapshot covers the window.",
        "",
    ]
    if default:
        out += [f"## Default scenario: `{DEFAULT}` (a different writer: italic strokes)", ""]
        out += window_table(default["records"])
        out += ["", "![curve](traffic.png)", ""]
        out += headline(default["summary"], counts(default))
    out += ["", "## Every transformation", "", summary_table(results), ""]
    out += [
        "## Reading it",
        "",
        "- The first model is trained on transformed copies of the reference (rotations, slants, "
        "shifts, pens, elastic distortion) with an embedding fitted on them too "
        "([retraining.md](studies/retraining.md)), so a geometric drift costs a few points at once "
        "instead of the 40 to 50 it cost the first version of this stack (2026-11-21: 0.51 to "
        "0.54 right after slant, rotate, thick and shift).",
        "- Feedback then fine-tunes the served head on the rows since it, keeping 0.3 of each "
        "step (`FINETUNE_INTERPOLATION`); the gate keeps only challengers that are not worse on "
        "the held-out reference rows and the newest held-out production rows together, and whose "
        "accuracy on the held-out reference rows stays within `GATE_REFERENCE_TOLERANCE` (0.01) "
        "of the champion's and the first model's, so many retrains are rejected once the model is "
        "near its ceiling.",
        "- Drifts the preprocessing undoes (inverted colours) or averages away (thin strokes, "
        "blur, speckle noise: the wider pen is not applied to specks) barely move accuracy; they "
        "still show in the drift share.",
        "- Clean accuracy is measured on 100 images: one image is 0.01. With the whole step of "
        "each fine-tune (before 2026-12-02) a promotion that won drifted rows sometimes lost one "
        "clean image the gate set does not contain (0.97); a part of the step keeps them "
        "([retraining.md](studies/retraining.md)).",
    ]
    return out


def window_table(records) -> list[str]:
    out = [
        "| Window | Phase | Rows | Served acc. (window) | Model after | Drifted eval acc. | "
        "Clean eval acc. | Dashboard drift share | Retrain |",
        "|---:|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in records:
        out.append(
            f"| {r.window} | {r.phase} | {r.rows} | {r.served_accuracy:.2f} | {r.version_after} | "
            f"{r.drifted_accuracy:.2f} | {r.clean_accuracy:.2f} | {describe(r.drift_share)} | "
            f"{'; '.join(r.decisions)} |"
        )
    return out


def headline(figures: dict, decided: tuple[int, int, int]) -> list[str]:
    recovered = figures["rows_to_recover_within_2_points"]
    before, after = figures["accuracy_before_drift"], figures["accuracy_right_after_drift"]
    served_clean = figures["served_accuracy_clean_windows"]
    served_first = figures["served_accuracy_first_drifted_window"]
    at_200 = describe(figures["accuracy_after_200_drifted_rows"])
    won = describe(figures["won_back_after_200_rows"], percent=True)
    back = f"after {recovered} drifted rows." if recovered is not None else "not within 200 rows."
    return [
        f"- Accuracy before the drift: **{before:.2f}** on unseen images (served predictions in "
        f"the clean windows: {served_clean:.2f}).",
        f"- Right after it: **{after:.2f}** (the model serving at the switch, on drifted images; "
        f"served predictions of the first drifted window: {served_first:.2f}).",
        f"- Drift share crossed 0.5 after **{describe(figures['rows_to_flag_drift'])}** drifted "
        f"feedback rows (pre-drift: {describe(figures['drift_share_before'])}).",
        f"- After 200 drifted rows (10 retrains): **{at_200}**, **{won}** of what the drift took "
        "away won back.",
        f"- Back within 2 points of the pre-drift accuracy: {back}",
        f"- Retrains: {decided[0]} promoted, {decided[1]} rejected by the gate; promoted models "
        f"that scored below their predecessor on the gate set: {decided[2]} (the stack's ledger).",
    ]


def summary_table(results: dict) -> str:
    lines = [
        "| Transformation | Before | Right after | After 200 rows | Won back | Lowest clean | "
        "Rows to flag (share >= 0.5) | Promoted / rejected |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in results.items():
        f = result["summary"]
        cells = [
            name + (" (default)" if name == DEFAULT else ""),
            f"{f['accuracy_before_drift']:.2f}",
            f"{f['accuracy_right_after_drift']:.2f}",
            describe(f["accuracy_after_200_drifted_rows"]),
            describe(f["won_back_after_200_rows"], percent=True),
            f"{min(r.clean_accuracy for r in result['records']):.2f}",
            describe(f["rows_to_flag_drift"]),
            "{} / {}".format(*counts(result)[:2]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counts(result: dict) -> tuple[int, int, int]:
    """Retrains promoted, rejected, and promoted with a gate score below their predecessor's,
    from the stack's ledger (the first model is not a retrain)."""
    decisions = result["decisions"]
    worse = [
        d
        for d in decisions
        if d["decision"] == "promoted"
        and d.get("champion_score") is not None
        and d["challenger_score"] < d["champion_score"]
    ]
    promoted = sum(d["decision"] == "promoted" for d in decisions)
    return promoted, sum(d["decision"] == "rejected" for d in decisions), len(worse)


def modes_section(by_mode: dict) -> list[str]:
    """Both RETRAIN_MODEs side by side on every transformation."""
    out = [
        "## Fine-tuning and retraining from scratch, side by side",
        "",
        "`RETRAIN_MODE=finetune` (the default: the served head trained 10 more epochs on the rows "
        "since it, with a replay sample of older and reference rows, 0.3 of the step kept; a "
        "full rebuild every "
        "SCRATCH_EVERY = 10 fine-tunes) against `RETRAIN_MODE=scratch` (a new head on the "
        "reference and every production row read), each on its own fresh stack. Drifted accuracy "
        "of the served model on the 100 evaluation images after 200 drifted feedback rows; the "
        "lowest clean accuracy of the served model in any window; seconds per retrain (median of "
        "the trainer's training + gate time); the decisions of every retrain (k rows, drift and "
        "quality triggers) from the stack's ledger; promotions whose gate score was below their "
        "predecessor's (the gate's rule says none).",
        "",
        "| Transformation | Mode | Right after | After 200 rows | Lowest clean | s / retrain | "
        "Promoted / rejected | Scratch rebuilds | Worse promoted |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for (name, mode), result in by_mode.items():
        figures, decisions = result["summary"], result["decisions"]
        promoted, rejected, worse = counts(result)
        seconds = [d["train_seconds"] for d in decisions if d.get("train_seconds") is not None]
        cells = [
            name,
            mode + (" (default)" if mode == MODES[0] else ""),
            f"{figures['accuracy_right_after_drift']:.2f}",
            describe(figures["accuracy_after_200_drifted_rows"]),
            f"{min(r.clean_accuracy for r in result['records']):.2f}",
            f"{statistics.median(seconds):.2f}" if seconds else "n/a",
            f"{promoted} / {rejected}",
            str(sum(d.get("mode") == "scratch" for d in decisions)),
            str(worse),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    main()

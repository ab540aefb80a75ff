"""docs/traffic.md: the drift scenario on fresh local stacks, the default and every transformation.

    make traffic-docs     # or: .venv/bin/python bench/traffic_docs.py [--transforms slant,rotate]

Each transformation gets a fresh stack (reference data, first model, `python -m serving` with the
Compose settings: 2 workers, RETRAIN_EVERY=20, and the dashboard, `reporting.serve`, whose drift
share the simulator reads over HTTP).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tests.support.data import make_settings
from tests.support.processes import LiveServer, ReportingServer, child_environment
from traffic.report import describe, plot, summary, write_csv
from traffic.scenario import Scenario, run

REPO = Path(__file__).resolve().parents[1]
DEFAULT = "slant"
ALL = ["slant", "rotate", "thick", "shift", "blur", "thin", "noise", "invert"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transforms", default=",".join(ALL))
    parser.add_argument("--output", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    results = {}
    for name in args.transforms.split(","):
        with tempfile.TemporaryDirectory(prefix=f"ctloop-traffic-{name}-") as tmp:
            results[name] = play(Path(tmp), name)
        if name == DEFAULT:
            records = results[name]["records"]
            write_csv(records, args.output / "traffic.csv")
            plot(
                records,
                args.output / "traffic.png",
                f"drift '{name}' after 3 clean windows (k = 20)",
            )
    (args.output / "traffic.md").write_text("\n".join(report(results)) + "\n")
    print(f"written to {args.output / 'traffic.md'}")


def play(root: Path, transform: str) -> dict:
    """A fresh stack (reference, first model, 2-worker API, dashboard) and the scenario on it."""
    settings = make_settings(root)
    environment = child_environment(
        DATA_DIR=str(settings.data_dir), ARTIFACTS_DIR=str(settings.artifacts_dir)
    )
    subprocess.run(
        [sys.executable, "-m", "ctloop", "init"], env=environment, check=True, capture_output=True
    )
    compose_like = {"RETRAIN_EVERY": "20", "MODEL_POLL_SECONDS": "1", "TRAINER_CHECK_SECONDS": "5"}
    dashboard_env = {"REPORTING_REFRESH_SECONDS": "2", "REPORTING_MIN_ROWS": "20"}
    with (
        LiveServer(settings, root / "serving.log", workers=2, **compose_like) as serving,
        ReportingServer(settings.data_dir, root / "reporting.log", **dashboard_env) as dashboard,
    ):
        scenario = Scenario(
            url=serving.url,
            samples_dir=settings.samples_dir,
            transform=transform,
            metrics_url=dashboard.metrics_url,
        )
        print(f"\n== {transform}", flush=True)
        records = run(scenario, on_window=show)
    return {"records": records, "summary": summary(records, 20)}


def show(r) -> None:
    print(
        f"  window {r.window:2} {r.phase:6} rows {r.rows:3}  served {r.served_accuracy:.2f}  "
        f"drifted {r.drifted_accuracy:.2f}  clean {r.clean_accuracy:.2f}  "
        f"dashboard drift {describe(r.drift_share)}  " + "; ".join(r.decisions),
        flush=True,
    )


def report(results: dict) -> list[str]:
    default = results.get(DEFAULT)
    out = [
        "# The drift scenario: production traffic, drift, feedback, retraining",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `make traffic-docs` "
        "(`bench/traffic_docs.py`, which runs `python -m traffic` against fresh local stacks: "
        "2 workers, RETRAIN_EVERY=20, the gate on, PROD_WEIGHT=1).",
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
        out += headline(default["summary"])
    out += ["", "## Every transformation", "", summary_table(results), ""]
    out += [
        "## Reading it",
        "",
        "- Drifts the preprocessing undoes (inverted colours) or averages away (speckle noise, "
        "thinner strokes, mild blur) barely move accuracy; they still show in the drift share.",
        "- Geometric drifts (slant, rotation, shift, thicker strokes) cost 40 to 50 points at "
        "once. Feedback and retraining win most of it back in 200 rows; what they cannot is "
        "bounded by 160 training examples of the new style (every 5th feedback row is held out "
        "for the gate) in an embedding fitted on the reference: the PCA never saw the new style.",
        "- What would win back the rest: more feedback rows (the curve is still rising at 200); "
        "adding transformed copies of the reference images when the drift is known (augmentation); "
        "rebuilding the reference, and so the embedding, from reference + production images once "
        "the drift is established (a new `ctloop build-reference`; production rows must then be "
        "re-embedded). Weighting production rows more (`PROD_WEIGHT`) changed accuracy by 1 to 2 "
        "points at most here.",
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


def headline(figures: dict) -> list[str]:
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
        f"- Retrains: {figures['promoted']} promoted, {figures['rejected']} rejected by the gate; "
        "no promoted model scored below its predecessor on the gate set (the gate's rule).",
    ]


def summary_table(results: dict) -> str:
    lines = [
        "| Transformation | Before | Right after | After 200 rows | Won back | "
        "Rows to flag (share >= 0.5) | Promoted / rejected |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in results.items():
        f = result["summary"]
        cells = [
            name + (" (default)" if name == DEFAULT else ""),
            f"{f['accuracy_before_drift']:.2f}",
            f"{f['accuracy_right_after_drift']:.2f}",
            describe(f["accuracy_after_200_drifted_rows"]),
            describe(f["won_back_after_200_rows"], percent=True),
            describe(f["rows_to_flag_drift"]),
            f"{f['promoted']} / {f['rejected']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

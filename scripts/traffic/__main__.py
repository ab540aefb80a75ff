"""`python -m traffic`: play production traffic with a drift against a running stack.

    .venv/bin/python -m traffic --url http://localhost:8080 --metrics-url http://localhost:8083/metrics
    .venv/bin/python -m traffic --transform speed    # on a dataset of sounds: a sound's drift
    .venv/bin/python -m traffic --strategy canary   # carry a challenger on stage to its decision

Prints each window as it ends and writes traffic.csv and traffic.png to --output-dir.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from serving_client.client import ApiError
from traffic.delivery import StageScenario, describe_round, play_stage
from traffic.media import DEFAULT_DRIFT, DRIFTS, NOUNS
from traffic.report import describe, plot, summary, write_csv
from traffic.scenario import Scenario, TrafficError, WindowRecord, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:8080", help="the serving API")
    parser.add_argument(
        "--samples-dir",
        type=Path,
        default=Path("data/samples"),
        help="labelled pictures or sounds, one sub-folder per class (default: the dataset's "
        "unseen part)",
    )
    parser.add_argument(
        "--transform",
        help="the drift, one of the samples' medium: "
        + "; ".join(
            f"{NOUNS[medium]}: {', '.join(names)} (default {DEFAULT_DRIFT[medium]})"
            for medium, names in DRIFTS.items()
        ),
    )
    parser.add_argument("--clean-windows", type=int, default=3)
    parser.add_argument("--drift-windows", type=int, default=10)
    parser.add_argument("--window", type=int, help="requests per window (default: the API's k)")
    parser.add_argument(
        "--evaluation-size", type=int, default=100, help="samples never sent as feedback"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--metrics-url",
        help="the reporting service's exporter, for the drift share of the latest W rows "
        "(e.g. http://localhost:8083/metrics)",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("data/traffic"))
    parser.add_argument(
        "--token-file",
        type=Path,
        default=Path("secrets/api_token"),
        help="the API token, when API_TOKEN is not set (the stack generates it there)",
    )
    parser.add_argument(
        "--strategy",
        choices=("canary", "shadow"),
        help="instead of the drift scenario: play traffic from many clients (X-Client-ID) until "
        "the challenger on this stage is promoted or rolled back",
    )
    parser.add_argument("--clients", type=int, default=200, help="--strategy: distinct clients")
    parser.add_argument("--round-size", type=int, default=50, help="--strategy: requests a round")
    parser.add_argument("--max-rounds", type=int, default=40, help="--strategy: give up after")
    args = parser.parse_args(argv)
    if args.strategy:
        return play_stage_main(args)
    scenario = Scenario(
        url=args.url.rstrip("/"),
        samples_dir=args.samples_dir,
        transform=args.transform,
        clean_windows=args.clean_windows,
        drift_windows=args.drift_windows,
        window=args.window,
        evaluation_size=args.evaluation_size,
        seed=args.seed,
        token=api_token(args.token_file),
        metrics_url=args.metrics_url,
    )
    print(f"{'win':>3} {'phase':7} {'rows':>5} {'served':>6} {'clean':>6} {'drifted':>7} "
          f"{'drift':>5} {'retrains':>8}  version")  # fmt: skip

    def show(record: WindowRecord) -> None:
        print(
            f"{record.window:3} {record.phase:7} {record.rows:5} {record.served_accuracy:6.2f} "
            f"{record.clean_accuracy:6.2f} {record.drifted_accuracy:7.2f} "
            f"{describe(record.drift_share):>5} {record.retrains:3} "
            f"({record.promoted}p {record.rejected}r)"
            f"  {record.version_after} {'; '.join(record.decisions)}",
            flush=True,
        )

    try:
        records = run(scenario, on_window=show)
    except (TrafficError, ApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_csv(records, args.output_dir / "traffic.csv")
    drift = next((r.phase for r in records if r.phase != "clean"), "none")
    plot(
        records,
        args.output_dir / "traffic.png",
        f"drift '{drift}' after {args.clean_windows} clean windows",
    )
    figures = summary(
        records, records[1].rows - records[0].rows if len(records) > 1 else records[0].rows
    )
    for name, value in figures.items():
        print(f"{name}: {describe(value, percent=name.startswith('won'))}")
    print(f"written: {args.output_dir / 'traffic.csv'}, {args.output_dir / 'traffic.png'}")
    return 0


def play_stage_main(args: argparse.Namespace) -> int:
    scenario = StageScenario(
        url=args.url.rstrip("/"),
        samples_dir=args.samples_dir,
        strategy=args.strategy,
        clients=args.clients,
        round_size=args.round_size,
        max_rounds=args.max_rounds,
        seed=args.seed,
        token=api_token(args.token_file),
    )
    try:
        outcome = play_stage(scenario, on_round=lambda r: print(describe_round(r), flush=True))
    except (TrafficError, ApiError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"outcome: {outcome.challenger} {outcome.decision} ({outcome.reason}); "
          f"served now: {outcome.served_after}")  # fmt: skip
    return 0


def api_token(token_file: Path) -> str | None:
    """API_TOKEN, else the token the stack generated at first start."""
    if os.environ.get("API_TOKEN"):
        return os.environ["API_TOKEN"]
    try:
        return token_file.read_text().strip() or None
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())

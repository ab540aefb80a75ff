"""What a scenario showed: a CSV of the windows, a PNG plot, and the headline figures."""

from __future__ import annotations

import csv
from pathlib import Path

from traffic.scenario import WindowRecord, as_rows


def write_csv(records: list[WindowRecord], path: Path) -> None:
    rows = as_rows(records)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def summary(records: list[WindowRecord], window: int) -> dict:
    """Accuracy before the drift, right after it, after each retrain; rows to flag and recover."""
    clean = [r for r in records if r.phase == "clean"]
    drifted = [r for r in records if r.phase != "clean"]
    before = clean[-1].clean_accuracy  # the model serving when the drift starts, on clean images
    right_after = clean[-1].drifted_accuracy  # the same model, on drifted images
    base_rows = clean[-1].rows
    flagged = next((r.rows - base_rows for r in drifted if (r.drift_share or 0) >= 0.5), None)
    recovered = next(
        (r.rows - base_rows for r in drifted if r.drifted_accuracy >= before - 0.02), None
    )
    at_200 = next((r for r in drifted if r.rows - base_rows >= 200), None)
    lost = before - right_after
    won = None  # a drift that takes less than 5 points away leaves nothing meaningful to win back
    if at_200 is not None and lost >= 0.05:
        won = (at_200.drifted_accuracy - right_after) / lost
    return {
        "transform": drifted[0].phase if drifted else None,
        "window": window,
        "accuracy_before_drift": before,
        "served_accuracy_clean_windows": sum(r.served_accuracy for r in clean) / len(clean),
        "accuracy_right_after_drift": right_after,
        "served_accuracy_first_drifted_window": drifted[0].served_accuracy if drifted else None,
        "drift_share_before": clean[-1].drift_share,
        "rows_to_flag_drift": flagged,
        "rows_to_recover_within_2_points": recovered,
        "accuracy_after_200_drifted_rows": at_200.drifted_accuracy if at_200 else None,
        "won_back_after_200_rows": won,
        "promoted": records[-1].promoted,
        "rejected": records[-1].rejected,
    }


def plot(records: list[WindowRecord], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r.rows for r in records]
    figure, accuracy_axis = plt.subplots(figsize=(9, 4.8), dpi=110)
    accuracy_axis.plot(
        rows, [r.drifted_accuracy for r in records], "o-", label="served model on drifted images"
    )
    accuracy_axis.plot(
        rows, [r.clean_accuracy for r in records], "s--", label="served model on clean images"
    )
    accuracy_axis.plot(rows, [r.served_accuracy for r in records], ".:", color="grey",
                       label="predictions served in the window")  # fmt: skip
    switch = next((r.rows for r in records if r.phase != "clean"), None)
    if switch is not None:
        accuracy_axis.axvline(switch - (rows[1] - rows[0] if len(rows) > 1 else 0), color="red",
                              linestyle="-", alpha=0.4, label="drift starts")  # fmt: skip
    accuracy_axis.set_xlabel("production (feedback) rows")
    accuracy_axis.set_ylabel("accuracy")
    accuracy_axis.set_ylim(0, 1.02)
    drift_axis = accuracy_axis.twinx()
    shares = [r.drift_share if r.drift_share is not None else float("nan") for r in records]
    drift_axis.bar(rows, shares, width=(rows[1] - rows[0]) * 0.5 if len(rows) > 1 else 5,
                   alpha=0.2, color="purple", label="drift share (latest rows)")  # fmt: skip
    drift_axis.set_ylim(0, 1.02)
    drift_axis.set_ylabel("drift share")
    lines = accuracy_axis.get_legend_handles_labels()
    bars = drift_axis.get_legend_handles_labels()
    accuracy_axis.legend(lines[0] + bars[0], lines[1] + bars[1], loc="lower left", fontsize=8)
    accuracy_axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def describe(value: float | int | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return (
        f"{value:.0%}" if percent else (f"{value:.3f}" if isinstance(value, float) else str(value))
    )

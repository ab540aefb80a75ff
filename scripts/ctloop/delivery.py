"""Progressive delivery: how a challenger that passed the offline gate reaches clients.

PROMOTION_STRATEGY:
- `direct`: it serves everyone at once (the workshop's behaviour);
- `shadow`: it answers a sampled SHADOW_SHARE of /predict requests beside the champion, whose
  answer alone goes back; when SHADOW_MIN_ROWS feedback rows arrived during the stage, it is
  promoted if its accuracy on them is not worse than the champion's by more than STAGE_MARGIN,
  and rolled back otherwise;
- `canary`: it answers CANARY_SHARE of the clients (a hash of their X-Client-ID, or of the
  request id, the same in every worker); after CANARY_MIN_ROWS feedback rows it answered, its
  live accuracy is compared with the champion's over the same period the same way; its error
  ratio and p99 latency, watched by the serving workers, roll it back as soon as they degrade.

These rules live here once; the trainer (accuracy) and the serving workers (health, routing)
call them. A newer challenger that passes the gate during a stage takes the stage over (the one
on stage is rolled back, "superseded"): the live comparison always concerns the newest model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ctloop.evaluate import accuracy
from ctloop.tables import PREDICTION, Table

STRATEGIES = ("direct", "shadow", "canary")
BUCKETS = 10_000


def bucket(key: str) -> int:
    """A stable number in [0, 10000) for a routing key: the same in every worker and restart."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % BUCKETS


def routed_to_challenger(key: str, percent: float) -> bool:
    """Whether the client (or request) with this key goes to the challenger."""
    return bucket(key) < round(percent * BUCKETS / 100)


@dataclass(frozen=True)
class LiveComparison:
    """Champion and challenger on the feedback rows that arrived during the stage."""

    stage: str
    challenger: str
    champion: str
    challenger_rows: int
    champion_rows: int
    challenger_accuracy: float | None
    champion_accuracy: float | None

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "challenger": self.challenger,
            "champion": self.champion,
            "challenger_rows": self.challenger_rows,
            "champion_rows": self.champion_rows,
            "challenger_accuracy": self.challenger_accuracy,
            "champion_accuracy": self.champion_accuracy,
        }


def compare_live(
    stage: dict, champion: str, rows: Table, challenger_labels: np.ndarray | None = None
) -> LiveComparison:
    """The live comparison on `rows` (the feedback rows since the stage began).

    Canary: each version on the rows it answered (`model_version`). Shadow: the champion
    answered every row; `challenger_labels` are the challenger's answers to the same rows (its
    graph on the stored embeddings, the input it saw live).
    """
    versions = rows.columns.get("model_version", np.array([], dtype=str))
    served = rows.columns.get(PREDICTION, np.array([], dtype=str))
    mine = versions == champion
    if stage["stage"] == "canary":
        theirs = versions == stage["version"]
        challenger_accuracy = _accuracy(rows.targets[theirs], served[theirs])
        challenger_rows = int(theirs.sum())
    else:
        labels = np.asarray(challenger_labels if challenger_labels is not None else [], dtype=str)
        challenger_accuracy = _accuracy(rows.targets[mine], labels[mine]) if len(labels) else None
        challenger_rows = int(mine.sum()) if len(labels) else 0
    return LiveComparison(
        stage=stage["stage"],
        challenger=stage["version"],
        champion=champion,
        challenger_rows=challenger_rows,
        champion_rows=int(mine.sum()),
        challenger_accuracy=challenger_accuracy,
        champion_accuracy=_accuracy(rows.targets[mine], served[mine]),
    )


def decide_stage(comparison: LiveComparison, min_rows: int, margin: float) -> tuple[str, str]:
    """('wait' | 'promote' | 'roll back', why) from the live comparison."""
    rows = comparison.challenger_rows
    if rows < min_rows or comparison.champion_accuracy is None:
        return "wait", f"{rows} of the {min_rows} feedback rows needed"
    mine, theirs = comparison.champion_accuracy, comparison.challenger_accuracy or 0.0
    verdict = (
        f"live accuracy {theirs:.3f} on {rows} rows against the champion's {mine:.3f} on "
        f"{comparison.champion_rows} (margin {margin:g})"
    )
    if theirs >= mine - margin:
        return "promote", verdict
    return "roll back", verdict


def health_verdict(
    challenger: dict, champion: dict, error_margin: float, latency_factor: float, min_requests: int
) -> str | None:
    """Why a canary must go back now (its errors or its latency), or None.

    Each argument is {"requests", "errors", "p99_seconds"} for one version since the stage began.
    """
    if challenger["requests"] < min_requests or champion["requests"] == 0:
        return None
    theirs = challenger["errors"] / challenger["requests"]
    mine = champion["errors"] / champion["requests"]
    if theirs > mine + error_margin:
        return f"error ratio {theirs:.3f} against the champion's {mine:.3f}"
    slow, fast = challenger.get("p99_seconds"), champion.get("p99_seconds")
    if slow is not None and fast and slow > fast * latency_factor:
        return f"p99 latency {slow * 1000:.1f} ms against the champion's {fast * 1000:.1f} ms"
    return None


def _accuracy(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    return round(accuracy(truth, predicted), 6) if len(truth) else None

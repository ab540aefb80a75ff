"""The retrain ledger (artifacts/retrains.jsonl) and the row count it is compared with.

Light on purpose (no scikit-learn): the serving workers read it for /model and /metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

from ctloop.config import CoreSettings


def count_rows(path: Path) -> int:
    """Complete data rows of a CSV with a header (a torn last line does not count)."""
    try:
        with path.open("rb") as handle:
            newlines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
    return max(newlines - 1, 0)


def read_retrain_log(path: Path) -> list[dict]:
    """Every decision so far, oldest first."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def pending_triggers(settings: CoreSettings) -> list[int]:
    """Multiples of k reached by prod_data.csv that have no decision yet, in order."""
    decided = [entry["trigger_rows"] for entry in read_retrain_log(settings.retrain_log_path)]
    last = max(decided, default=0)
    k = settings.retrain_every
    rows = count_rows(settings.prod_data_path)
    return list(range((last // k + 1) * k, rows + 1, k))

"""The canary's health figures: requests, errors and p99 between two readings of a histogram."""

from __future__ import annotations

from serving.delivery import since


def reading(buckets: dict[float, float], requests: float, errors: float) -> dict:
    return {"buckets": buckets, "requests": requests, "errors": errors}


def test_figures_since_a_baseline_and_their_p99_bucket() -> None:
    then = reading({0.005: 90, 0.01: 100, float("inf"): 100}, 100, 1)
    now = reading({0.005: 190, 0.01: 290, float("inf"): 300}, 300, 5)
    figures = since(now, then)
    # 200 requests since: 100 under 5 ms, 190 under 10 ms, 200 in all: p99 is in the last bucket.
    assert figures == {"requests": 200, "errors": 4, "p99_seconds": float("inf")}
    assert since(now, None)["p99_seconds"] == float("inf")
    fast = reading({0.005: 199, 0.01: 200, float("inf"): 200}, 200, 0)
    assert since(fast, None) == {"requests": 200, "errors": 0, "p99_seconds": 0.005}
    assert since(None, None) == {"requests": 0.0, "errors": 0.0, "p99_seconds": None}

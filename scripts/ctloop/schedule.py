"""When a retrain is due: the workshop's "every k production rows", written once.

The serving API (to start a trainer and answer /feedback), the trainer (which triggers to decide)
and /model (rows until the next retrain, backlog) all call `retrain_status`.
"""

from __future__ import annotations

from dataclasses import dataclass


class RebuildYieldedError(RuntimeError):
    """A periodic full rebuild gave way to the feedback that arrived while it ran (the trainer
    records its trigger as superseded and fine-tunes the newest rows instead)."""


@dataclass(frozen=True)
class RetrainStatus:
    """Where prod_data.csv stands against the retrain schedule."""

    rows: int  # complete rows in prod_data.csv
    every: int  # k (RETRAIN_EVERY)
    last_decided: int  # the largest trigger with a decision (0 before the first)
    due: tuple[int, ...]  # multiples of k reached and not decided yet, oldest first

    @property
    def triggered(self) -> bool:
        """The row count is a multiple of k: the row that made it started a retrain."""
        return self.rows > 0 and self.rows % self.every == 0

    @property
    def rows_until_next(self) -> int:
        """Rows to append before the next multiple of k."""
        return self.every - self.rows % self.every

    @property
    def rows_since_last_retrain(self) -> int:
        return self.rows - self.last_decided

    @property
    def backlog(self) -> int:
        """Triggers due and undecided."""
        return len(self.due)


def retrain_status(rows: int, every: int, last_decided: int) -> RetrainStatus:
    """The schedule at `rows` production rows, given the last decided trigger."""
    if every < 1:
        raise ValueError(f"RETRAIN_EVERY must be at least 1, not {every}")
    first = (last_decided // every + 1) * every
    return RetrainStatus(
        rows=rows, every=every, last_decided=last_decided, due=tuple(range(first, rows + 1, every))
    )

"""The retrain schedule: which multiples of k are due, rows until the next, the backlog."""

from __future__ import annotations

import pytest

from ctloop.schedule import retrain_status


@pytest.mark.parametrize(
    ("rows", "every", "last", "due", "until", "since"),
    [
        (0, 20, 0, (), 20, 0),
        (19, 20, 0, (), 1, 19),
        (20, 20, 0, (20,), 20, 20),
        (20, 20, 20, (), 20, 0),
        (45, 20, 0, (20, 40), 15, 45),
        (45, 20, 20, (40,), 15, 25),
        (45, 20, 40, (), 15, 5),
        (100, 20, 40, (60, 80, 100), 20, 60),
        (7, 1, 4, (5, 6, 7), 1, 3),
        (39, 20, 40, (), 1, -1),  # a decision ahead of the rows (the file was replaced)
    ],
)
def test_due_triggers_and_counts(rows, every, last, due, until, since) -> None:
    status = retrain_status(rows, every, last)
    assert status.due == due
    assert status.backlog == len(due)
    assert status.rows_until_next == until
    assert status.rows_since_last_retrain == since


def test_the_row_that_reaches_a_multiple_of_k_triggers() -> None:
    assert [r for r in range(1, 61) if retrain_status(r, 20, 0).triggered] == [20, 40, 60]
    assert not retrain_status(0, 20, 0).triggered


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="RETRAIN_EVERY"):
        retrain_status(10, 0, 0)

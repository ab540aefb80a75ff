"""serving.decode_budget.PixelBudget: first come first served, a large image alone, nothing left
reserved by a request that gave up or was cancelled."""

from __future__ import annotations

import asyncio

import pytest

from serving.decode_budget import PixelBudget
from serving.errors import ApiError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def hold(budget: PixelBudget, pixels: int, seconds: float, log: list) -> None:
    async with budget.reserve(pixels):
        log.append(("in", pixels))
        await asyncio.sleep(seconds)
    log.append(("out", pixels))


async def test_images_are_let_in_by_order_of_arrival_within_the_budget() -> None:
    budget, log = PixelBudget(100, wait_seconds=5), []
    first = asyncio.create_task(hold(budget, 60, 0.05, log))
    await asyncio.sleep(0)
    large = asyncio.create_task(hold(budget, 80, 0.01, log))  # waits for the first
    await asyncio.sleep(0)
    small = asyncio.create_task(hold(budget, 10, 0.01, log))  # fits, but arrived after
    await asyncio.gather(first, large, small)
    assert [entry for entry in log if entry[0] == "in"] == [("in", 60), ("in", 80), ("in", 10)]
    assert budget.in_flight == 0


async def test_an_image_larger_than_the_budget_is_decoded_alone() -> None:
    budget, log = PixelBudget(100, wait_seconds=5), []
    await asyncio.gather(hold(budget, 500, 0.02, log), hold(budget, 10, 0.01, log))
    assert log[:2] == [("in", 500), ("out", 500)]
    assert budget.in_flight == 0


async def test_a_wait_that_runs_out_is_a_503_and_leaves_nothing_behind() -> None:
    budget, log = PixelBudget(100, wait_seconds=0.05), []
    first = asyncio.create_task(hold(budget, 100, 0.3, log))
    await asyncio.sleep(0)
    with pytest.raises(ApiError) as refused:
        await hold(budget, 50, 0, log)
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    cancelled = asyncio.create_task(hold(budget, 50, 0, log))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await first
    assert budget.in_flight == 0 and not budget._waiting
    await hold(budget, 100, 0, log)  # the budget is whole again

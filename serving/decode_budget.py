"""This worker's budget of pixels being decoded, and the memory handed back after a large decode.

An image above SERVING_INLINE_PIXELS is decoded in a thread, and costs about 15 bytes per pixel
while it is (a 76 KB RGBA PNG of 4096 x 4096 pixels: 240 MB). Without a bound, eight at once took a
worker from 100 MB to 1.9 GB. Each such image now reserves its pixels here first: at most
SERVING_DECODE_BUDGET_PIXELS are decoded at once (an image larger than the whole budget is decoded
alone). An image that does not fit waits its turn, first come first served, for up to
SERVING_DECODE_WAIT_SECONDS, then its request gets 503 with Retry-After. The wait is short on
purpose: about as long as one large decode, so that two people uploading photos at the same moment
both get an answer, while a flood only queues requests that hold nothing but their compressed bytes
and are refused within that time. Images up to SERVING_INLINE_PIXELS are decoded on the event loop,
one at a time, and never wait here.

glibc keeps memory freed by a thread in that thread's arena: a worker stayed at 317-466 MB after
such a burst. `malloc_trim` after each large decode hands it back (measured against
MALLOC_ARENA_MAX=2 and a fixed mmap threshold: docs/studies/hardening.md).

One budget per worker process and setting (`decode_budget`): a worker is a process, and the
routes reach it through their settings. It lives on that process's one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from functools import cache

from serving.errors import ApiError
from serving.metrics import DECODES_REFUSED


class PixelBudget:
    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity, self.wait_seconds = capacity, wait_seconds
        self.in_flight = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        """Hold `pixels` of the budget for the block; 503 if they cannot be had in time."""
        if not self._waiting and self._fits(pixels):
            self.in_flight += pixels
        else:
            await self._wait(pixels)
        try:
            yield
        finally:
            self.in_flight -= pixels
            self._admit()

    def _fits(self, pixels: int) -> bool:
        return self.in_flight == 0 or self.in_flight + pixels <= self.capacity

    async def _wait(self, pixels: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (pixels, future)
        self._waiting.append(entry)
        try:
            await asyncio.wait_for(future, self.wait_seconds)
        except BaseException as exc:  # the wait ran out, or the request was cancelled
            if future.done() and not future.cancelled():
                self.in_flight -= pixels  # admitted at the very moment the wait ended
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
            self._admit()  # a large image leaving the queue may let smaller ones in
            if isinstance(exc, TimeoutError):
                DECODES_REFUSED.inc()
                raise self._busy() from None
            raise

    def _admit(self) -> None:
        """Let in the waiting images that fit now, in their order of arrival."""
        while self._waiting:
            pixels, future = self._waiting[0]
            if future.done():  # given up
                self._waiting.popleft()
                continue
            if not self._fits(pixels):
                return
            self._waiting.popleft()
            self.in_flight += pixels
            future.set_result(None)

    def _busy(self) -> ApiError:
        retry = max(1, math.ceil(self.wait_seconds))
        return ApiError(
            503,
            "decoder_busy",
            f"this worker is decoding {self.capacity:,} pixels of other large images already "
            f"(SERVING_DECODE_BUDGET_PIXELS) and none finished within {self.wait_seconds:g} s: "
            f"try again in {retry} s, or send a smaller image",
            headers={"Retry-After": str(retry)},
        )


@cache
def decode_budget(capacity: int, wait_seconds: float) -> PixelBudget:
    """This process's budget for these settings (see the module)."""
    return PixelBudget(capacity, wait_seconds)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the heap's free pages back to the system (glibc; elsewhere a no-op)."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)

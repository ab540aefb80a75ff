"""Feedback rate limits per client, with the `limits` library (moving windows, in memory).

A client is its address plus the X-Client-ID header it may send (the page sends one per browser
session, so its users do not share one budget). Each worker process keeps its own windows: with
WORKERS=2 a client that spreads its connections over both gets up to twice FEEDBACK_RATE_LIMIT.
"""

from __future__ import annotations

import math
import time

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class ClientRateLimit:
    def __init__(self, spec: str) -> None:
        self.items: list[RateLimitItem] = parse_many(spec) if spec.strip() else []
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def wait_seconds(self, key: str) -> int | None:
        """Count a request; None when it is allowed, else whole seconds until it would be."""
        for item in self.items:
            if not self.limiter.hit(item, key):
                reset = self.limiter.get_window_stats(item, key).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None


def client_key(request: Request) -> str:
    address = request.client.host if request.client else "unknown"
    return f"{address}|{request.headers.get('x-client-id', '')[:64]}"

"""Feedback rate limits per client, with the `limits` library (moving windows, in memory).

A client is what it cannot choose: the address its connection comes from and the credential it
sent (a hash of its bearer token, never the token itself). Headers are not part of it: with a new
X-Client-ID per request, a client used to get a fresh budget each time (the page's X-Client-ID
still picks its canary, serving.delivery). `python -m serving` does not trust X-Forwarded-For
either (serving.__main__). The page (webapp/) sends all its users' feedback from one address with
one token, so they share one budget: see SERVING_FEEDBACK_RATE_LIMIT in docs/configuration.md.

Each worker process keeps its own windows: with SERVING_WORKERS=2 a client that spreads its
connections over both gets up to twice SERVING_FEEDBACK_RATE_LIMIT.
"""

from __future__ import annotations

import hashlib
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
    """'<address>|<sha256 of the bearer token, 16 hex digits>' (empty without a token)."""
    address = request.client.host if request.client else "unknown"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    credential = ""
    if scheme.lower() == "bearer" and token:
        credential = hashlib.sha256(token.encode()).hexdigest()[:16]
    return f"{address}|{credential}"

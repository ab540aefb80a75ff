"""One HTTP request per call, on a connection of its own, without a TLS set-up per call.

`loopback.get(...)` builds a client for the call, and each client loads the CA bundle into a new SSL
context: about 20 ms of CPU, far more than a request to a server on loopback costs. The tests
poll servers and send hundreds of requests that must each open a connection (to reach every
worker), so these take the same arguments and give the same behaviour with one SSL context made
once (a client built with it costs under 0.1 ms).
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

_TLS = ssl.create_default_context()


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=_TLS, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, verify=_TLS, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.delete(url, verify=_TLS, **kwargs)

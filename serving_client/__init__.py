"""The serving API's contract and a typed client of it, for whoever talks to the API.

- `serving_client.contract`: the request and response bodies, declared once; the API itself
  validates and documents them, its clients parse its replies with them.
- `serving_client.client`: `ApiClient` (one method per route a client calls, replies parsed into
  the contract's models) and `ApiError` (what was asked, and what the API or the network said).

Light on purpose: pydantic and httpx only, nothing of the stack (import-linter checks it), so the
page and the traffic simulator, which talk HTTP, can use it. This file imports neither module:
the API imports the contract without httpx.
"""

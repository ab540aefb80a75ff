"""No stranger can stall a worker: what a request without a token can make the app do is bounded
(time, memory, the size of the error it gets). In process: `create_app(settings)` with its
lifespan, through httpx.ASGITransport (harness.asgi). bench/abuse.py measures the same
attacks on a real server (docs/studies/hardening.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from PIL import ImageFile

from harness import attacks
from harness.asgi import AUTH, in_process, serving_settings
from harness.data import copy_workspace
from harness.images import b64
from serving.decode_budget import decode_budget
from serving.settings import ServingSettings

pytestmark = pytest.mark.anyio

# The budget of these tests: one 2048 x 2048 picture at a time, and no wait for it.
BUDGET = 2048 * 2048


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def settings(built, tmp_path_factory) -> ServingSettings:
    root = tmp_path_factory.mktemp("abuse")
    return serving_settings(
        copy_workspace(built, root),
        root / "secrets",
        decode_budget_pixels=BUDGET,
        decode_wait_seconds=0,
    )


@pytest.fixture(scope="module")
async def app(settings: ServingSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(settings) as client:
        yield client


@pytest.fixture
def unchanged(settings: ServingSettings) -> Iterator[None]:
    path = settings.prod_data_path
    before = path.read_bytes() if path.exists() else b""
    yield
    after = path.read_bytes() if path.exists() else b""
    assert after == before, "a refused request wrote to prod_data.csv"


def error_of(reply: httpx.Response, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text[:500]
    body = reply.json()
    assert body["error"] == code, body
    assert body["request_id"] == reply.headers["x-request-id"]
    return body


async def test_a_list_of_1_3_million_items_is_refused_at_once_in_a_small_body(app) -> None:
    """It used to be validated item by item: 16-23 s, 2 GB, and a 173 MB error body."""
    started = time.perf_counter()
    reply = await app.post("/predict", content=attacks.long_list(), headers=attacks.JSON)
    elapsed = time.perf_counter() - started
    body = error_of(reply, 422, "batch_too_large")
    assert "at most 64 images per request; the body holds 1,300,000" in body["detail"]
    assert len(reply.content) < 8192
    assert elapsed < 2.0, f"{elapsed:.2f} s"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (attacks.deep_nesting(), "1,000,001 arrays or objects"),
        (b'{"image": ' + b"[" * 60 + b"]" * 60 + b"}", "image: Input should be a valid string"),
        (b'{"image": "' + b"[" * 300 + b'"}', "301 arrays or objects"),
        (attacks.many_keys(), "300,000 strings"),
        (b"{" + b",".join(b'"k%d":1' % i for i in range(40)) + b"}", "40 fields"),
        (b'{"image": ' + b"1" * 100_000 + b"}", "not valid JSON (number out of range"),
        (b'{"image": "\xff\xfe"}', "not valid JSON"),
        (b'["a"]', "must be a JSON object, not an array"),
    ],
    ids=["deep", "nested-60", "brackets", "keys", "40-keys", "long-number", "not-utf8", "array"],
)
async def test_a_body_of_the_wrong_shape_is_refused_before_validation(
    app, payload: bytes, words: str
) -> None:
    started = time.perf_counter()
    reply = await app.post("/predict", content=payload, headers=attacks.JSON)
    body = error_of(reply, 422, "invalid_request")
    assert words in body["detail"], body["detail"]
    assert len(reply.content) < 8192
    assert time.perf_counter() - started < 2.0


async def test_validation_errors_are_summarised_and_counted(app) -> None:
    reply = await app.post("/predict", json={"images": [1] * 64})
    body = error_of(reply, 422, "invalid_request")
    assert body["error_count"] == 64 and len(body["errors"]) == 10
    assert body["detail"].startswith("64 errors, the first 10: images.0: Input should be")
    reply = await app.post("/predict", content=attacks.long_key(), headers=attacks.JSON)
    body = error_of(reply, 422, "invalid_request")
    assert len(reply.content) < 4096, len(reply.content)
    assert body["errors"][0]["loc"][0].endswith("AAA...") and body["error_count"] == 1


async def test_many_multipart_parts_are_refused(app) -> None:
    content, headers = attacks.many_parts()
    reply = await app.post("/predict", content=content, headers=headers)
    body = error_of(reply, 422, "invalid_form")
    assert "Too many fields" in body["detail"] and len(reply.content) < 8192


async def test_the_admin_routes_check_the_token_before_reading_the_body(app) -> None:
    """FastAPI parsed a declared body before any dependency ran: a stranger's million brackets
    were parsed before the 401 (and deep nesting was an undocumented 400)."""
    for route in ("/model/rollback", "/model/stage/promote", "/model/stage/abort"):
        reply = await app.post(route, content=attacks.deep_nesting(), headers=attacks.JSON)
        error_of(reply, 401, "unauthorized")
        reply = await app.post(
            route, content=attacks.deep_nesting(), headers={**attacks.JSON, **AUTH}
        )
        assert "1,000,001 arrays" in error_of(reply, 422, "invalid_request")["detail"]
        reply = await app.post(route, content=b'{"version": ', headers={**attacks.JSON, **AUTH})
        assert "not valid JSON" in error_of(reply, 422, "invalid_request")["detail"]
        reply = await app.post(route, content=b"version=1", headers={**AUTH, "content-type": "x"})
        error_of(reply, 415, "unsupported_media_type")
    reply = await app.post("/model/rollback", json={"version": 3}, headers=AUTH)
    assert (
        "version: Input should be a valid string"
        in error_of(reply, 422, "invalid_request")["detail"]
    )
    reply = await app.post("/model/stage/promote", headers=AUTH)  # no body: no stage
    error_of(reply, 409, "no_such_stage")


async def test_concurrent_large_images_beyond_the_budget_get_503_while_health_answers(
    app,
) -> None:
    """Four 2048 x 2048 RGBA PNGs at once with a budget of one: the first is decoded (and read as
    the same picture at 64 x 64, decoded on the event loop, is), the others are refused with
    Retry-After at once, and /health is answered meanwhile."""
    small = await app.post("/predict", json={"image": b64(attacks.big_rgba_png(64))})
    image = {"image": b64(attacks.big_rgba_png(2048))}
    health_ms: list[float] = []

    async def probe_health() -> None:
        for _ in range(10):
            started = time.perf_counter()
            assert (await app.get("/health")).status_code == 200
            health_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.01)

    *replies, _ = await asyncio.gather(
        *(app.post("/predict", json=image) for _ in range(4)), probe_health()
    )
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    for reply in replies:
        if reply.status_code == 503:
            assert error_of(reply, 503, "decoder_busy")["detail"].startswith("this worker")
            assert reply.headers["retry-after"] == "1"
        else:
            assert reply.json()["probabilities"] == small.json()["probabilities"]
    assert max(health_ms) < 1000, health_ms
    assert decode_budget(BUDGET, 0).in_flight == 0


async def test_images_wait_their_turn_within_the_decode_wait(built, tmp_path) -> None:
    settings = serving_settings(
        copy_workspace(built, tmp_path),
        tmp_path / "secrets",
        decode_budget_pixels=BUDGET,
        decode_wait_seconds=60,
    )
    image = {"image": b64(attacks.big_rgba_png(2048))}
    async with in_process(settings) as app:
        replies = await asyncio.gather(*(app.post("/predict", json=image) for _ in range(3)))
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    assert decode_budget(BUDGET, 60).in_flight == 0


async def test_many_small_images_are_not_all_decoded_on_the_event_loop(app) -> None:
    """64 images of 512 x 512 are within every limit; decoded inline, one by one, they held the
    event loop for the whole batch. Only SERVING_INLINE_PIXELS of a request are decoded inline now:
    the loop's longest stall (a heartbeat every 2 ms) is a small part of the batch's time."""
    stalls: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    async def batch() -> httpx.Response:
        try:
            return await app.post("/predict", content=attacks.many_images(), headers=attacks.JSON)
        finally:
            done.set()

    started = time.perf_counter()
    reply, _ = await asyncio.gather(batch(), heartbeat())
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200, reply.text[:300]
    assert len(reply.json()["predictions"]) == 64
    assert max(stalls) < elapsed / 3, (max(stalls), elapsed)


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
async def test_truncated_or_inconsistent_images_are_refused(app, route: str) -> None:
    """A JPEG whose header says 4096 x 4096 with data for 32 x 32 used to be decoded (libjpeg
    fills it with grey) and written as a feedback row."""
    half_png = attacks.noise_png(1024)
    cases = [
        (attacks.jpeg_header_lies(), "header says 4096x4096 pixels but the file holds"),
        (half_png[: len(half_png) // 2], "corrupt or truncated"),
    ]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for data, words in cases:
        body = {"image": b64(data)} | ({"target": "1"} if route == "/feedback" else {})
        reply = await app.post(route, json=body, headers=AUTH)
        assert words in error_of(reply, 422, "corrupt_image")["detail"]


async def test_a_trailing_slash_is_a_404_never_a_redirect(app) -> None:
    """A 307 to the same path without its slash wrote the request's Host into `location`."""
    reply = await app.post("/model/rollback/", headers={**AUTH, "host": "evil.example"})
    error_of(reply, 404, "not_found")
    assert "location" not in reply.headers
    assert (await app.get("/health/")).status_code == 404

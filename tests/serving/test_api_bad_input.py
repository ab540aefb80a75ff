"""Bad input: a clear 4xx with a JSON message, never a 500, and nothing written. In process
(httpx.ASGITransport), but the worker's memory, measured on a real uvicorn."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from harness.asgi import BlockingClient
from harness.data import copy_workspace
from harness.images import b64
from harness.processes import LiveServer, child_environment
from pictures import encode
from serving.settings import ServingSettings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png() -> bytes:
    """A valid PNG header claiming 60000 x 60000 pixels."""
    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def unchanged(settings: ServingSettings) -> Iterator[None]:
    """The test's requests must leave prod_data.csv byte for byte as it was."""
    path = settings.prod_data_path
    before = path.read_bytes()
    yield
    assert path.read_bytes() == before, "a refused request wrote to prod_data.csv"


def check(reply: httpx.Response, status: int, code: str, words: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["error"] == code, body
    assert words in body["detail"], body["detail"]
    assert body["request_id"] == reply.headers["x-request-id"]
    return body


IMAGE_CASES = [
    (
        "not_an_image",
        lambda s: b"%PDF-1.4 this is a document, not a picture" * 5,
        422,
        "not an image",
    ),
    ("truncated", lambda s: s["3"][: len(s["3"]) // 2], 422, "corrupt"),
    ("bomb", lambda s: bomb_png(), 413, "too many pixels"),
    ("blank", lambda s: encode(Image.new("L", (32, 32), 255)), 422, "blank"),
]
CODES = {
    "not_an_image": "not_an_image",
    "truncated": "corrupt_image",
    "bomb": "image_too_large",
    "blank": "blank_image",
}


@pytest.mark.parametrize(
    ("case", "make", "status", "words"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES]
)
@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_bad_images_as_json(client, samples, route, case, make, status, words) -> None:
    body = {"image": b64(make(samples))} | ({"target": "3"} if route == "/feedback" else {})
    check(client.post(route, json=body), status, CODES[case], words)


@pytest.mark.parametrize(
    ("case", "make", "status", "words"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES]
)
@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_bad_images_as_files(client, samples, route, case, make, status, words) -> None:
    data = {"target": "3"} if route == "/feedback" else None
    reply = client.post(route, files={"file": ("x.png", make(samples), "image/png")}, data=data)
    check(reply, status, CODES[case], words)


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_empty_body(client, route) -> None:
    reply = client.post(route, content=b"", headers={"content-type": "application/json"})
    check(reply, 422, "invalid_request", "not valid JSON")


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_empty_image(client, route) -> None:
    body = {"image": ""} | ({"target": "3"} if route == "/feedback" else {})
    check(client.post(route, json=body), 422, "empty_image", "empty")


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_empty_uploaded_file(client, route) -> None:
    data = {"target": "3"} if route == "/feedback" else None
    reply = client.post(route, files={"file": ("empty.png", b"", "image/png")}, data=data)
    check(reply, 422, "empty_image", "empty")


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_malformed_json(client, route) -> None:
    reply = client.post(
        route, content=b'{"image": "abc', headers={"content-type": "application/json"}
    )
    check(reply, 422, "invalid_request", "not valid JSON")


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_malformed_base64(client, route) -> None:
    body = {"image": "iVBOR$$$not-base64***"} | ({"target": "3"} if route == "/feedback" else {})
    check(client.post(route, json=body), 422, "invalid_base64", "image is not valid base64")


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.usefixtures("unchanged")
def test_body_over_the_size_limit(client, samples, route) -> None:
    padding = b64(b"\0" * 300_000)  # the test server's SERVING_MAX_BODY_BYTES is 200,000
    body = {"image": padding} | ({"target": "3"} if route == "/feedback" else {})
    check(client.post(route, json=body), 413, "body_too_large", "200,000 bytes")


@pytest.mark.usefixtures("unchanged")
def test_body_over_the_limit_without_a_content_length(client) -> None:
    def chunks():
        yield b'{"image": "'
        for _ in range(50):
            yield b"A" * 10_000
        yield b'"}'

    reply = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    check(reply, 413, "body_too_large", "200,000 bytes")


@pytest.mark.usefixtures("unchanged")
def test_unknown_label_lists_the_valid_classes(client, samples) -> None:
    body = check(
        client.post("/feedback", json={"image": b64(samples["3"]), "target": "three"}),
        422,
        "unknown_class",
        "'three' is not one of the model's classes: 0, 1, 2",
    )
    assert body["classes"] == [str(digit) for digit in range(10)]


@pytest.mark.usefixtures("unchanged")
def test_unknown_shown_prediction(client, samples) -> None:
    body = {"image": b64(samples["3"]), "target": "3", "prediction": "33"}
    check(client.post("/feedback", json=body), 422, "unknown_class", "prediction '33'")


@pytest.mark.usefixtures("unchanged")
def test_missing_target(client, samples) -> None:
    check(
        client.post("/feedback", json={"image": b64(samples["3"])}),
        422,
        "invalid_request",
        "target: Field required",
    )
    reply = client.post("/feedback", files={"file": ("3.png", samples["3"], "image/png")})
    check(reply, 422, "missing_target", "'target'")


def test_batch_over_its_limit(client, samples) -> None:
    reply = client.post("/predict", json={"images": [b64(samples["1"])] * 9})  # SERVING_MAX_BATCH=8
    check(reply, 422, "batch_too_large", "at most 8 images")
    files = [("file", ("1.png", samples["1"], "image/png"))] * 9
    check(client.post("/predict", files=files), 422, "invalid_form", "files")


def test_a_bad_image_in_a_batch_is_named(client, samples) -> None:
    reply = client.post("/predict", json={"images": [b64(samples["1"]), b64(b"nonsense" * 10)]})
    check(reply, 422, "not_an_image", "images[1]")


def test_both_or_neither_image_fields(client, samples) -> None:
    check(client.post("/predict", json={}), 422, "invalid_request", "either 'image'")
    both = {"image": b64(samples["1"]), "images": [b64(samples["1"])]}
    check(client.post("/predict", json=both), 422, "invalid_request", "either 'image'")


def test_unexpected_fields_are_refused(client, samples) -> None:
    reply = client.post("/predict", json={"image": b64(samples["1"]), "img": "x"})
    check(reply, 422, "invalid_request", "img: Extra inputs are not permitted")


@pytest.mark.usefixtures("unchanged")
def test_unsupported_content_type(client, samples) -> None:
    reply = client.post("/feedback", content=samples["1"], headers={"content-type": "image/png"})
    check(reply, 415, "unsupported_media_type", "multipart")


def test_unknown_route_and_wrong_method(client) -> None:
    check(client.get("/nowhere"), 404, "not_found", "Not Found")
    check(client.get("/predict"), 405, "method_not_allowed", "Method Not Allowed")


def grey_png(width: int, height: int) -> bytes:
    """A valid, highly compressible grey PNG of any size (all pixels 0), built row by row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor, parts, row = zlib.compressobj(9), [], b"\0" * (width + 1)
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def worker_rss_mib(server: LiveServer) -> float:
    """Resident memory of the one-worker server (uvicorn runs it in the launcher's process)."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_an_absurdly_long_image_is_refused_before_decoding_and_costs_no_memory(
    live: httpx.Client, server: LiveServer
) -> None:
    """16,777,216 x 1 pixels is within the pixel limit, in 16 KB of PNG: it used to take seconds
    and leave 512 MB in the worker for good (a weights cache keyed by the width)."""
    long_png = grey_png(16_777_216, 1)
    assert len(long_png) < 50_000
    before = worker_rss_mib(server)
    for width in (16_777_216, 16_777_215, 16_777_214, 16_777_213):  # four different widths
        body = {"image": b64(grey_png(width, 1))}
        check(live.post("/predict", json=body), 413, "image_too_large", "no side may be longer")
    assert worker_rss_mib(server) - before < 50


@pytest.mark.usefixtures("unchanged")
def test_an_image_of_absurd_shape_is_refused(client) -> None:
    reply = client.post("/predict", json={"image": b64(grey_png(4000, 100))})
    check(reply, 422, "image_shape", "may differ by a factor of 16 at most")


@pytest.mark.usefixtures("unchanged")
def test_a_batch_holds_a_bounded_number_of_pixels(client) -> None:
    """Five 2,048-pixel squares: each is fine, together they are over SERVING_MAX_BATCH_PIXELS."""
    square = b64(grey_png(2048, 2048))
    check(
        client.post("/predict", json={"images": [square] * 5}),
        413,
        "batch_too_large",
        "20,971,520 pixels together; the limit is 16,777,216",
    )


@pytest.mark.usefixtures("unchanged")
def test_a_chunked_multipart_body_over_the_limit_is_413(client, samples) -> None:
    boundary = "ctloopboundary"

    def chunks():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(30):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    reply = client.post(
        "/feedback",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    check(reply, 413, "body_too_large", "200,000 bytes")


def test_the_docs_page_loads_no_third_party_script(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links and all(link.startswith("/") for link in links), links
    for link in links:
        assert client.get(link).status_code == 200, link


def test_every_error_body_matches_the_documented_schema(client) -> None:
    """What /openapi.json promises for errors is what the routes send."""
    spec = client.get("/openapi.json").json()
    schema = spec["components"]["schemas"]["ErrorResponse"]
    rollback = spec["paths"]["/model/rollback"]["post"]["responses"]
    assert rollback["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
    reply = client.post("/model/rollback", json={"version": 3})
    body = check(reply, 422, "invalid_request", "version")
    assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])


def test_the_abuse_benchmark_runs(built, tmp_path) -> None:
    """bench/abuse.py's smoke run: one small attack on a real server (docs/studies/hardening.md
    has the real run); the row says what the attacker got and what the worker did."""
    copy_workspace(built, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bench.abuse", "--smoke", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_environment(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| nesting |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "2 x 422" and cells[2].endswith(" B"), row  # a reply under 1 KB
    before, peak, after = (float(value) for value in cells[4].split(" MB")[0].split(" / "))
    assert peak >= before > 0 and after > 0, row


def test_no_client_error_was_ever_a_500(client: BlockingClient) -> None:
    """Runs last in this module: the in-process client kept the status of every reply above."""
    assert len(client.statuses) > 50 and all(status < 500 for status in client.statuses)

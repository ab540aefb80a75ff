"""What /feedback, /ready and /metrics say when prod_data.csv has no room or holds a line that is
not a row. In process (create_app + lifespan through httpx.ASGITransport), on a real tmpfs filled
to its last block; the file-size limit and concurrent writers: tests/code/test_prod_data.py."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.asgi import AUTH, in_process, serving_settings
from harness.data import copy_workspace
from harness.images import b64
from harness.storage import fill, small_filesystem

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def metric(text: str, name: str) -> dict[str, float]:
    """{folder label or '': value} of a gauge in a /metrics reply."""
    return {
        sample.labels.get("folder", ""): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
    }


async def test_feedback_without_room_is_refused_with_507_and_resumes_by_itself(
    built, tmp_path, samples
) -> None:
    with small_filesystem(tmp_path / "small", "48m") as folder:
        settings = serving_settings(copy_workspace(built, folder), tmp_path / "secrets")
        body = {"image": b64(samples["3"]), "target": "3"}
        async with in_process(settings) as app:
            first = await app.post("/feedback", json=body, headers=AUTH)
            assert first.status_code == 200, first.text
            filler = fill(folder)
            path = settings.prod_data_path

            saved = [first.json()["rows"]]
            refused = None
            for _ in range(40):  # the last block of the file takes a few rows, then no more
                reply = await app.post("/feedback", json=body, headers=AUTH)
                if reply.status_code != 200:
                    refused = reply
                    break
                saved.append(reply.json()["rows"])
            assert refused is not None and refused.status_code == 507, refused
            error = refused.json()
            assert (
                error["error"] == "insufficient_storage"
                and "nothing was written" in (error["detail"])
            )
            assert refused.headers["retry-after"] == "60"
            on_disk = path.read_bytes()
            assert on_disk.endswith(b"\n"), "no part of the refused row stays"
            assert len(on_disk.splitlines()) == 1 + len(saved)

            again = await app.post("/feedback", json=body, headers=AUTH)
            assert again.status_code == 507 and path.read_bytes() == on_disk
            assert (await app.post("/predict", json={"image": body["image"]})).status_code == 200
            ready = (await app.get("/ready")).json()
            assert ready["status"] == "degraded"
            assert any("no room" in problem for problem in ready["problems"]), ready
            scraped = (await app.get("/metrics")).text
            assert metric(scraped, "ctloop_feedback_writable") == {"": 0}
            assert metric(scraped, "ctloop_disk_free_bytes")["data"] < 4096
            failures = metric(scraped, "ctloop_feedback_write_failures")
            assert failures, "refusals are counted"

            filler.unlink()  # room again: the next feedback is saved, numbered after the last
            resumed = await app.post("/feedback", json=body, headers=AUTH)
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["rows"] == saved[-1] + 1
            assert (await app.get("/ready")).json()["status"] == "ready"
            scraped = (await app.get("/metrics")).text
            assert metric(scraped, "ctloop_feedback_writable") == {"": 1}


async def test_a_line_that_is_not_a_row_is_skipped_recorded_and_feedback_goes_on(
    built, tmp_path, samples
) -> None:
    settings = serving_settings(copy_workspace(built, tmp_path), tmp_path / "secrets")
    body = {"image": b64(samples["5"]), "target": "5"}
    async with in_process(settings) as app:
        assert (await app.post("/feedback", json=body, headers=AUTH)).json()["rows"] == 1
        with settings.prod_data_path.open("ab") as handle:  # a hand edit while it runs
            handle.write(b'0.1,0.2,"unterminated\n')
        reply = await app.post("/feedback", json=body, headers=AUTH)
        assert reply.status_code == 200, reply.text
        assert reply.json()["rows"] == 3, "the bad line keeps row 2"
        assert (await app.get("/ready")).json()["status"] == "ready"
        scraped = (await app.get("/metrics")).text
        assert metric(scraped, "ctloop_prod_data_skipped_lines") == {"": 1}
    recorded = settings.data_dir / "prod_data.skipped.jsonl"
    entries = [json.loads(line) for line in recorded.read_bytes().splitlines()]
    assert [(entry["line"], entry["row"]) for entry in entries] == [(3, 2)]

    async with in_process(settings) as app:  # a restart: found again, recorded once
        assert (await app.post("/feedback", json=body, headers=AUTH)).json()["rows"] == 4
        scraped = (await app.get("/metrics")).text
        assert metric(scraped, "ctloop_prod_data_skipped_lines") == {"": 1}
    assert len(recorded.read_bytes().splitlines()) == 1

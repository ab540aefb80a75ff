"""Retraining through a real 2-worker server: exactly once per k rows, gated, hot-swapped."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from ctloop.dataset import load_samples
from ctloop.embed import load_embedding
from ctloop.prod_db import PostgresProductionData
from ctloop.registry import ModelRegistry
from ctloop.retrain_log import open_ledger
from ctloop.trainer import trainer_is_running
from harness import loopback
from harness.data import copy_workspace
from harness.images import b64
from harness.processes import TEST_TOKEN, LiveServer, trainer_pids, wait_for

pytestmark = pytest.mark.slow


def decisions(settings) -> list[dict]:
    """The retrain decisions logged so far (attempt lines left out), from either store."""
    return open_ledger(settings).decisions()


def feedback_items(settings, count: int) -> list[tuple[bytes, str]]:
    """The first `count` unseen images with their true class."""
    samples = load_samples(settings.samples_dir)
    return list(zip(samples.inputs, samples.labels, strict=True))[:count]


def poisoned_items(settings, count: int) -> list[tuple[bytes, str]]:
    """Images of 1s labelled 7, except the rows the gate holds out (every 5th), labelled 1.

    A challenger that learns "1 looks like 7" from the rows it trains on fails the held-out
    rows, which the champion gets right: it must be rejected. (Send them one at a time, so that
    row numbers follow the list.)
    """
    samples = load_samples(settings.samples_dir)
    ones = [
        image for image, label in zip(samples.inputs, samples.labels, strict=True) if label == "1"
    ]
    return [(image, "1" if index % 5 == 4 else "7") for index, image in enumerate(ones[:count])]


async def send_feedback(url: str, items, concurrency: int = 50, token: str = TEST_TOKEN) -> list:
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers) as http:
        return await asyncio.gather(
            *(http.post("/feedback", json={"image": b64(img), "target": t}) for img, t in items)
        )


async def predict_until(url: str, image: bytes, stop: asyncio.Event) -> list[tuple[int, str]]:
    """Keep asking for predictions (a new connection each time) until told to stop."""
    results = []
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        while not stop.is_set():
            reply = await http.post("/predict", json={"image": b64(image)})
            results.append((reply.status_code, reply.json().get("model_version")))
            await asyncio.sleep(0.005)
    return results


def served_versions_by_worker(url: str) -> dict[str, str]:
    """{pid: version} from ctloop_model_info, which every worker sets when it swaps models."""
    text = loopback.get(f"{url}/metrics", timeout=10).text
    found = {}
    for pid, version, value in re.findall(
        r'ctloop_model_info\{pid="(\d+)",version="(v\d+)"\} ([\d.]+)', text
    ):
        if float(value) == 1.0:
            found[pid] = version
    return found


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("store", ["file", "postgresql"])
def test_200_concurrent_feedbacks_on_2_workers_give_10_retrains(
    built, tmp_path, samples, store, request
) -> None:
    """The same with the rows in prod_data.csv and in PostgreSQL (DATABASE_URL): the row
    numbers, the every-k rule and the single trainer do not depend on the store."""
    settings = copy_workspace(built, tmp_path)
    env = {"RETRAIN_EVERY": "20"}
    if store == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("database_url")
        settings = settings.model_copy(update={"database_url": env["DATABASE_URL"]})
    with LiveServer(settings, tmp_path / "server.log", workers=2, **env) as server:

        async def scenario():
            stop = asyncio.Event()
            predicting = asyncio.create_task(predict_until(server.url, samples["4"], stop))
            replies = await send_feedback(server.url, feedback_items(settings, 200))
            await asyncio.to_thread(
                wait_for,
                lambda: len(decisions(settings)) >= 10,
                240,
                0.2,
                "10 retrain decisions",
            )
            stop.set()
            return replies, await predicting

        replies, predictions = asyncio.run(scenario())
        wait_for(lambda: not trainer_pids(settings.artifacts_dir), 60, what="trainers to exit")

        assert [reply.status_code for reply in replies] == [200] * 200
        numbers = sorted(reply.json()["rows"] for reply in replies)
        assert numbers == list(range(1, 201))
        assert sum(reply.json()["retrain_triggered"] for reply in replies) == 10

        if store == "postgresql":
            assert not settings.prod_data_path.exists(), "no file: the rows are in the database"
            assert not settings.retrain_log_path.exists(), "the ledger is in the database too"
            n = int(load_embedding(settings.embedding_dir).info["n_components"])
            exported = b"".join(PostgresProductionData(env["DATABASE_URL"], n).lines()).decode()
            rows = list(csv.reader(io.StringIO(exported)))
        else:
            with settings.prod_data_path.open(newline="") as handle:
                rows = list(csv.reader(handle))
        assert len(rows) == 201 and all(len(row) == len(rows[0]) for row in rows)
        assert {row[-2] for row in rows[1:]} == {reply.json()["request_id"] for reply in replies}

        log = decisions(settings)
        # One decision per multiple of k, in order; under this burst the trainer may cover
        # several triggers with one retrain (the older ones are recorded as superseded).
        assert [entry["trigger_rows"] for entry in log] == list(range(20, 201, 20))
        trained = [entry for entry in log if entry["decision"] != "superseded"]
        assert all(entry["decision"] in ("promoted", "rejected") for entry in trained), log
        assert log[-1] in trained, "the newest trigger is always trained"
        versions = [int(entry["version"][1:]) for entry in trained]
        assert versions == sorted(versions) and len(set(versions)) == len(trained)
        assert ModelRegistry(settings.artifacts_dir).version_ids()[-1] == log[-1]["version"]

        assert len(predictions) > 20, "predictions kept coming while retrains ran"
        assert {status for status, _ in predictions} == {200}


def test_a_rejected_challenger_changes_nothing_served(built, tmp_path, samples) -> None:
    settings = copy_workspace(built, tmp_path)
    registry = ModelRegistry(settings.artifacts_dir)
    before = tree_digest(registry.versions_dir / "v0001")
    # The whole fine-tune step, so that the poisoned rows make a challenger worse on the gate
    # (0.3 of a step of 16 rows barely moves the head: no rejection to watch).
    env = {"RETRAIN_EVERY": "20", "PROD_WEIGHT": "50", "FINETUNE_INTERPOLATION": "1"}
    with LiveServer(settings, tmp_path / "server.log", workers=2, **env) as server:
        # One by one: rows in order.
        with httpx.Client(base_url=server.url, timeout=30, headers=server.auth) as http:
            replies = [
                http.post("/feedback", json={"image": b64(image), "target": target})
                for image, target in poisoned_items(settings, 20)
            ]
        assert all(reply.status_code == 200 for reply in replies)
        wait_for(lambda: decisions(settings), 120, what="the retrain decision")
        (entry,) = decisions(settings)
        assert entry["decision"] == "rejected", entry
        assert entry["challenger_score"] < entry["champion_score"]
        assert registry.current_version() == "v0001"
        assert tree_digest(registry.versions_dir / "v0001") == before
        time.sleep(1)  # well past SERVING_MODEL_POLL_SECONDS: a wrong swap would show now
        assert set(served_versions_by_worker(server.url).values()) == {"v0001"}
        versions = loopback.get(f"{server.url}/model/versions").json()
        rejected = versions[-1]
        assert rejected["gate"]["decision"] == "rejected" and rejected["current"] is False
        assert rejected["gate"]["champion"] == "v0001" and rejected["trigger_rows"] == 20
        # What it was: a fine-tune of v0001 on the window since it, for 20 rows, and its cost.
        assert rejected["mode"] == "finetune" and rejected["base_version"] == "v0001"
        assert rejected["production_window"] == [1, 19] and rejected["trigger_reasons"] == ["rows"]
        assert rejected["seconds"] > 0 and entry["mode"] == "finetune"
        model = loopback.get(f"{server.url}/model").json()
        assert model["version"] == "v0001" and model["last_retrain"]["decision"] == "rejected"
        assert model["rows_since_last_retrain"] == 0 and model["rows_until_retrain"] == 20
        assert model["retrain_backlog"] == 0


def test_a_promoted_model_is_served_by_every_worker_without_a_failed_request(
    built, tmp_path, samples
) -> None:
    settings = copy_workspace(built, tmp_path)
    env = {"RETRAIN_EVERY": "20", "PROMOTION_POLICY": "always", "API_TOKEN": "s3cret"}
    with LiveServer(settings, tmp_path / "server.log", workers=2, **env) as server:

        async def scenario():
            stop = asyncio.Event()
            predicting = asyncio.create_task(predict_until(server.url, samples["9"], stop))
            await send_feedback(server.url, feedback_items(settings, 20), token="s3cret")
            await asyncio.to_thread(
                wait_for,
                lambda: (
                    set(served_versions_by_worker(server.url).values()) == {"v0002"}
                    and len(served_versions_by_worker(server.url)) == 2
                ),
                120,
                0.2,
                "both workers to serve v0002",
            )
            # Roll back through the API: every worker follows, still without a failed request.
            reply = await asyncio.to_thread(
                httpx.post,
                f"{server.url}/model/rollback",
                headers={"Authorization": "Bearer s3cret"},
            )
            assert reply.status_code == 200 and reply.json() == {
                "version": "v0001",
                "previous": "v0002",
            }
            await asyncio.to_thread(
                wait_for,
                lambda: set(served_versions_by_worker(server.url).values()) == {"v0001"},
                30,
                0.1,
                "both workers to roll back",
            )
            stop.set()
            return await predicting

        predictions = asyncio.run(scenario())
        assert {status for status, _ in predictions} == {200}
        assert {version for _, version in predictions} == {"v0001", "v0002"}
        (entry,) = decisions(settings)
        assert entry["decision"] == "promoted" and entry["version"] == "v0002"
        fresh = [
            loopback.post(f"{server.url}/predict", json={"image": b64(samples["9"])})
            for _ in range(20)
        ]
        assert {reply.json()["model_version"] for reply in fresh} == {"v0001"}


def test_rollback_needs_the_token_and_a_parent(built, tmp_path) -> None:
    settings = copy_workspace(built, tmp_path)
    with LiveServer(settings, tmp_path / "server.log", API_TOKEN="s3cret") as server:
        assert loopback.post(f"{server.url}/model/rollback").status_code == 401
        wrong = loopback.post(
            f"{server.url}/model/rollback", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        auth = {"Authorization": "Bearer s3cret"}
        reply = loopback.post(f"{server.url}/model/rollback", headers=auth)
        assert reply.status_code == 409 and "no parent" in reply.json()["detail"]
        reply = loopback.post(
            f"{server.url}/model/rollback", headers=auth, json={"version": "v0099"}
        )
        assert reply.status_code == 404 and reply.json()["error"] == "unknown_version"


def test_a_server_killed_mid_retrain_restarts_on_the_last_good_version(
    built, tmp_path, samples
) -> None:
    settings = copy_workspace(built, tmp_path)
    server = LiveServer(settings, tmp_path / "server.log", RETRAIN_EVERY="20").start()

    def trainer_is_working() -> bool:
        return trainer_is_running(settings)

    async def feedback_then_kill():
        """20 feedbacks (a retrain starts), 60 more in flight, and the machine 'dies' as soon as
        the trainer holds its lock (it trains for about half a second)."""
        first = await send_feedback(server.url, feedback_items(settings, 20))
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=server.auth) as http:
            tasks = [
                asyncio.create_task(http.post("/feedback", json={"image": b64(img), "target": t}))
                for img, t in feedback_items(settings, 80)[20:]
            ]
            await asyncio.to_thread(wait_for, trainer_is_working, 60, 0.005, "the trainer")
            for pid in trainer_pids(settings.artifacts_dir):
                os.kill(pid, signal.SIGKILL)
            server.kill()
            done = await asyncio.gather(*tasks, return_exceptions=True)
        return first + [reply for reply in done if isinstance(reply, httpx.Response)]

    acknowledged = asyncio.run(feedback_then_kill())
    acknowledged_ids = {r.json()["request_id"] for r in acknowledged if r.status_code == 200}
    assert len(acknowledged_ids) >= 20

    with settings.prod_data_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert all(len(row) == len(rows[0]) for row in rows), "a torn row"
    assert acknowledged_ids <= {row[-2] for row in rows[1:]}, "an acknowledged row is missing"
    registry = ModelRegistry(settings.artifacts_dir)
    # The pointer names a complete version: v0001, or v0002 if the retrain finished its write
    # and its promotion before the kill; nothing half-written is ever in versions/.
    served = registry.current_version()
    assert served in {"v0001", "v0002"}
    for version in registry.version_ids():
        assert registry.load(version).version == version  # IntegrityError if half-written
    if served == "v0002":
        assert registry.manifest("v0002")["retrain"]["trigger_rows"] == 20

    with LiveServer(settings, tmp_path / "restart.log", RETRAIN_EVERY="20") as restarted:
        assert loopback.get(f"{restarted.url}/ready").json()["model_version"] == served
        # The retrain that was killed is done now, once.
        wait_for(lambda: decisions(settings), 120, what="the retrain")
        wait_for(lambda: not trainer_pids(settings.artifacts_dir), 60, what="trainers to exit")
        log = decisions(settings)
        assert [entry["trigger_rows"] for entry in log] == list(range(20, len(rows), 20))
        assert (
            loopback.post(f"{restarted.url}/predict", json={"image": b64(samples["0"])}).status_code
            == 200
        )

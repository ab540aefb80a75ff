"""The trainer process's rules, run in-process on a private copy of the stack: what is due, one
decision per trigger, superseded backlogs, recovery after a crash, bounded retries, the lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from ctloop.candidate import train_candidate
from ctloop.config import CoreSettings
from ctloop.registry import ModelRegistry
from ctloop.retrain_log import RetrainLog
from ctloop.trainer import MAX_ATTEMPTS, run_pending, trainer_is_running, trainer_lock
from harness.data import make_settings, served_feedback, write_prod
from harness.processes import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def fed(workspace: CoreSettings, built: CoreSettings):
    """The private stack with a function that appends the next `n` real feedback rows."""
    embeddings, targets, predictions = served_feedback(built)
    sent = 0

    def feed(count: int) -> None:
        nonlocal sent
        rows = slice(sent, sent + count)
        write_prod(workspace.prod_data_path, embeddings[rows], targets[rows], predictions[rows])
        sent += count

    return workspace, feed


def ledger(settings: CoreSettings) -> RetrainLog:
    return RetrainLog(settings.retrain_log_path)


def test_nothing_is_due_below_k_rows(fed) -> None:
    settings, feed = fed
    feed(19)
    assert run_pending(settings) == []
    assert not settings.retrain_log_path.exists()


def test_each_multiple_of_k_is_decided_once(fed) -> None:
    settings, feed = fed
    feed(20)
    (first,) = run_pending(settings)
    assert first["trigger_rows"] == 20 and first["decision"] in ("promoted", "rejected")
    assert run_pending(settings) == []  # decided: never again
    feed(20)
    (second,) = run_pending(settings)
    assert second["trigger_rows"] == 40
    assert [d["trigger_rows"] for d in ledger(settings).decisions()] == [20, 40]


def test_a_backlog_is_covered_by_one_retrain_of_the_newest_trigger(fed) -> None:
    settings, feed = fed
    feed(65)
    outcomes = run_pending(settings)
    assert [(o["trigger_rows"], o["decision"]) for o in outcomes][:2] == [
        (20, "superseded"),
        (40, "superseded"),
    ]
    assert outcomes[2]["trigger_rows"] == 60 and outcomes[2]["decision"] != "superseded"
    registry = ModelRegistry(settings.artifacts_dir)
    assert registry.version_ids() == ["v0001", "v0002"], "one retrain, not three"
    assert registry.manifest("v0002")["training"]["production_rows_read"] == 60


def test_a_crash_between_register_and_log_is_finished_not_repeated(
    fed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer registered v0002 for trigger 20 and died before promoting and logging it."""
    settings, feed = fed
    # Promoted whatever the gate says: this test is about what happens after the decision.
    settings = make_settings(settings.data_dir.parent, promotion_policy="always")
    feed(20)
    registry = ModelRegistry(settings.artifacts_dir)

    def die(self, version: str, reason: str = "") -> None:
        raise SystemExit("the trainer dies here")

    with monkeypatch.context() as patch:
        patch.setattr(ModelRegistry, "promote", die)
        with pytest.raises(SystemExit):
            train_candidate(
                settings,
                registry,
                prod_rows=20,
                trigger={"trigger_rows": 20, "retrain_every": 20},
            )
    assert registry.version_ids() == ["v0001", "v0002"]
    assert registry.manifest("v0002")["gate"]["decision"] == "promoted"
    assert registry.current_version() == "v0001"  # the move never happened

    (entry,) = run_pending(settings)

    assert entry["recovered"] is True and entry["version"] == "v0002"
    assert entry["decision"] == "promoted"
    assert registry.current_version() == "v0002", "the promotion it decided is carried out"
    assert registry.version_ids() == ["v0001", "v0002"], "no second training"
    assert [d["trigger_rows"] for d in ledger(settings).decisions()] == [20]


def test_a_trigger_whose_trainer_keeps_dying_fails_after_bounded_attempts(fed) -> None:
    settings, feed = fed
    feed(20)
    for attempt in range(1, MAX_ATTEMPTS + 1):  # trainers that died after logging their attempt
        ledger(settings).append({"trigger_rows": 20, "event": "attempt", "attempt": attempt})
    (entry,) = run_pending(settings)
    assert entry["decision"] == "failed"
    assert f"stopped {MAX_ATTEMPTS} times" in entry["error"]
    assert ModelRegistry(settings.artifacts_dir).version_ids() == ["v0001"]


def test_the_retrain_command_summarises_every_kind_of_decision_and_exits_0(fed) -> None:
    """`ctloop retrain` as the API starts it: superseded, failed, promoted or rejected, each one
    line, exit 0 (a superseded decision has no `seconds`: it used to crash the summary)."""
    settings, feed = fed
    feed(65)
    for attempt in range(1, MAX_ATTEMPTS + 1):  # the trigger at 60 rows keeps killing trainers
        ledger(settings).append({"trigger_rows": 60, "event": "attempt", "attempt": attempt})
    env = {**os.environ, "DATA_DIR": str(settings.data_dir),
           "ARTIFACTS_DIR": str(settings.artifacts_dir)}  # fmt: skip

    def retrain() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "ctloop", "retrain"],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    lines = retrain()
    assert [line.split(":")[0] for line in lines] == [
        "retrain at 20 rows", "retrain at 40 rows", "retrain at 60 rows"
    ]  # fmt: skip
    assert "superseded (the retrain at 60 rows covers these rows too)" in lines[0]
    assert "failed" in lines[2] and f"stopped {MAX_ATTEMPTS} times" in lines[2]
    feed(15)
    (line,) = retrain()
    assert line.startswith("retrain at 80 rows: ") and " v0002 " in line
    assert line.split(": ")[1].split()[0] in ("promoted", "rejected") and line.endswith(" s")


def test_a_trigger_whose_trainer_died_once_is_tried_again(fed) -> None:
    settings, feed = fed
    feed(20)
    ledger(settings).append({"trigger_rows": 20, "event": "attempt", "attempt": 1})
    (entry,) = run_pending(settings)
    assert entry["decision"] in ("promoted", "rejected")
    attempts = [e for e in ledger(settings).entries() if e.get("event") == "attempt"]
    assert [a["attempt"] for a in attempts] == [1, 2]


def test_only_the_holder_of_the_trainer_lock_trains(fed) -> None:
    settings, feed = fed
    feed(20)
    lock = trainer_lock(settings)
    with lock:
        assert trainer_is_running(settings)
        assert run_pending(settings) == []  # another trainer holds the lock: exit at once
    assert not trainer_is_running(settings)
    assert len(run_pending(settings)) == 1


def test_drift_in_the_latest_window_starts_a_retrain_once_per_window(
    workspace: CoreSettings, built: CoreSettings
) -> None:
    """k far away: only the drift trigger can start a retrain."""
    settings = workspace.model_copy(update={"retrain_every": 10_000})
    embeddings, targets, predictions = served_feedback(built)
    write_prod(settings.prod_data_path, embeddings[:25], targets[:25], predictions[:25])
    assert run_pending(settings) == []  # below MONITORING_MIN_ROWS: not even looked at

    drifted = embeddings[25:60] + 3.0  # every column moves
    write_prod(settings.prod_data_path, drifted, targets[25:60], predictions[25:60])
    (entry,) = run_pending(settings)
    assert entry["trigger_rows"] == 60 and entry["reasons"] == ["drift"]
    check = next(e for e in ledger(settings).entries() if e.get("event") == "check")
    assert check["drift_share"] >= settings.drift_trigger_share and check["fired"] == ["drift"]
    manifest = ModelRegistry(settings.artifacts_dir).manifest(entry["version"])
    assert manifest["retrain"]["reasons"] == ["drift"]

    write_prod(settings.prod_data_path, drifted[:20], targets[25:45], predictions[25:45])
    assert run_pending(settings) == [], "the same drift, within the window: no new retrain"
    assert ledger(settings).last_checked_rows() == 80


def test_a_drop_in_served_accuracy_starts_a_retrain(
    workspace: CoreSettings, built: CoreSettings
) -> None:
    settings = workspace.model_copy(update={"retrain_every": 10_000})
    embeddings, targets, _ = served_feedback(built)
    wrong = np.array([str((int(t) + 1) % 10) for t in targets[:40]])  # the served answers
    write_prod(settings.prod_data_path, embeddings[:40], targets[:40], wrong)
    (entry,) = run_pending(settings)
    assert "quality" in entry["reasons"] and entry["trigger_rows"] == 40
    check = next(e for e in ledger(settings).entries() if e.get("event") == "check")
    assert check["served_accuracy"] == 0.0 and check["quality_floor"] > 0.9


def test_a_k_trigger_records_the_other_reasons_that_hold(
    workspace: CoreSettings, built: CoreSettings
) -> None:
    settings = workspace.model_copy(update={"retrain_every": 40})
    embeddings, targets, predictions = served_feedback(built)
    write_prod(settings.prod_data_path, embeddings[:40] + 3.0, targets[:40], predictions[:40])
    (entry,) = run_pending(settings)
    assert entry["trigger_rows"] == 40 and entry["reasons"] == ["rows", "drift"]


def test_a_trainer_ends_soon_after_the_server_that_started_it(tmp_path) -> None:
    """The watch `ctloop retrain` starts: here on a stand-in server (a sleep) killed under it."""
    server = subprocess.Popen(["sleep", "600"])
    code = "import time; from ctloop.trainer import exit_with_server\nexit_with_server(0.1)\n"
    code += "print('watching', flush=True); time.sleep(120); print('outlived')"
    trainer = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "CTLOOP_SERVER_PID": str(server.pid)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert trainer.stdout.readline().strip() == "watching"
        assert trainer.poll() is None
        server.kill()
        server.wait()
        assert trainer.wait(timeout=20) == 1
        assert "outlived" not in trainer.stdout.read()
    finally:
        server.kill()
        trainer.kill()


def test_a_periodic_rebuild_gives_way_to_a_burst_and_fine_tunes_cover_it(fed) -> None:
    """Rows pile up behind a full rebuild (a burst): it gives way once a fine-tune window of
    rows has arrived, its trigger is superseded, and a fine-tune of seconds covers the newest."""
    workspace, feed = fed
    settings = make_settings(workspace.data_dir.parent, scratch_every=1, finetune_window_rows=40)
    feed(20)
    (first,) = run_pending(settings)
    assert first["mode"] == "finetune"
    feed(20)  # 40: the periodic rebuild is due (one fine-tune since the last, SCRATCH_EVERY 1)

    def burst() -> None:  # once the rebuild has started, 60 more rows arrive
        wait_for(lambda: ledger(settings).attempts(40), 120, 0.01, "the rebuild to start")
        feed(60)

    writer = threading.Thread(target=burst)
    writer.start()
    outcomes = run_pending(settings)
    writer.join()
    summary = [(o["trigger_rows"], o["decision"], o.get("mode")) for o in outcomes]
    assert summary[0] == (40, "superseded", None) and outcomes[0]["yielded"] is True
    assert "the periodic full rebuild gave way: 60 rows arrived" in outcomes[0]["reason"]
    assert summary[1:3] == [(60, "superseded", None), (80, "superseded", None)]
    assert summary[3][0] == 100 and summary[3][2] == "finetune"
    manifest = ModelRegistry(settings.artifacts_dir).manifest(outcomes[3]["version"])
    assert "waits until the trainer has caught up" in manifest["training"]["mode_reason"]
    feed(20)  # caught up: the next trigger rebuilds
    (rebuilt,) = run_pending(settings)
    assert rebuilt["trigger_rows"] == 120 and rebuilt["mode"] == "scratch"

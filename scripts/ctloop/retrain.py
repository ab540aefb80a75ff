"""Retraining on reference + production rows, once per multiple of RETRAIN_EVERY rows.

The serving API only appends rows and starts `python -m ctloop retrain` when a multiple of k is
reached; this module does the rest, in that separate process:

- the retrains due are derived, not queued: every multiple of k up to the number of rows in
  prod_data.csv that has no decision in artifacts/retrains.jsonl yet. A crash, a restart or a
  burst of feedback cannot lose or duplicate one;
- one trainer at a time (a file lock); a trainer started while another runs exits at once, and the
  running one checks again before it leaves, so no trigger is left behind;
- the retrain for trigger N trains on the first N production rows exactly, so it is reproducible
  and the versions follow the triggers in order;
- each decision (promoted, rejected, failed) is registered and logged once.
"""

from __future__ import annotations

import json
import logging
import os
import time

from filelock import FileLock, Timeout

from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.gate import RULE, decide, gate_score, gate_set
from ctloop.ledger import pending_triggers
from ctloop.pipeline import build_manifest, version_files
from ctloop.predict import Classifier, load_model
from ctloop.registry import ModelRegistry, utc_now
from ctloop.train import load_training_set, train_head

log = logging.getLogger("ctloop.retrain")


def run_pending(settings: CoreSettings) -> list[dict]:
    """Process every pending retrain unless another trainer is doing it; return the decisions."""
    lock = FileLock(str(settings.artifacts_dir / ".trainer.lock"))
    outcomes: list[dict] = []
    while True:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return outcomes  # the trainer holding the lock checks again before it leaves
        try:
            while triggers := pending_triggers(settings):
                outcomes.append(retrain(settings, triggers[0]))
        finally:
            lock.release()
        if not pending_triggers(settings):  # a trigger may have landed just before the release
            return outcomes


def retrain(settings: CoreSettings, trigger_rows: int) -> dict:
    """Train a challenger on ref + the first `trigger_rows` prod rows, gate it, log the decision."""
    started = time.perf_counter()
    registry = ModelRegistry(settings.artifacts_dir)
    entry = _recover(registry, trigger_rows)
    if entry is None:
        log.info("retrain_start", extra={"event": "retrain_start", "trigger_rows": trigger_rows})
        try:
            entry = _train_and_decide(settings, registry, trigger_rows)
        except Exception as exc:  # a failed retrain is a decision too: logged, not retried forever
            log.exception("retrain for %d rows failed", trigger_rows)
            entry = {"trigger_rows": trigger_rows, "decision": "failed", "error": repr(exc)}
    entry = {**entry, "seconds": round(time.perf_counter() - started, 3), "finished_at": utc_now()}
    with settings.retrain_log_path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    log.info("retrain_done", extra={"event": "retrain_done", **entry})
    return entry


def _train_and_decide(settings: CoreSettings, registry: ModelRegistry, trigger_rows: int) -> dict:
    embedding = load_embedding(settings.embedding_dir)
    training_set = load_training_set(settings, include_prod=True, prod_limit=trigger_rows)
    head = train_head(training_set)
    gate = gate_set(training_set, settings.gate_recent_rows)
    challenger = gate_score(Classifier(head.model, head.classes)(gate.embeddings)[0], gate)

    champion_version = registry.current_version()
    champion = None
    if champion_version is not None:
        model = load_model(registry.load(champion_version))
        if model.manifest["embedding"]["sha256"] == embedding.sha256:  # same vector space
            champion = gate_score(model.classifier(gate.embeddings)[0], gate)
    decision, reason = decide(
        champion, challenger, settings.promotion_policy, settings.gate_tolerance
    )
    gate_record = {
        "rule": RULE,
        "policy": settings.promotion_policy,
        "tolerance": settings.gate_tolerance,
        "rows": {"reference": gate.reference_rows, "production": gate.production_rows},
        "champion": champion_version,
        "champion_score": champion,
        "challenger_score": challenger,
        "decision": decision,
        "reason": reason,
    }
    manifest = build_manifest(head, embedding.info, gate=gate_record)
    manifest["retrain"] = {"trigger_rows": trigger_rows, "retrain_every": settings.retrain_every}
    version = registry.register(
        files=version_files(embedding.model, head.model), manifest=manifest, parent=champion_version
    )
    if decision == "promoted":
        registry.promote(version, reason=f"retrain at {trigger_rows} rows")
    return _log_entry(trigger_rows, version, gate_record)


def _recover(registry: ModelRegistry, trigger_rows: int) -> dict | None:
    """A version registered for this trigger by a trainer that died before logging it."""
    for manifest in reversed(registry.list_versions()):
        if (manifest.get("retrain") or {}).get("trigger_rows") != trigger_rows:
            continue
        gate = manifest["gate"]
        if gate["decision"] == "promoted" and registry.current_version() == manifest["parent"]:
            registry.promote(manifest["version"], reason=f"retrain at {trigger_rows} rows")
        return {**_log_entry(trigger_rows, manifest["version"], gate), "recovered": True}
    return None


def _log_entry(trigger_rows: int, version: str, gate: dict) -> dict:
    return {
        "trigger_rows": trigger_rows,
        "version": version,
        "decision": gate["decision"],
        "champion": gate["champion"],
        "champion_score": (gate["champion_score"] or {}).get("score"),
        "challenger_score": gate["challenger_score"]["score"],
        "reason": gate["reason"],
    }

"""The stack's registry (artifacts/) mirrored into MLflow, and promotions taken back from it.

One pass (`Mirror.sync`) makes MLflow agree with artifacts/, idempotently, keyed by the stack's
version id (tag `ctloop.version` on the run and on the model version):

- every version is a run of one experiment (parameters, held-out and gate metrics, tags: the
  decision, its reason, the trigger, the sha256s) holding the ONNX pipeline in MLflow's `onnx`
  flavour (signature, input example) and its manifest, and a version of one registered model;
- the alias `champion` names the served version and `challenger` the one on stage (removed when
  no stage runs); each model version's latest stage move is its tags `ctloop.stage*`;
- a person who moved `champion` to another version asks for it to be served: the stack promotes it
  through its own registry (which verifies the files) when it can serve it, and otherwise puts
  the alias back and tags the version with the refusal. The version the mirror last aliased is
  kept as a tag of the registered model, so the mirror holds no state of its own;
- the dashboard's window figures (its exporter's: the served version's accuracy and macro F1 on
  the rows it answered, the window's drift share) are logged to the served version's run when a
  new snapshot has them, step = the feedback rows it covers: MLflow's charts show a version's life
  in production.

Versions are mirrored oldest first, so after an outage the missing ones appear in order; a lost
MLflow (its volume deleted) is rebuilt by the same pass (`python -m tracking sync`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from prometheus_client.parser import text_string_to_metric_families

from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.reference import embedding_mismatch
from ctloop.registry import ModelRegistry, RegistryError
from tracking.app import ALIAS_TAG
from tracking.settings import TrackingSettings

log = logging.getLogger("tracking")

VERSION_TAG = "ctloop.version"
MIRRORED_CHAMPION = "ctloop.mirrored_champion"  # registered model tag: the alias the mirror set
CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class Mirror:
    """Keeps one MLflow experiment and registered model in step with one artifacts/ folder."""

    core: CoreSettings
    settings: TrackingSettings
    client: MlflowClient = field(init=False)
    # What this process knows MLflow already holds, keyed by the stack's version id.
    _experiment_id: str | None = field(default=None, init=False)
    _experiment_key: str | None = field(default=None, init=False)
    _runs: dict[str, str] = field(default_factory=dict, init=False)
    _model_versions: dict[str, ModelVersion] = field(default_factory=dict, init=False)
    _figures_step: dict[str, int] = field(default_factory=dict, init=False)  # version -> rows
    _history_seen: tuple[int, int, int] | None = field(default=None, init=False)
    _skipped: dict[str, str] = field(default_factory=dict, init=False)  # version -> why
    # One HTTP client for the exporter: a client per pass would load the CA bundle each time.
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5), init=False)

    def __post_init__(self) -> None:
        uri = self.settings.tracking_uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.registry = ModelRegistry(self.core.artifacts_dir)

    # -- one pass --------------------------------------------------------------------------------

    def sync(self) -> list[str]:
        """Make MLflow agree with artifacts/; what was done, one line per change. A pass cut
        short (MLflow away mid-way) makes the next one read MLflow again, so whatever the cut
        pass did or half did is found, not done twice."""
        try:
            return self._sync()
        except BaseException:
            self._experiment_key = None
            raise

    def _sync(self) -> list[str]:
        done: list[str] = []
        self._know_mlflow()
        for version in self.registry.version_ids():
            if version not in self._runs:
                try:  # read and verified before anything is written to MLflow
                    manifest = self.registry.manifest(version)
                    pipeline = self.registry.load(version).files["pipeline.onnx"]
                except RegistryError as exc:
                    done += self._skip(version, str(exc))
                    continue
                self._runs[version] = self._log_run(manifest, pipeline)
                self._skipped.pop(version, None)
                done.append(f"run of {version}")
            if version not in self._model_versions:
                self._model_versions[version] = self._register(version, self._runs[version])
                done.append(f"model version of {version}")
        model = self.client.get_registered_model(self.settings.model_name)
        by_number = {mv.version: version for version, mv in self._model_versions.items()}
        aliases = {
            alias: by_number.get(number, f"MLflow version {number}")
            for alias, number in (model.aliases or {}).items()
        }
        tags = model.tags or {}
        mirrored = tags.get(MIRRORED_CHAMPION)
        done += self._take_promotion(
            aliases.get(CHAMPION), mirrored, tags.get(ALIAS_TAG + CHAMPION)
        )
        done += self._align_aliases(aliases, mirrored)
        done += self._stage_tags()
        done += self._production_figures()
        return done

    def _know_mlflow(self) -> None:
        """The experiment, the registered model and what they hold (read once, or again when
        MLflow's state was lost: the experiment is another one)."""
        name = self.settings.experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            experiment = self.client.get_experiment(self.client.create_experiment(name))
        # A rebuilt MLflow may give the experiment the same id again: its creation time differs.
        key = f"{experiment.experiment_id}@{experiment.creation_time}"
        if key == self._experiment_key:
            return
        self._experiment_key, self._experiment_id = key, experiment.experiment_id
        self._runs, self._model_versions, self._history_seen = {}, {}, None
        for run in self._search_runs():
            version = run.data.tags.get(VERSION_TAG)
            if not version:
                continue
            if run.info.status != "FINISHED":  # a pass cut short while logging it: log it anew
                self.client.delete_run(run.info.run_id)
            else:
                self._runs.setdefault(version, run.info.run_id)
        model = self.settings.model_name
        try:
            self.client.get_registered_model(model)
        except MlflowException:
            self.client.create_registered_model(
                model, description="The stack's model versions (artifacts/), mirrored."
            )
        for model_version in self._search_model_versions():
            version = model_version.tags.get(VERSION_TAG)
            if version:
                self._model_versions.setdefault(version, model_version)

    def _search_runs(self) -> list[Any]:
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self._experiment_id or ""], max_results=1000, page_token=token
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def _search_model_versions(self) -> list[ModelVersion]:
        found, token = [], None
        while True:
            page = self.client.search_model_versions(
                f"name = '{self.settings.model_name}'", max_results=1000, page_token=token
            )
            found += list(page)
            token = page.token
            if not token:
                return found

    # -- a version: its run and its registered model version -------------------------------------

    def _skip(self, version: str, why: str) -> list[str]:
        """A version that cannot be read or verified is left out, said once, and tried again at
        every pass; the versions after it are mirrored."""
        if self._skipped.get(version) == why:
            return []
        self._skipped[version] = why
        log.warning("a version cannot be mirrored", extra={"version": version, "reason": why})
        return [f"skipped {version} ({why})"]

    def _log_run(self, manifest: dict, pipeline: bytes) -> str:
        version = manifest["version"]
        training = manifest.get("training") or {}
        created = _millis(manifest["created_at"])
        seconds = float(training.get("seconds") or 0)
        run = self.client.create_run(
            self._experiment_id or "",
            start_time=created - int(seconds * 1000),
            run_name=f"{version} {training.get('mode', 'train')}",
            tags={VERSION_TAG: version},
        )
        run_id = run.info.run_id
        # A run is the version's once FINISHED: one left RUNNING (MLflow or this process gone
        # mid-way) is deleted by the next pass that reads MLflow, and logged again.
        metrics = run_metrics(manifest)
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, value, created, 0) for key, value in metrics.items()],
            params=[Param(key, value) for key, value in run_params(manifest).items()],
            tags=[RunTag(key, value) for key, value in run_tags(manifest).items()],
        )
        with tempfile.TemporaryDirectory(prefix="ctloop-mlflow-") as folder:
            save_onnx(pipeline, Path(folder) / "model")
            (Path(folder) / "manifest.json").write_text(json.dumps(manifest, indent=1))
            self.client.log_artifacts(run_id, str(Path(folder) / "model"), "model")
            self.client.log_artifact(run_id, str(Path(folder) / "manifest.json"))
        self.client.set_terminated(run_id, "FINISHED", end_time=created)
        log.info("logged a run", extra={"version": version, "run_id": run_id})
        return run_id

    def _register(self, version: str, run_id: str) -> ModelVersion:
        run = self.client.get_run(run_id)
        model_version = self.client.create_model_version(
            self.settings.model_name,
            source=f"{run.info.artifact_uri}/model",
            run_id=run_id,
            tags={VERSION_TAG: version},
            description=f"artifacts/ version {version}",
        )
        log.info(
            "registered a model version",
            extra={"version": version, "model_version": model_version.version},
        )
        return model_version

    # -- aliases ---------------------------------------------------------------------------------

    def _take_promotion(
        self, aliased: str | None, mirrored: str | None, record: str | None
    ) -> list[str]:
        """A `champion` alias moved by a person (not to the version the mirror set): serve it.
        `record` is the server's note of who moved the alias and when (tracking.app)."""
        served = self.registry.current_version()
        if aliased is None or mirrored is None or aliased in (mirrored, served):
            return []
        refusal = self._cannot_serve(aliased)
        if refusal is None:
            number = self._model_versions[aliased].version
            who = moved_by(record, number)
            reason = f"promoted from MLflow: {who} moved alias {CHAMPION} to {aliased}"
            try:
                self.registry.promote(aliased, reason)
            except RegistryError as exc:
                refusal = str(exc)
            else:
                log.info("promoted from MLflow", extra={"version": aliased, "reason": reason})
                return [f"promoted {aliased} from MLflow"]
        model_version = self._model_versions.get(aliased)
        if model_version is not None:
            self.client.set_model_version_tag(
                self.settings.model_name, model_version.version, "ctloop.refused", refusal
            )
        log.warning(
            "refused a promotion from MLflow", extra={"version": aliased, "reason": refusal}
        )
        return [f"refused {aliased}: {refusal}"]  # _align_aliases puts the alias back

    def _cannot_serve(self, version: str) -> str | None:
        """Why the stack cannot serve `version`, or None."""
        if version not in self.registry.version_ids():
            return f"{version} is not a version of the stack's registry (artifacts/)"
        try:
            manifest = self.registry.load(version).manifest
        except RegistryError as exc:
            return f"{version} cannot be loaded: {exc}"
        return embedding_mismatch(manifest, load_embedding(self.core.embedding_dir).info)

    def _align_aliases(self, aliases: dict[str, str], mirrored: str | None) -> list[str]:
        done = []
        model = self.settings.model_name
        served = self.registry.current_version()
        if served is not None and served in self._model_versions:
            if aliases.get(CHAMPION) != served:
                number = self._model_versions[served].version
                self.client.set_registered_model_alias(model, CHAMPION, number)
                done.append(f"alias {CHAMPION} -> {served}")
            if mirrored != served:
                self.client.set_registered_model_tag(model, MIRRORED_CHAMPION, served)
        stage = self.registry.current_stage()
        staged = stage["version"] if stage else None
        current = aliases.get(CHALLENGER)
        if staged is not None and staged in self._model_versions and current != staged:
            number = self._model_versions[staged].version
            self.client.set_registered_model_alias(model, CHALLENGER, number)
            done.append(f"alias {CHALLENGER} -> {staged}")
        elif staged is None and current is not None:
            self.client.delete_registered_model_alias(model, CHALLENGER)
            done.append(f"alias {CHALLENGER} removed")
        return done

    def _stage_tags(self) -> list[str]:
        """Each version's latest move (stage, since, reason) as tags of its model version."""
        done = []
        path = self.registry.pointer.history_path
        try:
            stat = path.stat()
        except FileNotFoundError:
            return []
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if signature == self._history_seen:  # read history.jsonl only when it changed
            return []
        history: dict[str, dict] = {}
        for move in self.registry.pointer.history():
            history[move.get("version", "")] = move
        for version, move in history.items():
            model_version = self._model_versions.get(version)
            if model_version is None:
                continue
            wanted = {
                "ctloop.stage": str(move.get("stage") or CHAMPION),
                "ctloop.stage_since": str(move.get("since")),
                "ctloop.stage_reason": str(move.get("reason")),
            }
            if all(model_version.tags.get(key) == value for key, value in wanted.items()):
                continue
            for key, value in wanted.items():
                self.client.set_model_version_tag(
                    self.settings.model_name, model_version.version, key, value
                )
            model_version.tags.update(wanted)
            done.append(f"{version} {wanted['ctloop.stage']}")
        if all(version in self._model_versions for version in history):
            self._history_seen = signature
        return done

    # -- production figures ----------------------------------------------------------------------

    def _production_figures(self) -> list[str]:
        """The exporter's window figures on the served version's run, once per snapshot."""
        served = self.registry.current_version()
        run_id = self._runs.get(served or "")
        if not self.settings.figures_url or served is None or run_id is None:
            return []
        try:
            text = self._http.get(self.settings.figures_url).text
        except httpx.HTTPError as exc:  # the dashboard away: nothing new to log
            log.info("no production figures", extra={"error": str(exc)})
            return []
        figures = window_figures(text, served)
        rows = figures.pop("rows", None)
        if rows is None or not figures:
            return []
        step = int(rows)
        if served not in self._figures_step:  # after a restart: what the run already holds
            history = self.client.get_metric_history(run_id, "production.window_drift_share")
            self._figures_step[served] = max((m.step for m in history), default=-1)
        if self._figures_step[served] == step:
            return []
        now = int(datetime.now(timezone.utc).timestamp() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in figures.items()]
        self.client.log_batch(run_id, metrics=metrics)
        self._figures_step[served] = step
        return [f"production figures of {served} at {step} rows"]


def moved_by(record: str | None, number: str) -> str:
    """Who moved an alias to MLflow version `number`, and when, from the server's record."""
    try:
        moved = json.loads(record or "")
        if str(moved["version"]) == number:
            return f"{moved['user']} at {moved['at']}"
    except (ValueError, KeyError, TypeError):
        pass
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"an MLflow user (unrecorded; seen at {now})"


def window_figures(text: str, version: str) -> dict[str, float]:
    """From the exporter's page: the rows the snapshot covers, the window's drift share, and the
    version's quality on the window rows it answered."""
    wanted = {
        ("ctloop_reporting_snapshot_rows", ()): "rows",
        ("ctloop_window_drift_share", ()): "production.window_drift_share",
        ("ctloop_window_version_rows", (("version", version),)): "production.window_rows",
    }
    for measure in ("accuracy", "macro_f1"):
        key = ("ctloop_window_version_quality", (("measure", measure), ("version", version)))
        wanted[key] = f"production.window_{measure}"
    figures = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = wanted.get((sample.name, tuple(sorted(sample.labels.items()))))
            if name is not None:
                figures[name] = float(sample.value)
    return figures


# -- what a run holds ----------------------------------------------------------------------------


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _flatten(prefix: str, value: Any, into: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, into)
    else:
        into[prefix] = value


def run_params(manifest: dict) -> dict[str, str]:
    """How the version was made: training (mode and why, base, rows, head, augmentation),
    preprocessing, embedding, gate rules and library versions."""
    flat: dict[str, Any] = {}
    for section in ("training", "preprocessing", "embedding", "libraries"):
        _flatten(section, manifest.get(section) or {}, flat)
    gate = manifest.get("gate") or {}
    for key in ("policy", "tolerance", "class_tolerance", "reference_tolerance", "champion"):
        flat[f"gate.{key}"] = gate.get(key)
    hashes = ("sha256", "data_sha256", "fingerprint")
    return {
        key: json.dumps(value) if isinstance(value, list) else str(value)
        for key, value in flat.items()
        if not key.endswith("seconds") and not key.endswith(hashes)
    }


def run_metrics(manifest: dict) -> dict[str, float]:
    """Every held-out figure (per-class recall included), the gate's scores, the seconds."""
    flat: dict[str, Any] = {}
    _flatten("", manifest.get("metrics") or {}, flat)
    gate = manifest.get("gate") or {}
    for role in ("challenger", "champion"):
        score = gate.get(f"{role}_score") or {}
        for key in ("score", "reference_accuracy", "production_accuracy"):
            flat[f"gate.{role}.{key}"] = score.get(key)
    training = manifest.get("training") or {}
    for key in ("seconds", "fit_seconds", "augment_seconds"):
        flat[f"training.{key}"] = training.get(key)
    return {
        key: float(value)
        for key, value in flat.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def run_tags(manifest: dict) -> dict[str, str]:
    """The decision and its reason, the trigger, the lineage and the sha256s."""
    gate = manifest.get("gate") or {}
    retrain = manifest.get("retrain") or {}
    training = manifest.get("training") or {}
    tags = {
        "ctloop.parent": manifest.get("parent"),
        "ctloop.decision": gate.get("decision"),
        "ctloop.decision_reason": gate.get("reason"),
        "ctloop.trigger_rows": retrain.get("trigger_rows"),
        "ctloop.trigger_reasons": "; ".join(retrain.get("reasons") or []) or None,
        "ctloop.mode_reason": training.get("mode_reason"),
        "ctloop.data_sha256": training.get("data_sha256"),
        "ctloop.embedding_sha256": (manifest.get("embedding") or {}).get("sha256"),
    }
    for name, digest in (manifest.get("files") or {}).items():
        tags[f"ctloop.sha256.{name}"] = digest
    return {key: str(value) for key, value in tags.items() if value is not None}


def save_onnx(pipeline: bytes, folder: Path) -> None:
    """The pipeline in MLflow's onnx flavour, with its signature and an input example."""
    import mlflow.onnx
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    model = onnx.load_from_string(pipeline)
    session = ort.InferenceSession(pipeline, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    example = np.zeros((1, int(source.shape[1])), dtype=np.float32)
    outputs = session.run(None, {source.name: example})
    names = [output.name for output in session.get_outputs()]
    signature = infer_signature(
        {source.name: example},
        {name: np.asarray(value) for name, value in zip(names, outputs, strict=True)},
    )
    mlflow.onnx.save_model(
        model,
        str(folder),
        signature=signature,
        input_example={source.name: example},
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,
    )

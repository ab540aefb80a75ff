"""Play production traffic against a serving URL, window by window, and measure what happens.

A client of the stack and nothing more: it reads a folder of labelled pictures or sounds (by
default the unseen part of the dataset, data/samples/<class>/, never in ref_data.csv) and talks to
the API (through serving_client, its typed client) and to the dashboard over HTTP; it reads no data
file of the stack and imports none of its code.

The samples are split once: an evaluation set that is never sent as feedback, and the traffic.
Each window sends its samples to /predict, then to /feedback with their true class. The first
windows are clean, then every sample goes through a named drift of its medium (traffic.media: a
picture's or a sound's, and the served model must read that medium). After each window
(and the retrain it may start) the served model is scored on the evaluation set, clean and
drifted, through /predict, and the drift share of the latest W rows is read from the reporting
service's exporter (its /metrics), once a snapshot covers the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from serving_client.client import ApiClient
from traffic.drift import working_picture
from traffic.media import AUDIO, IMAGE, NOUNS, drift_for, drifted, medium_of_file


@dataclass
class Scenario:
    url: str = "http://localhost:8080"
    samples_dir: Path = Path("data/samples")
    transform: str | None = None  # a drift of the samples' medium; None: the medium's default
    clean_windows: int = 3
    drift_windows: int = 10
    window: int | None = None  # None: the API's RETRAIN_EVERY, so each window ends on a retrain
    evaluation_size: int = 100
    seed: int = 0
    token: str | None = None
    # The reporting service's exporter, e.g. http://localhost:8083/metrics
    metrics_url: str | None = None
    retrain_timeout: float = 120.0
    dashboard_timeout: float = 120.0  # wait for a dashboard snapshot that covers the window
    transport: httpx.BaseTransport | None = None  # None: the network (a test passes the app's)


@dataclass
class WindowRecord:
    window: int
    phase: str  # "clean" or the drift's name
    rows: int  # production rows after this window
    served_accuracy: float  # of the predictions this window's traffic received
    served_versions: str
    version_after: str
    clean_accuracy: float  # of the model served after the window, on the clean evaluation set
    drifted_accuracy: float  # same model, on the drifted evaluation set
    retrains: int
    promoted: int
    rejected: int
    drift_share: float | None  # of the latest W rows, from a snapshot taken after this window
    decisions: list[str] = field(default_factory=list)


class TrafficError(RuntimeError):
    """The samples or the stack are not what the scenario needs (a failed call to the API is a
    serving_client.client.ApiError)."""


@dataclass(frozen=True)
class Samples:
    """A folder's labelled samples, in arrays of objects that masks and indices select from."""

    medium: str  # traffic.media.IMAGE or AUDIO
    items: np.ndarray  # pictures as traffic.drift takes them, or the bytes of sound files
    labels: np.ndarray


def connect(url: str, token: str | None, transport: httpx.BaseTransport | None = None) -> ApiClient:
    """The simulator's client of the API: a minute per call, a 429 waited out for two."""
    return ApiClient(
        url, token, timeout=60, user_agent="ctloop-traffic", patience=120, transport=transport
    )


def check_medium(api: ApiClient, samples: Samples) -> None:
    """A TrafficError unless the served model reads the samples' medium (an API that does not
    say what it reads reads pictures)."""
    preprocessing = api.model().preprocessing
    served = preprocessing.medium if preprocessing is not None else IMAGE
    if served != samples.medium:
        raise TrafficError(
            f"the samples are {NOUNS[samples.medium]}, and the served model reads "
            f"{NOUNS.get(served, repr(served))}"
        )


def run(
    scenario: Scenario, on_window: Callable[[WindowRecord], None] | None = None
) -> list[WindowRecord]:
    """Play the whole scenario; `on_window(record)` is called as each window ends."""
    samples = load_samples(scenario.samples_dir)
    try:
        drift = drift_for(samples.medium, scenario.transform)
    except ValueError as exc:
        raise TrafficError(str(exc)) from exc
    labels = samples.labels
    rng = np.random.default_rng(scenario.seed)
    order = rng.permutation(len(labels))
    evaluation, traffic = order[: scenario.evaluation_size], order[scenario.evaluation_size :]
    with connect(scenario.url, scenario.token, scenario.transport) as api:
        check_medium(api, samples)
        every = api.model().retrain_every
        window = scenario.window or every
        needed = window * (scenario.clean_windows + scenario.drift_windows)
        if needed > len(traffic):
            raise TrafficError(
                f"{needed} traffic samples needed, {len(traffic)} unseen samples available "
                f"(after {scenario.evaluation_size} kept for evaluation)"
            )
        eval_truth = labels[evaluation]
        eval_clean = [drifted(samples.medium, "clean", samples.items[i], rng) for i in evaluation]
        eval_drifted = [drifted(samples.medium, drift, samples.items[i], rng) for i in evaluation]
        records: list[WindowRecord] = []
        for number in range(scenario.clean_windows + scenario.drift_windows):
            phase = "clean" if number < scenario.clean_windows else drift
            batch = traffic[number * window : (number + 1) * window]
            played = _play_window(api, batch, samples, phase, rng)
            served, versions, rows, triggered = played
            decisions = (
                _wait_for_retrain(api, rows - rows % every, scenario.retrain_timeout)
                if triggered
                else []
            )
            version = _served_version(api)
            ledger = api.versions()
            record = WindowRecord(
                window=number + 1,
                phase=phase,
                rows=rows,
                served_accuracy=served,
                served_versions=" ".join(sorted(set(versions))),
                version_after=version,
                clean_accuracy=_accuracy(api, eval_clean, eval_truth),
                drifted_accuracy=_accuracy(api, eval_drifted, eval_truth),
                retrains=sum(1 for v in ledger if v.trigger_rows),
                promoted=sum(1 for v in ledger if (v.gate or {}).get("decision") == "promoted"),
                rejected=sum(1 for v in ledger if (v.gate or {}).get("decision") == "rejected"),
                drift_share=_dashboard_drift_share(scenario, rows),
                decisions=decisions,
            )
            records.append(record)
            if on_window is not None:
                on_window(record)
    return records


def _play_window(
    api: ApiClient, batch: np.ndarray, samples: Samples, phase: str, rng: np.random.Generator
) -> tuple[float, list[str], int, bool]:
    """Predict, then give feedback for, every sample of the window, as a client would."""
    correct, versions, rows, triggered = 0, [], 0, False
    for index in batch:
        sent = drifted(samples.medium, phase, samples.items[index], rng)
        answer = api.predict_base64(sent)
        truth = str(samples.labels[index])
        correct += answer.label == truth
        versions.append(answer.model_version)
        receipt = api.feedback_base64(sent, truth, answer.label)
        rows, triggered = receipt.rows, triggered or receipt.retrain_triggered
    return correct / len(batch), versions, rows, triggered


def _wait_for_retrain(api: ApiClient, trigger_rows: int, timeout: float) -> list[str]:
    """Wait until the retrain at `trigger_rows` rows is decided, and its model served if
    promoted."""
    last, _ = api.wait_for_retrain(trigger_rows, timeout, interval=0.25)
    if last is None:
        raise TrafficError(f"no retrain decision for {trigger_rows} rows within {timeout:g} s")
    return [f"{last.version} {last.decision}"]


def _served_version(api: ApiClient, settle: float = 5.0) -> str:
    """The version every request gets: the registry's current one once workers have swapped."""
    current = next(v.version for v in api.versions() if v.current)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and api.model().version != current:
        time.sleep(0.1)
    return current


def _accuracy(api: ApiClient, inputs: list[bytes], truth: np.ndarray, batch: int = 50) -> float:
    predicted = []
    for start in range(0, len(inputs), batch):
        answer = api.predict_batch(inputs[start : start + batch])
        predicted += [p.label for p in answer.predictions]
    return float(np.mean(np.array(predicted) == truth))


def load_samples(folder: Path) -> Samples:
    """Every picture or sound under folder/<class>/ (one medium: a TrafficError if both), as
    the drifts take them: a picture decoded (traffic.drift.working_picture: an 8 x 8 digit
    rendered, any other picture as it is), a sound as its file's bytes."""
    files: dict[str, list[tuple[Path, str]]] = {IMAGE: [], AUDIO: []}
    classes = sorted(path for path in folder.iterdir() if path.is_dir()) if folder.is_dir() else []
    for class_dir in classes:
        for path in sorted(class_dir.iterdir()):
            medium = medium_of_file(path.name)
            if medium is not None and not path.name.startswith(".") and path.is_file():
                files[medium].append((path, class_dir.name))
    held = [medium for medium, found in files.items() if found]
    if not held:
        raise TrafficError(f"no pictures or sounds under {folder}/<class>/")
    if len(held) > 1:
        raise TrafficError(
            f"{folder} holds {len(files[IMAGE])} pictures and {len(files[AUDIO])} sounds: a "
            "dataset is of one medium"
        )
    medium = held[0]
    items = np.empty(len(files[medium]), dtype=object)
    for number, (path, _) in enumerate(files[medium]):
        if medium == AUDIO:
            items[number] = path.read_bytes()
        else:
            with Image.open(path) as image:
                items[number] = working_picture(image)
    return Samples(medium, items, np.array([label for _, label in files[medium]]))


def load_images(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pictures, labels) of `load_samples`, for a folder of pictures (a TrafficError if not)."""
    samples = load_samples(folder)
    if samples.medium != IMAGE:
        raise TrafficError(f"{folder} holds {NOUNS[samples.medium]}, not pictures")
    return samples.items, samples.labels


def _dashboard_drift_share(scenario: Scenario, rows: int) -> float | None:
    """The reporting service's drift share of the latest W rows (ctloop_window_drift_share), from
    the first snapshot that covers `rows` feedback rows (ctloop_reporting_snapshot_rows)."""
    if not scenario.metrics_url:
        return None
    deadline = time.monotonic() + scenario.dashboard_timeout
    with httpx.Client(timeout=10) as http:  # one client for every poll (each costs a TLS set-up)
        while True:
            try:
                values = _metric_values(http.get(scenario.metrics_url).text)
            except httpx.HTTPError as exc:
                raise TrafficError(f"the exporter at {scenario.metrics_url}: {exc}") from exc
            covered = values.get("ctloop_reporting_snapshot_rows", -1)
            share = values.get("ctloop_window_drift_share")
            if covered >= rows and share is not None:
                return round(share, 4)
            if time.monotonic() > deadline:
                raise TrafficError(
                    f"no snapshot covered {rows} feedback rows "
                    f"within {scenario.dashboard_timeout:g} s"
                )
            time.sleep(0.5)


def _metric_values(text: str) -> dict[str, float]:
    """{name: value} of the unlabelled samples of a Prometheus text page."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def as_rows(records: list[WindowRecord]) -> list[dict]:
    return [{**asdict(r), "decisions": "; ".join(r.decisions)} for r in records]

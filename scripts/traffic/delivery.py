"""Traffic that carries a challenger on stage (shadow or canary) to its decision.

    .venv/bin/python -m traffic --strategy canary --url http://localhost:8080

A client of the stack and nothing more, like the drift scenario: a crowd of clients (each with
its own X-Client-ID, as the page sends one per browser session) ask /predict about labelled
samples (pictures or sounds) and send the true class to /feedback, round after round. After each
round it reads /model's `delivery` (the stage, the split, the live comparison) and stops when the
stage has ended, promoted or rolled back, saying which and why (/model/versions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from serving_client.client import ApiClient
from serving_client.records import LiveReview
from traffic.media import drifted
from traffic.scenario import Samples, TrafficError, check_medium, connect, load_samples


@dataclass
class StageScenario:
    url: str = "http://localhost:8080"
    samples_dir: Path = Path("data/samples")
    strategy: str = "canary"  # the stage expected on the server: "canary" or "shadow"
    clients: int = 200
    round_size: int = 50
    max_rounds: int = 40
    seed: int = 0
    token: str | None = None
    settle_seconds: float = 10.0  # for the workers to follow the decision


@dataclass
class RoundRecord:
    round: int
    requests: dict[str, int]  # by the version that answered
    accuracy: dict[str, float]  # of the answers each version gave this round
    live: LiveReview | None  # /model's live comparison after the round
    agreement: float | None = None  # shadow: share of shadowed inputs it answered alike


@dataclass
class StageOutcome:
    challenger: str
    champion: str
    decision: str  # "promoted" or "rolled_back"
    reason: str | None  # the stage move's, as /model/versions records it
    served_after: str
    rounds: list[RoundRecord] = field(default_factory=list)


def play_stage(
    scenario: StageScenario, on_round: Callable[[RoundRecord], None] | None = None
) -> StageOutcome:
    """Play rounds until the stage on the server ends; the outcome."""
    samples = load_samples(scenario.samples_dir)
    rng = np.random.default_rng(scenario.seed)
    with connect(scenario.url, scenario.token) as api:
        check_medium(api, samples)
        model = api.model()
        stage = model.delivery.get("stage")
        if stage is None or stage["stage"] != scenario.strategy:
            raise TrafficError(
                f"no {scenario.strategy} stage on {scenario.url}: /model says {stage}"
            )
        challenger, champion = stage["version"], model.version
        rounds: list[RoundRecord] = []
        for number in range(1, scenario.max_rounds + 1):
            record = _play_round(api, scenario, number, samples, rng)
            rounds.append(record)
            if on_round is not None:
                on_round(record)
            if api.model().delivery.get("stage") is None:
                return _outcome(api, scenario, challenger, champion, rounds)
    raise TrafficError(f"the {scenario.strategy} of {challenger} was still on stage after "
                       f"{scenario.max_rounds} rounds")  # fmt: skip


def _play_round(
    api: ApiClient,
    scenario: StageScenario,
    number: int,
    samples: Samples,
    rng: np.random.Generator,
) -> RoundRecord:
    requests: dict[str, int] = {}
    right: dict[str, int] = {}
    before = _shadow_counts(api) if scenario.strategy == "shadow" else None
    for index in rng.integers(len(samples.labels), size=scenario.round_size):
        client = f"client-{rng.integers(scenario.clients)}"
        sent = drifted(samples.medium, "clean", samples.items[index], rng)
        truth = str(samples.labels[index])
        answer = api.predict_base64(sent, client_id=client)
        version = answer.model_version
        requests[version] = requests.get(version, 0) + 1
        right[version] = right.get(version, 0) + int(answer.label == truth)
        api.feedback_base64(sent, truth, answer.label, client_id=client)
    agreement = None
    if before is not None:
        after = _shadow_counts(api)
        agree, total = after[0] - before[0], sum(after) - sum(before)
        agreement = round(agree / total, 4) if total else None
    return RoundRecord(
        round=number,
        requests=requests,
        accuracy={v: round(right[v] / n, 4) for v, n in requests.items()},
        live=api.model().delivery.get("live"),
        agreement=agreement,
    )


def _outcome(
    api: ApiClient,
    scenario: StageScenario,
    challenger: str,
    champion: str,
    rounds: list[RoundRecord],
) -> StageOutcome:
    versions = {v.version: v for v in api.versions()}
    last = versions[challenger].stages[-1]
    if last["stage"] not in ("champion", "rolled_back"):
        raise TrafficError(f"{challenger} left its stage as {last['stage']}")
    expected = challenger if last["stage"] == "champion" else champion
    deadline = time.monotonic() + scenario.settle_seconds
    served = api.model().version
    while served != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        served = api.model().version
    decision = "promoted" if last["stage"] == "champion" else "rolled_back"
    return StageOutcome(challenger, champion, decision, last["reason"], served, rounds)


def _shadow_counts(api: ApiClient) -> tuple[float, float]:
    """(agreed, disagreed) inputs of every shadow so far, from /metrics."""
    counts = {"agree": 0.0, "disagree": 0.0}
    for family in text_string_to_metric_families(api.metrics()):
        if family.name == "ctloop_shadow_predictions":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["agreement"]] += sample.value
    return counts["agree"], counts["disagree"]


def describe_round(record: RoundRecord) -> str:
    served = " ".join(
        f"{v}:{n} ({record.accuracy[v]:.2f})" for v, n in sorted(record.requests.items())
    )
    live = record.live
    text = f"{record.round:3}  answered {served:32}  live: "
    if live is None:
        text += "challenger 0 rows -, champion 0 rows -"
    else:
        text += (
            f"challenger {live['challenger_rows']} rows {_number(live['challenger_accuracy'])}, "
            f"champion {live['champion_rows']} rows {_number(live['champion_accuracy'])}"
        )
    if record.agreement is not None:
        text += f", shadow agreement {record.agreement:.2f}"
    return text


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

"""The stack's Prometheus alert rules, written once here and rendered to YAML.

    python -m monitoring.alerts                       # monitoring/prometheus/rules/ctloop.rules.yml
    python -m monitoring.alerts --for-all 10s -o DIR/ctloop.rules.yml   # short durations (e2e)
    python -m monitoring.alerts --for CtloopDriftDetected=2m            # one rule's duration

Each rule has a severity, a summary, a description and a runbook (docs/operating.md, "Alerts:
what each one means and what to do", one heading per alert). Thresholds and `for:` durations are
settings of this generator, so a test can make every alert fire in seconds; the committed file
holds the defaults and a test checks it is what this module renders.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES_FILE = HERE / "prometheus" / "rules" / "ctloop.rules.yml"
RUNBOOK = "docs/operating.md#{anchor}"  # the heading of the alert there, lower-cased


@dataclass(frozen=True)
class Thresholds:
    """Every number an alert compares with; the runbooks in docs/operating.md quote the defaults."""

    drift_share: float = 0.5  # share of drifted embedding columns in the latest W rows
    quality_margin: float = 0.05  # windowed accuracy this far below the held-out accuracy
    quality_min_rows: int = 30  # rows the served version needs in the window to be judged
    failures: int = 1  # retrains failed in a row
    rejections: int = 3  # retrains rejected by the gate in a row
    backlog: int = 1  # undecided retrain triggers tolerated (one may be training)
    error_ratio: float = 0.01  # share of 5xx answers
    p99_seconds: float = 0.25  # p99 latency of /predict and /feedback
    stale_seconds: int = 600  # the dashboard not up to date for this long


@dataclass(frozen=True)
class Rule:
    name: str
    group: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def render(self) -> dict:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": RUNBOOK.format(anchor=self.name.lower()),
            },
        }


def rules(t: Thresholds = Thresholds()) -> list[Rule]:
    """Every alert of the stack, with its default duration."""
    latency = "ctloop_http_request_duration_seconds"
    return [
        Rule(
            "CtloopDriftDetected",
            "ctloop-model",
            f"ctloop_window_drift_share > {t.drift_share}",
            "5m",
            "warning",
            "Production embeddings drifted away from the reference",
            "{{ $value | humanizePercentage }} of the embedding columns of the latest feedback "
            f"rows differ from the reference (threshold {t.drift_share:.0%}).",
        ),
        Rule(
            "CtloopQualityBelowHoldout",
            "ctloop-model",
            "(\n"
            '  max by (version) (ctloop_window_version_quality{measure="accuracy"})\n'
            f"  < on (version) (max by (version) (ctloop_model_holdout_accuracy) - {t.quality_margin})\n"  # noqa: E501
            ")\n"
            f"and on (version) (max by (version) (ctloop_window_version_rows) >= {t.quality_min_rows})\n"  # noqa: E501
            "and on (version) (max by (version) (ctloop_model_info) == 1)",
            "10m",
            "warning",
            "The served model is less accurate on recent feedback than on its held-out rows",
            "Model {{ $labels.version }} is right on {{ $value | humanizePercentage }} of its "
            f"latest feedback rows, more than {t.quality_margin:.0%} below its held-out accuracy.",
        ),
        Rule(
            "CtloopRetrainFailing",
            "ctloop-model",
            f"max(ctloop_retrain_consecutive_failures) >= {t.failures}",
            "1m",
            "critical",
            "Retraining fails",
            "The last {{ $value }} retrain(s) failed: no new model can be trained on feedback.",
        ),
        Rule(
            "CtloopRetrainsRejected",
            "ctloop-model",
            f"max(ctloop_retrain_consecutive_rejections) >= {t.rejections}",
            "1m",
            "warning",
            "The gate rejected several retrained models in a row",
            "The last {{ $value }} challengers scored below the served model on the gate set.",
        ),
        Rule(
            "CtloopRetrainBacklog",
            "ctloop-model",
            f"max(ctloop_retrain_backlog) > {t.backlog}",
            "15m",
            "warning",
            "Retrains are not keeping up with feedback",
            "{{ $value }} retrain triggers are reached and undecided.",
        ),
        Rule(
            "CtloopWorkersServeDifferentVersions",
            "ctloop-serving",
            "count(count by (version) (ctloop_model_info == 1)) > 1",
            "1m",
            "warning",
            "API workers serve different model versions",
            "{{ $value }} model versions are served at once; every worker should have swapped "
            "to the promoted one within seconds.",
        ),
        Rule(
            "CtloopFeedbackNotSaved",
            "ctloop-serving",
            "min(ctloop_feedback_writable) == 0",
            "1m",
            "critical",
            "Feedback cannot be saved",
            "An API worker refuses feedback (507: no room for prod_data.csv; 503: the file "
            "cannot be written): no row is lost, but no row is kept. GET /ready says why.",
        ),
        Rule(
            "CtloopHighErrorRatio",
            "ctloop-serving",
            f'sum(rate({latency}_count{{status=~"5.."}}[5m]))\n'
            f"/ sum(rate({latency}_count[5m])) > {t.error_ratio}",
            "5m",
            "critical",
            "The API answers with server errors",
            "{{ $value | humanizePercentage }} of the requests of the last 5 minutes got a 5xx "
            f"(threshold {t.error_ratio:.0%}).",
        ),
        Rule(
            "CtloopHighLatencyP99",
            "ctloop-serving",
            "histogram_quantile(0.99, sum by (le, route) (\n"
            f'  rate({latency}_bucket{{route=~"/predict|/feedback"}}[5m])\n'
            f")) > {t.p99_seconds}",
            "10m",
            "warning",
            "The API is slow",
            "p99 latency of {{ $labels.route }} is {{ $value | humanizeDuration }} "
            f"(threshold {t.p99_seconds * 1000:.0f} ms).",
        ),
        Rule(
            "CtloopTargetDown",
            "ctloop-stack",
            "up == 0",
            "1m",
            "critical",
            "Prometheus cannot scrape {{ $labels.job }}",
            "{{ $labels.instance }} ({{ $labels.job }}) does not answer /metrics.",
        ),
        Rule(
            "CtloopDashboardStale",
            "ctloop-stack",
            f"time() - ctloop_reporting_last_success_timestamp_seconds > {t.stale_seconds}",
            "5m",
            "warning",
            "The monitoring dashboard stopped following production",
            "The reporting service's last successful check was {{ $value | humanizeDuration }} "
            "ago: drift and quality figures are out of date.",
        ),
    ]


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as YAML block literals, so the file reads like the code above."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render(selected: list[Rule]) -> str:
    """The rules file: one group per part of the stack, in the order above."""
    groups: dict[str, list[dict]] = {}
    for rule in selected:
        groups.setdefault(rule.group, []).append(rule.render())
    document = {"groups": [{"name": name, "rules": items} for name, items in groups.items()]}
    header = "# Generated by `python -m monitoring.alerts` from monitoring/alerts.py: edit that.\n"
    return header + yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True
    )


def with_durations(selected: list[Rule], every: str | None, each: dict[str, str]) -> list[Rule]:
    """The rules with `for:` replaced: all of them (`every`), then by alert name (`each`)."""
    unknown = set(each) - {rule.name for rule in selected}
    if unknown:
        raise ValueError(f"no such alert: {', '.join(sorted(unknown))}")
    return [
        replace(rule, duration=each.get(rule.name, every or rule.duration)) for rule in selected
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.alerts", description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=RULES_FILE)
    parser.add_argument("--for-all", help="one `for:` duration for every rule, e.g. 10s")
    parser.add_argument("--for", dest="each", action="append", default=[], metavar="ALERT=DURATION")
    args = parser.parse_args(argv)
    each = dict(item.split("=", 1) for item in args.each)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(with_durations(rules(), args.for_all, each)))
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

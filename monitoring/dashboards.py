"""The Grafana dashboards, as code (Grafana's own `grafana-foundation-sdk`), rendered to JSON.

    python -m monitoring.dashboards      # monitoring/grafana/dashboards/{serving,model}.json

Grafana loads the committed JSON files at start (monitoring/grafana/provisioning): nothing is
clicked by hand and no grafana.db is kept in git. Every panel queries the provisioned Prometheus
datasource (uid DATASOURCE_UID); a test checks the committed files are what this module renders,
and the end-to-end test runs every panel's query against the stack's real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphDrawStyle, StackingMode
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.dashboard import DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from monitoring.alerts import Thresholds

HERE = Path(__file__).resolve().parent
DASHBOARDS_DIR = HERE / "grafana" / "dashboards"
DATASOURCE_UID = "ctloop-prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
LATENCY = "ctloop_http_request_duration_seconds"
RATE = "$__rate_interval"


def query(
    expr: str, legend: str = "", ref: str = "A", instant: bool = False
) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    return target.instant() if instant else target.range()


def as_table(target: prometheus.Dataquery) -> prometheus.Dataquery:
    return target.format(PromQueryFormat.TABLE)


def graph(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
    )
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel


def retrain_annotation() -> db.AnnotationQuery:
    return (
        db.AnnotationQuery()
        .name("Retrain decisions")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("purple")
        .expr("sum by (decision) (increase(ctloop_retrains_total[$__interval])) > 0")
    )


def serving_dashboard() -> DashboardModel:
    """Requests, latency, errors, predictions by class, the version each worker serves."""
    quantiles = [
        query(
            f"histogram_quantile({q}, sum by (le, route) "
            f'(rate({LATENCY}_bucket{{route=~"/predict|/feedback"}}[{RATE}])))',
            f"p{round(q * 100)} {{{{route}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]
    return (
        dashboard("ctloop-serving", "ctloop: serving", "The API: traffic, latency, errors, models")
        .with_panel(
            graph(
                "Requests per second, by route and status",
                "From the latency histogram's _count series (every worker).",
                "reqps",
                query(
                    f"sum by (route, status) (rate({LATENCY}_count[{RATE}]))",
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Latency p50 / p95 / p99",
                "Time from a request's first byte to its response's last byte.",
                "s",
                *quantiles,
            )
        )
        .with_panel(
            graph(
                "Error ratio",
                "Share of answers with a 5xx (server errors) and a 4xx (refused input).",
                "percentunit",
                query(
                    f'(sum(rate({LATENCY}_count{{status=~"5.."}}[{RATE}])) or vector(0))'
                    f" / sum(rate({LATENCY}_count[{RATE}]))",
                    "5xx",
                ),
                query(
                    f'(sum(rate({LATENCY}_count{{status=~"4.."}}[{RATE}])) or vector(0))'
                    f" / sum(rate({LATENCY}_count[{RATE}]))",
                    "4xx",
                ),
            ).min(0)
        )
        .with_panel(
            graph(
                "Predictions per second, by class",
                "Every label the API answered (single images and batches).",
                "short",
                query(f"sum by (label) (rate(ctloop_predictions_total[{RATE}]))", "{{label}}"),
            ).stacking(common.StackingConfig().mode(StackingMode.NORMAL))
        )
        .with_panel(
            table.Panel()
            .title("Model version per worker")
            .description("1 for the version each uvicorn worker (pid) serves right now.")
            .datasource(DATASOURCE)
            .with_target(
                query("ctloop_model_info == 1", instant=True).format(PromQueryFormat.TABLE)
            )
            .span(12)
            .height(8)
        )
        .with_panel(
            graph(
                "Model versions served, and model loads",
                "More than one version for over a minute raises "
                "CtloopWorkersServeDifferentVersions.",
                "short",
                query("count(count by (version) (ctloop_model_info == 1))", "versions served"),
                query(
                    f"sum by (outcome) (increase(ctloop_model_loads_total[{RATE}]))",
                    "loads {{outcome}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Room left for data/ and artifacts/",
                "Bytes the stack can still write in each folder (statvfs, at each scrape).",
                "bytes",
                query("min by (folder) (ctloop_disk_free_bytes)", "{{folder}}"),
            )
        )
        .with_panel(
            graph(
                "Feedback saved, and lines skipped",
                "1 while every worker can save feedback (0 for a minute raises "
                "CtloopFeedbackNotSaved; /ready says why); lines of prod_data.csv that are not "
                "rows (skipped by every reader, recorded in prod_data.skipped.jsonl).",
                "short",
                query("min(ctloop_feedback_writable)", "feedback writable"),
                query("max(ctloop_prod_data_skipped_lines)", "skipped lines"),
            ).min(0)
        )
        .build()
    )


def model_dashboard(t: Thresholds | None = None) -> DashboardModel:
    """Drift, windowed quality overall and per version, feedback, retrains, alerts."""
    t = t or Thresholds()
    return (
        dashboard("ctloop-model", "ctloop: model", "Drift, quality on recent feedback, retraining")
        .with_panel(
            graph(
                "Drift share of the embedding columns",
                f"Latest W feedback rows (the alert fires above {t.drift_share:.0%}) and the "
                "newest rows a dashboard snapshot covers (REPORTING_SNAPSHOT_ROWS), against the "
                "reference (KS test per column).",
                "percentunit",
                query("ctloop_window_drift_share", "latest W rows"),
                query("ctloop_drift_share", "latest snapshot rows"),
            )
            .min(0)
            .max(1)
        )
        .with_panel(
            graph(
                "Quality on the latest W feedback rows",
                "Served predictions against the true class sent as feedback (macro averages).",
                "percentunit",
                query("ctloop_window_quality", "{{measure}}"),
            ).max(1)
        )
        .with_panel(
            graph(
                "Accuracy per model version (latest W rows) and its held-out accuracy",
                "Each version on the rows it answered; the alert compares the served one with "
                f"its held-out figure minus {t.quality_margin}.",
                "percentunit",
                query('ctloop_window_version_quality{measure="accuracy"}', "{{version}}"),
                query("ctloop_model_holdout_accuracy", "held-out {{version}}"),
            ).max(1)
        )
        .with_panel(
            graph(
                "F1 (macro) per model version (latest W rows)",
                "Each version on the rows it answered.",
                "percentunit",
                query('ctloop_window_version_quality{measure="macro_f1"}', "{{version}}"),
            ).max(1)
        )
        .with_panel(
            graph(
                "Rows of the window each version answered",
                "How much each per-version figure rests on.",
                "short",
                query("ctloop_window_version_rows", "{{version}}"),
                query("ctloop_window_rows", "every version"),
            )
        )
        .with_panel(
            graph(
                "Feedback rows per minute",
                "Rows appended to prod_data.csv.",
                "short",
                query(f"sum(rate(ctloop_feedback_rows_total[{RATE}])) * 60", "rows / min"),
            )
        )
        .with_panel(
            graph(
                "Retrain outcomes",
                "Decisions so far (a new one every k feedback rows).",
                "short",
                query("sum by (decision) (ctloop_retrains_total)", "{{decision}}"),
            ).draw_style(GraphDrawStyle.BARS)
        )
        .with_panel(
            graph(
                "Retrain backlog and streaks",
                "Triggers reached and undecided; rejections and failures in a row.",
                "short",
                query("max(ctloop_retrain_backlog)", "backlog"),
                query("max(ctloop_retrain_consecutive_rejections)", "rejected in a row"),
                query("max(ctloop_retrain_consecutive_failures)", "failed in a row"),
            )
        )
        .with_panel(
            table.Panel()
            .title("Firing alerts")
            .description("Alerts firing now (runbooks: docs/operating.md, Alerts).")
            .datasource(DATASOURCE)
            .with_target(as_table(query('ALERTS{alertstate="firing"}', instant=True)))
            .no_value("No alert firing")
            .span(12)
            .height(8)
        )
        .with_panel(
            stat.Panel()
            .title("Dashboard snapshot age")
            .description("Seconds since the reporting service's latest Evidently snapshot.")
            .datasource(DATASOURCE)
            .with_target(query("ctloop_reporting_snapshot_age_seconds", "age"))
            .unit("s")
            .span(12)
            .height(8)
        )
        .build()
    )


def dashboard(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["ctloop"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
        .annotation(retrain_annotation())
    )


def render(model: DashboardModel) -> str:
    """Grafana's JSON for a dashboard, plus the annotation fields the SDK does not model."""
    document = json.loads(json.dumps(model, cls=JSONEncoder))
    for annotation in document.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            annotation.update({"titleFormat": "retrain {{decision}}", "tagKeys": "decision"})
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


DASHBOARDS = {"serving.json": serving_dashboard, "model.json": model_dashboard}


def committed_dashboards() -> dict[str, dict]:
    """The JSON documents Grafana is provisioned with, by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panel_queries(document: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and annotation of a dashboard document."""
    found = [
        (f"{document['uid']} / {panel['title']} / {target['refId']}", target["expr"])
        for panel in document["panels"]
        for target in panel.get("targets", [])
    ]
    found += [
        (f"{document['uid']} / annotation {annotation['name']}", annotation["expr"])
        for annotation in document.get("annotations", {}).get("list", [])
        if annotation.get("expr")
    ]
    return found


def as_promql(expr: str, interval: str = "1m") -> str:
    """A panel's query as Grafana sends it: its interval variables replaced by a duration."""
    return expr.replace("$__rate_interval", interval).replace("$__interval", interval)


def main() -> int:
    DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (DASHBOARDS_DIR / name).write_text(render(build()))
        print(f"written: {DASHBOARDS_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

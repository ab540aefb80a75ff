"""Grafana's provisioning, checked without running Grafana (no registry here has it): the
dashboards are what the SDK code renders and survive its round trip, every panel uses the
provisioned datasource, and every query is valid PromQL for a real Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard

from harness import loopback
from harness.monitoring import MONITORING, REPO, load_yaml, local_prometheus
from monitoring.dashboards import (
    DASHBOARDS,
    DATASOURCE_UID,
    as_promql,
    panel_queries,
    render,
)
from monitoring.dashboards import committed_dashboards as dashboards

PROVISIONING = MONITORING / "grafana" / "provisioning"


def test_the_committed_dashboards_are_what_the_code_renders() -> None:
    assert sorted(DASHBOARDS) == sorted(dashboards())
    for name, build in DASHBOARDS.items():
        committed = (MONITORING / "grafana" / "dashboards" / name).read_text()
        assert committed == render(build()), f"run `python -m monitoring.dashboards` ({name})"


def test_dashboards_survive_the_sdk_round_trip() -> None:
    """Grafana's schema as the SDK models it: loading and re-encoding loses nothing it knows."""
    for name, document in dashboards().items():
        model = Dashboard.from_json(document)
        again = json.loads(json.dumps(model.to_json(), default=lambda o: o.to_json()))
        assert again["uid"] == document["uid"] and again["title"] == document["title"], name
        assert [p["title"] for p in again["panels"]] == [p["title"] for p in document["panels"]]
        for before, after in zip(document["panels"], again["panels"], strict=True):
            assert [t["expr"] for t in after["targets"]] == [t["expr"] for t in before["targets"]]


def test_the_datasource_is_provisioned_with_the_uid_every_panel_uses() -> None:
    (datasource,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["uid"] == DATASOURCE_UID and datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    for name, document in dashboards().items():
        refs = [panel["datasource"] for panel in document["panels"]]
        refs += [target["datasource"] for p in document["panels"] for target in p["targets"]]
        refs += [a["datasource"] for a in document["annotations"]["list"]]
        assert refs and all(ref == {"type": "prometheus", "uid": DATASOURCE_UID} for ref in refs)
        assert len({p["gridPos"]["x"] + 100 * p["gridPos"]["y"] for p in document["panels"]}) == (
            len(document["panels"])
        ), f"{name}: two panels at one place"


def test_the_dashboards_show_what_the_issue_asks_for() -> None:
    found = dashboards()
    serving = " ".join(p["title"] for p in found["serving.json"]["panels"])
    model = " ".join(p["title"] for p in found["model.json"]["panels"])
    for words in (
        "Requests per second",
        "p50 / p95 / p99",
        "Error ratio",
        "by class",
        "per worker",
    ):
        assert words in serving, words
    for words in ("Drift share", "latest W", "per model version", "Feedback", "Retrain outcomes"):
        assert words in model, words
    assert "backlog" in model and "Firing alerts" in model
    for document in found.values():  # retrain decisions as annotations on both
        (annotation,) = document["annotations"]["list"]
        assert "ctloop_retrains_total" in annotation["expr"]


def test_the_provider_loads_the_folder_compose_mounts() -> None:
    (provider,) = load_yaml(PROVISIONING / "dashboards" / "ctloop.yml")["providers"]
    grafana = load_yaml(REPO / "docker-compose.yml")["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    assert mounts[provider["options"]["path"]] == "./monitoring/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    environment = grafana["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment  # never admin/admin


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_query_is_valid_promql(name: str, tmp_path: Path) -> None:
    """Each query sent to a real Prometheus (empty database): accepted, not a parse error."""
    document = dashboards()[name]
    with local_prometheus(tmp_path) as url:
        for where, expr in panel_queries(document):
            reply = loopback.post(
                f"{url}/api/v1/query", data={"query": as_promql(expr)}, timeout=10
            )
            assert reply.status_code == 200 and reply.json()["status"] == "success", (
                where,
                reply.text,
            )

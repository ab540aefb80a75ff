"""Monitoring end to end: the stack's real Prometheus and Alertmanager (and Grafana where its image
can be pulled), fed by the API and the reporting service, while `python -m traffic` plays a drift.

The stack runs from a copy of the repository whose alert rules are regenerated with 10 s `for:`
durations (`python -m monitoring.alerts --for-all 10s`), so that the drift alert fires within the
test. Everything is read through the published ports, as a person or a client would.
"""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest

from harness import loopback
from harness.browser import CHROMIUM_ARGS, find_chromium
from harness.compose import REPO, Stack, compose_command, copy_repository, write_figures
from harness.processes import free_port, wait_for
from monitoring.alerts import main as generate_rules
from monitoring.alerts import rules as alert_rules
from monitoring.dashboards import as_promql, committed_dashboards, panel_queries

pytestmark = pytest.mark.docker

K = 20  # RETRAIN_EVERY
WINDOW = 40  # MONITORING_WINDOW_ROWS: the drift share of the latest 40 rows
ROWS = 5 * K  # the drift run: 2 clean windows of k feedback rows, then 3 with a thicker pen
FIGURES: dict = {}
SHOTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> Stack:
    compose = compose_command()
    if compose is None:
        pytest.skip("no Docker engine answers `docker info` (or no Compose): this test needs both")
    root = copy_repository(tmp_path_factory.mktemp("monitoring"))
    rules = root / "monitoring" / "prometheus" / "rules" / "ctloop.rules.yml"
    assert generate_rules(["--for-all", "10s", "-o", str(rules)]) == 0
    running = Stack(
        root,
        compose,
        free_port,
        RETRAIN_EVERY=str(K),
        REPORTING_REFRESH_SECONDS="3",
        MONITORING_MIN_ROWS="10",
        MONITORING_WINDOW_ROWS=str(WINDOW),
    )
    FIGURES["grafana"] = (
        "started" if running.with_grafana else "not started: its image cannot be pulled here"
    )
    print(f"\nGrafana: {FIGURES['grafana']}")
    try:
        FIGURES["start_seconds"] = round(running.up(build=True), 1)
        yield running
    finally:
        running.down(volumes=True)
        print(f"\nmonitoring figures ({write_figures(FIGURES, 'e2e-monitoring.json')}): {FIGURES}")


def prometheus(monitored: Stack, path: str, **params) -> dict:
    reply = loopback.get(monitored.url("prometheus") + path, params=params, timeout=10)
    reply.raise_for_status()
    return reply.json()["data"]


def test_every_target_is_up(monitored: Stack) -> None:
    def all_up():
        targets = prometheus(monitored, "/api/v1/targets")["activeTargets"]
        return targets if all(t["health"] == "up" for t in targets) else None

    targets = wait_for(all_up, 90, 1.0, "every scrape target up")
    assert {t["labels"]["job"] for t in targets} == {
        "serving",
        "reporting",
        "prometheus",
        "alertmanager",
    }
    rules = prometheus(monitored, "/api/v1/rules")["groups"]
    assert sum(len(group["rules"]) for group in rules) == len(alert_rules())


def test_monitoring_services_are_locked_down_like_the_rest(monitored: Stack) -> None:
    """Non-root, no capabilities, limits, ports on 127.0.0.1; Prometheus and Alertmanager also
    on a read-only root filesystem (their data is in named volumes)."""
    services = ["prometheus", "alertmanager"] + (["grafana"] if monitored.with_grafana else [])
    for service in services:
        uid = monitored.container_user(service)
        assert uid.isdigit() and uid != "0", f"{service} runs as uid {uid!r}"
        config = monitored.container(service)["HostConfig"]
        assert config["CapDrop"] == ["ALL"] and not config["CapAdd"], service
        assert "no-new-privileges:true" in config["SecurityOpt"], service
        assert config["ReadonlyRootfs"] is (service != "grafana"), service
        assert config["Memory"] > 0 and config["PidsLimit"] > 0, service
        for bindings in config["PortBindings"].values():
            assert all(binding["HostIp"] == "127.0.0.1" for binding in bindings), service
    mounts = {m["Destination"]: m["Type"] for m in monitored.container("prometheus")["Mounts"]}
    assert mounts["/prometheus"] == "volume"


@pytest.fixture(scope="module")
def drift_run(monitored: Stack) -> dict:
    """`python -m traffic` with a drift: 2 clean windows of k rows, then 3 with a thicker pen."""
    started = time.time()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "traffic",
            "--url",
            monitored.url("serving"),
            "--samples-dir",
            str(monitored.root / "data" / "samples"),
            "--transform",
            # 40 slanted rows measure a drift share of about 0.4 in the embedding fitted on
            # augmented copies (issue 16): under the alert; a thicker pen measures about 0.7.
            "thick",
            "--clean-windows",
            "2",
            "--drift-windows",
            "3",
            "--token-file",
            str(monitored.root / "secrets" / "api_token"),
            "--output-dir",
            str(monitored.root / "traffic"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    FIGURES["traffic_seconds"] = round(time.time() - started, 1)
    return {"started": started, "output": result.stdout}


def firing(monitored: Stack, alert: str) -> list[dict]:
    alerts = prometheus(monitored, "/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alert and a["state"] == "firing"]


def test_the_drift_alert_fires_and_reaches_alertmanager(monitored: Stack, drift_run: dict) -> None:
    def exported() -> dict[str, float]:
        text = loopback.get(monitored.url("reporting-metrics") + "/metrics", timeout=5).text
        return {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("ctloop_") and "{" not in line
        }

    # The snapshot of every row the run sent, as a client reads it.
    try:
        metrics = wait_for(
            lambda: (m := exported()).get("ctloop_reporting_snapshot_rows", 0) >= ROWS and m,
            120,
            1.0,
            "a snapshot of the whole run",
        )
    except AssertionError as error:
        logs = monitored.run("logs", "--no-color", "--tail", "40", "reporting").stdout
        raise AssertionError(f"{error}\n{exported()}\n{logs}") from None
    share = metrics["ctloop_window_drift_share"]
    FIGURES["window_drift_share_after_drift"] = share
    assert share > 0.5, metrics

    fired = wait_for(lambda: firing(monitored, "CtloopDriftDetected"), 120, 1.0, "the drift alert")
    FIGURES["drift_alert_seconds_after_traffic"] = round(
        time.time() - drift_run["started"] - FIGURES["traffic_seconds"], 1
    )
    assert fired[0]["labels"]["severity"] == "warning"

    def in_alertmanager():
        alerts = loopback.get(monitored.url("alertmanager") + "/api/v2/alerts", timeout=5).json()
        return [a for a in alerts if a["labels"]["alertname"] == "CtloopDriftDetected"]

    received = wait_for(in_alertmanager, 60, 1.0, "the drift alert in Alertmanager")
    assert received[0]["status"]["state"] == "active"
    assert received[0]["receivers"] == [{"name": "ctloop-default"}]
    assert received[0]["annotations"]["runbook_url"] == "docs/operating.md#ctloopdriftdetected"
    screenshot_prometheus(monitored)


def test_every_grafana_panel_query_returns_data(monitored: Stack, drift_run: dict) -> None:
    """Each panel's query, as Grafana sends it, over the run's time range: at least one series."""
    end = time.time()
    empty = []
    checked = 0
    for name, document in committed_dashboards().items():
        for where, expr in panel_queries(document):
            data = prometheus(
                monitored,
                "/api/v1/query_range",
                query=as_promql(expr, "30s"),
                start=drift_run["started"],
                end=end,
                step=5,
            )
            checked += 1
            if not data["result"]:
                empty.append(f"{name}: {where}: {expr}")
    FIGURES["panel_queries_with_data"] = checked - len(empty)
    assert checked >= 25 and not empty, "\n".join(empty)


def test_grafana_serves_the_provisioned_dashboards_to_anonymous_viewers(monitored: Stack) -> None:
    if not monitored.with_grafana:
        # Said in the figures and the output; the provisioning itself is checked by
        # tests/monitoring without Grafana, and its queries by the test above.
        listed = monitored.run("ps", "--services", "--filter", "status=running").stdout.split()
        assert "grafana" not in listed and "prometheus" in listed
        return
    url = monitored.url("grafana")
    found = loopback.get(f"{url}/api/search", params={"query": "ctloop"}, timeout=10).json()
    assert {d["uid"] for d in found} >= {"ctloop-serving", "ctloop-model"}
    model = loopback.get(f"{url}/api/dashboards/uid/ctloop-model", timeout=10)
    assert model.status_code == 200 and model.json()["meta"]["canEdit"] is False
    assert loopback.get(f"{url}/api/admin/settings", auth=("admin", "admin")).status_code == 401
    password = (monitored.root / "secrets" / "grafana_admin_password").read_text().strip()
    health = loopback.get(
        f"{url}/api/datasources/uid/ctloop-prometheus/health", auth=("admin", password)
    )
    assert health.status_code == 200 and health.json()["status"] == "OK", health.text


def screenshot_prometheus(monitored: Stack) -> None:
    """Prometheus' alerts page and the drift share graph, in headless Chromium (docs/operating.md
    shows them)."""
    chromium = find_chromium()
    if chromium is None:
        FIGURES["screenshots"] = "no Chromium"
        return
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    # Upstream's UI lives at /; Debian's build (the CI stand-in) serves the classic one instead.
    base = monitored.url("prometheus")
    ui = "" if loopback.get(f"{base}/alerts", timeout=5).status_code == 200 else "/classic"
    drift = '{__name__=~"ctloop_window_drift_share|ctloop_drift_share"}'
    pages = {
        "prometheus-alerts.png": f"{ui}/alerts",
        "prometheus-drift.png": f"{ui}/graph?"
        + urlencode({"g0.expr": drift, "g0.tab": "0", "g0.range_input": "2m"}),
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            view = browser.new_page(viewport={"width": 1280, "height": 800})
            for name, path in pages.items():
                view.goto(base + path, wait_until="networkidle")
                time.sleep(2)
                view.screenshot(path=str(SHOTS / name), full_page=False)
        finally:
            browser.close()
    FIGURES["screenshots"] = sorted(pages)

"""Alert rules: generated from monitoring/alerts.py, checked and unit-tested by promtool, each
with a runbook in docs/operating.md; Prometheus' and Alertmanager's configurations checked by their
own tools."""

from __future__ import annotations

from pathlib import Path

from harness import loopback
from harness.monitoring import (
    MONITORING,
    REPO,
    RULE_TESTS,
    RULES,
    load_yaml,
    local_prometheus,
    run,
    tool,
)
from monitoring.alerts import main as generate
from monitoring.alerts import render, rules

ALERTS = [rule.name for rule in rules()]


def test_the_committed_rules_are_what_the_generator_renders() -> None:
    assert RULES.read_text() == render(rules()), "run `python -m monitoring.alerts`"


def test_every_rule_has_a_summary_a_severity_and_a_runbook_in_the_docs() -> None:
    runbooks = (REPO / "docs" / "operating.md").read_text()
    for group in load_yaml(RULES)["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            url = f"docs/operating.md#{rule['alert'].lower()}"
            assert rule["annotations"]["runbook_url"] == url
            assert f"\n#### {rule['alert']}\n" in runbooks, f"no runbook for {rule['alert']}"


def test_promtool_check_rules() -> None:
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_is_unit_tested_firing_and_not_firing() -> None:
    fires, quiet = set(), set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == set(ALERTS), f"never expected to fire: {set(ALERTS) - fires}"
    assert quiet == set(ALERTS), f"never expected to stay quiet: {set(ALERTS) - quiet}"


def test_the_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The promtool tests fail when a rule changes: they are not a copy of the rules."""
    changed = RULES.read_text().replace(
        "ctloop_window_drift_share > 0.5", "ctloop_window_drift_share > 0.8"
    )
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ctloop.rules.yml").write_text(changed)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "ctloop.test.yml").write_text(RULE_TESTS.read_text())
    result = run(tool("promtool"), "test", "rules", str(tmp_path / "tests" / "ctloop.test.yml"))
    assert result.returncode != 0 and "CtloopDriftDetected" in result.stdout + result.stderr


def test_durations_can_be_shortened_for_a_quick_test(tmp_path: Path) -> None:
    output = tmp_path / "fast.rules.yml"
    assert generate(["--for-all", "10s", "--for", "CtloopTargetDown=2m", "-o", str(output)]) == 0
    durations = {r["alert"]: r["for"] for g in load_yaml(output)["groups"] for r in g["rules"]}
    assert durations.pop("CtloopTargetDown") == "2m"
    assert set(durations.values()) == {"10s"}
    result = run(tool("promtool"), "check", "rules", str(output))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_real_prometheus_loads_every_rule(tmp_path: Path) -> None:
    with local_prometheus(tmp_path, rules=RULES) as url:
        groups = loopback.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert sorted(loaded) == sorted(ALERTS)
    assert all(rule["health"] in ("ok", "unknown") for rule in loaded.values())


def test_prometheus_config_scrapes_every_service_of_the_compose_file() -> None:
    result = run(
        tool("promtool"), "check", "config", str(MONITORING / "prometheus" / "prometheus.yml")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(MONITORING / "prometheus" / "prometheus.yml")
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets["serving"] == "serving-api:8080" and targets["reporting"] == "reporting:8083"
    services = load_yaml(REPO / "docker-compose.yml")["services"]
    for job, target in targets.items():
        host = target.split(":")[0]
        assert host == "localhost" or host in services, f"{job}: no service {host}"
    assert config["global"]["scrape_interval"] == "5s"


def test_alertmanager_config_is_valid_and_routes_every_severity() -> None:
    config_path = MONITORING / "alertmanager" / "alertmanager.yml"
    result = run(tool("amtool"), "check-config", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    severities = {rule.severity for rule in rules()}
    for severity in severities:
        routed = run(
            tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={config_path}",
            f"severity={severity}",
            "alertname=CtloopDriftDetected",
        )
        assert routed.returncode == 0 and routed.stdout.strip() == "ctloop-default", routed

"""Every setting declared once: the generated files agree with the declarations, old names work.

stackgen.generate writes .env.example, docker-compose.yml's environment blocks and
docs/configuration.md's tables from the settings classes; k8s/base/generated/ follows from those
(tests/k8s/test_tools.py checks it is fresh).
"""

from __future__ import annotations

import warnings

import pytest
import yaml

from ctloop.config import CoreSettings
from k8s.compose import interpolate
from reporting.settings import ReportingSettings
from serving.settings import ServingSettings
from stackconf.compose import ComposeSettings
from stackgen.catalog import CLASSES, READERS, entries
from stackgen.generate import COMPOSE, ENV_EXAMPLE, StaleError, compose_file, generated, stale
from webapp.settings import WebappSettings


def test_the_generated_files_agree_with_the_declarations() -> None:
    differences = stale(generated())
    assert not differences, "\n".join(differences) + "\nrun `make config`"


def test_every_setting_is_declared_once_with_a_description() -> None:
    every = entries()
    names = [entry.env for entry in every]
    assert len(names) == len(set(names))
    for entry in every:
        assert entry.field.description, entry.env
        assert entry.services, f"{entry.env} is read by no service"
    # Units are in the names, one per kind: no percent, no megabytes.
    assert not [name for name in names if name.endswith(("_PERCENT", "_MB"))]


def test_the_twins_are_one_setting_read_by_the_trigger_and_the_dashboard() -> None:
    by_name = {entry.env: entry for entry in entries()}
    for name in ("DRIFT_TEST", "DRIFT_THRESHOLD", "MONITORING_WINDOW_ROWS", "MONITORING_MIN_ROWS"):
        assert {"serving-api", "reporting"} <= set(by_name[name].services), name
    for old in ("TRIGGER_WINDOW_ROWS", "REPORTING_WINDOW_ROWS", "REPORTING_MIN_ROWS"):
        assert old not in by_name


def test_each_service_gets_exactly_its_settings_from_compose() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    example = ENV_EXAMPLE.read_text()
    for service, cls in READERS.items():
        environment = services[service]["environment"]
        mine = [e for e in entries() if service in e.services and e.declaration.compose == "env"]
        old = {
            renamed.name
            for entry in mine
            if entry.declaration.container is None
            for renamed in entry.declaration.renamed
        }
        assert {name for name in environment if name in old} == old, service
        assert all(environment[name] == f"${{{name}:-}}" for name in old), service
        passed = set(environment) - old
        assert passed == {entry.env for entry in mine}, service
        for name in passed:
            entry = next(e for e in entries() if e.env == name)
            if entry.declaration.container is None:
                assert f"\n{name}={entry.env_default}\n" in example
        compose_only = {e.env for e in entries() if ComposeSettings in _holders(e.env)}
        assert set(cls.env_names()) >= passed - compose_only


def _holders(name: str) -> list[type]:
    return [cls for cls in CLASSES if name in cls.env_names()]


def test_a_default_that_disagrees_stops_the_generator() -> None:
    text = COMPOSE.read_text().replace("${SERVING_PORT:-8080}", "${SERVING_PORT:-8090}")
    with pytest.raises(StaleError, match="SERVING_PORT: default '8090', declared '8080'"):
        compose_file(text, entries())
    text = COMPOSE.read_text().replace("${GRAFANA_PORT:-3000}", "${GRAFANA_PORTS:-3000}")
    with pytest.raises(StaleError, match="GRAFANA_PORTS is not a declared setting"):
        compose_file(text, entries())


def test_the_declared_defaults_pass_their_own_validation(monkeypatch) -> None:
    for entry in entries():
        monkeypatch.delenv(entry.env, raising=False)
    for cls in CLASSES:
        settings = cls()
        for name, field in cls.model_fields.items():
            if name != "api_token":  # the page completes it from SECRETS_DIR
                assert getattr(settings, name) == field.get_default(call_default_factory=True)


@pytest.mark.parametrize(
    ("cls", "old", "value", "field", "expected"),
    [
        (ServingSettings, "WORKERS", "3", "workers", 3),
        (ServingSettings, "SHADOW_PERCENT", "50", "shadow_share", 0.5),
        (CoreSettings, "CANARY_PERCENT", "7.5", "canary_share", 0.075),
        (CoreSettings, "TRIGGER_WINDOW_ROWS", "40", "window_rows", 40),
        (ReportingSettings, "REPORTING_WINDOW_ROWS", "40", "window_rows", 40),
        (ReportingSettings, "REPORTING_DRIFT_METHOD", "wasserstein", "drift_test", "wasserstein"),
        (WebappSettings, "MAX_UPLOAD_MB", "2", "max_upload_bytes", 2 * 1024 * 1024),
        (WebappSettings, "API_URL", "http://api:8080", "api_url", "http://api:8080"),
    ],
)
def test_an_old_name_still_works_with_a_warning_naming_the_new_one(
    monkeypatch, cls, old, value, field, expected
) -> None:
    monkeypatch.setenv(old, value)
    entry = next(e for e in entries() if old in {r.name for r in e.declaration.renamed})
    with pytest.warns(FutureWarning, match=f"{old} is deprecated.*set {entry.env} instead"):
        settings = cls()
    assert getattr(settings, field) == pytest.approx(expected)
    # Compose and Kubernetes always pass the new name: the old one wins over it, for this release.
    monkeypatch.setenv(entry.env, entry.env_default)
    with pytest.warns(FutureWarning, match=f"until then {old} wins over {entry.env}"):
        assert getattr(cls(), field) == pytest.approx(expected)
    assert getattr(cls(**{field: entry.default}), field) == entry.default  # code wins over both
    monkeypatch.setenv(old, "")  # Compose passes an old name the user did not set as empty
    assert getattr(cls(), field) == entry.default


@pytest.mark.parametrize(
    ("service", "cls", "dot_env", "field", "expected"),
    [
        ("serving-api", ServingSettings, {"WORKERS": "4"}, "workers", 4),
        ("serving-api", ServingSettings, {"CANARY_PERCENT": "10"}, "canary_share", 0.1),
        ("reporting", ReportingSettings, {"REPORTING_MIN_ROWS": "12"}, "min_rows", 12),
        ("webapp", WebappSettings, {"MAX_UPLOAD_MB": "1"}, "max_upload_bytes", 1024 * 1024),
        ("webapp", WebappSettings, {"WORKERS": "4"}, "max_upload_bytes", 4 * 1024 * 1024),
    ],
)
def test_an_old_name_in_dot_env_reaches_the_container_under_compose(
    monkeypatch, service, cls, dot_env, field, expected
) -> None:
    """What a container of docker-compose.yml reads when .env still has an old name."""
    raw = yaml.safe_load(COMPOSE.read_text())["services"][service]["environment"]
    for name in cls.every_env_name():
        monkeypatch.delenv(name, raising=False)
    for name, value in interpolate(raw, dot_env).items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert getattr(cls(), field) == pytest.approx(expected)


def test_compose_only_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="SERVING_MEMORY"):
        ComposeSettings(SERVING_MEMORY="lots")

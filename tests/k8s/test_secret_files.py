"""The Secret's files per overlay (make k8s-secrets): production alone gets PostgreSQL's password,
generated URL-safe and without a newline at its end (MLflow's store URL holds the file's every
byte), and a password that would break that URL is refused."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from k8s.compose import SECRET_VARIABLES
from k8s.secret_files import secret_variables, user_values, write_secrets

PRODUCTION = tuple(secret_variables("production").values())


def test_production_alone_gets_a_postgres_password(tmp_path) -> None:
    assert secret_variables("local") == SECRET_VARIABLES
    assert secret_variables("production") == {
        **SECRET_VARIABLES,
        "POSTGRES_PASSWORD": "postgres_password",
    }
    outcome = write_secrets(tmp_path, {}, PRODUCTION)
    assert outcome["postgres_password"] == "generated"
    password = (tmp_path / "postgres_password").read_text()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", password), repr(password)  # no newline either
    url = urlsplit(f"postgresql+psycopg://mlflow:{password}@postgres:5432/mlflow")
    assert (url.password, url.hostname, url.port) == (password, "postgres", 5432)
    assert write_secrets(tmp_path, {}, PRODUCTION)["postgres_password"] == "kept"
    assert (tmp_path / "postgres_password").read_text() == password
    # The stack's own secrets keep their files as Compose's init writes them.
    assert (tmp_path / "api_token").read_text().endswith("\n")


def test_a_postgres_password_file_of_your_own_loses_its_newline(tmp_path) -> None:
    (tmp_path / "postgres_password").write_text("Mine-1.2_3~x\n")
    assert write_secrets(tmp_path, {}, PRODUCTION)["postgres_password"] == "kept"
    assert (tmp_path / "postgres_password").read_text() == "Mine-1.2_3~x"


def test_a_postgres_password_that_is_not_url_safe_is_refused(tmp_path, monkeypatch) -> None:
    variables, no_env_file = secret_variables("production"), tmp_path / ".env"
    for name in variables:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POSTGRES_PASSWORD", "pa@ss/word")
    chosen = user_values(variables, no_env_file)
    with pytest.raises(ValueError, match="postgres_password: it goes into MLflow's store URL"):
        write_secrets(tmp_path / "secrets", chosen, PRODUCTION)
    assert not (tmp_path / "secrets" / "postgres_password").exists()
    monkeypatch.setenv("POSTGRES_PASSWORD", "Mine-1.2_3~x")
    chosen = user_values(variables, no_env_file)
    assert chosen == {"postgres_password": "Mine-1.2_3~x"}
    assert write_secrets(tmp_path / "secrets", chosen, PRODUCTION)["postgres_password"] == (
        "yours, written"
    )
    assert (tmp_path / "secrets" / "postgres_password").read_text() == "Mine-1.2_3~x"
    # The other secrets are files read as they are: any character goes.
    monkeypatch.setenv("API_TOKEN", "to@ken/with:anything")
    chosen = user_values(variables, no_env_file)
    assert write_secrets(tmp_path / "secrets", chosen, PRODUCTION)["api_token"] == "yours, written"

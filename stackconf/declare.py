"""How a setting is declared, once, and what every service's settings class is built from.

A setting is a field of a pydantic-settings class declared with `setting()`: its environment
name, type, default, range (pydantic's ge/gt/le/lt), a one-line description, where it is listed
(`section`; `start=True` for the few a quick-start user meets) and the names it had before
(`renamed`), which keep working for one release with a FutureWarning naming the new one. The
units are in the names: *_BYTES, *_SECONDS, *_SHARE (0 to 1), *_ROWS, *_PIXELS.

Which services read a setting follows from which settings classes hold it (stackgen.catalog);
`.env.example`, the environment blocks of docker-compose.yml, Kubernetes' ConfigMap and
docs/configuration.md are generated from these declarations (`make config`), and `make test`
fails when any of them disagrees.

This package is light (pydantic and pydantic-settings): every image ships it, the page's too.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

# The names a settings class was given in code, while it validates them.
_GIVEN_IN_CODE: ContextVar[frozenset[str]] = ContextVar("given_in_code", default=frozenset())

# How an old name's value becomes the new setting's (a unit that changed).
CONVERSIONS: dict[str, Callable[[str], str]] = {
    "same": lambda value: value,
    "percent": lambda value: repr(float(value) / 100),  # 0-100 -> a share 0-1
    "megabytes": lambda value: str(int(float(value) * 1024 * 1024)),  # MB -> bytes
}


@dataclass(frozen=True)
class Renamed:
    """An old environment name of a setting, and how its value converts."""

    name: str
    conversion: Literal["same", "percent", "megabytes"] = "same"


@dataclass(frozen=True)
class Declaration:
    """What `setting()` records beside pydantic's own field information."""

    env: str
    section: str
    start: bool = False
    renamed: tuple[Renamed, ...] = ()
    # How Compose carries it: "env", into the containers of the services that read it as
    # `${NAME:-default}` (or as `container` when set: a value fixed inside the stack); "host", read
    # by Compose itself (published ports, memory limits; `services` says which it configures);
    # "no", not at all (the image sets it, or it is for running a service yourself).
    compose: Literal["env", "host", "no"] = "env"
    container: str | None = None
    services: tuple[str, ...] = ()
    secret: bool = False


def setting(
    default: Any,
    description: str,
    *,
    env: str,
    section: str,
    start: bool = False,
    renamed: tuple[Renamed | str, ...] = (),
    compose: Literal["env", "host", "no"] = "env",
    container: str | None = None,
    services: tuple[str, ...] = (),
    secret: bool = False,
    **constraints: Any,
) -> Any:
    """A field of a settings class, read from the environment variable `env`."""
    declaration = Declaration(
        env=env,
        section=section,
        start=start,
        renamed=tuple(Renamed(old) if isinstance(old, str) else old for old in renamed),
        compose=compose,
        container=container,
        services=services,
        secret=secret,
    )
    # The declaration rides in json_schema_extra, the one slot pydantic keeps on a field for its
    # owner; pydantic types that slot as JSON, which a Declaration is not (hence the two ignores).
    # A class (list) is a factory: each instance gets its own; any other value is the default.
    default_kind = "default_factory" if callable(default) else "default"
    return Field(
        description=description,
        validation_alias=env,
        # pydantic types json_schema_extra as JSON; the declaration is read back by declaration().
        json_schema_extra={"x-setting": declaration},  # type: ignore[dict-item]
        **{default_kind: default},
        **constraints,
    )


def declaration(field: FieldInfo) -> Declaration:
    """The declaration of a field made with `setting()`."""
    extra = field.json_schema_extra
    found = extra.get("x-setting") if isinstance(extra, dict) else None
    if not isinstance(found, Declaration):
        raise TypeError("a settings field not declared with stackconf.setting()")
    return found


class Settings(BaseSettings):
    """Base of every settings class: frozen, other variables ignored, old names honoured.

    A setting is read from its environment name only (never from its field name: `port` must not
    pick up a PORT meant for something else); code passes field names (`ServingSettings(port=1)`).
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    def __init__(self, **values: Any) -> None:
        # What code gives wins over every environment name: the validator must know which it is,
        # and pydantic-settings hands it code's values and the environment's merged.
        token = _GIVEN_IN_CODE.set(frozenset(values))
        try:
            super().__init__(**values)
        finally:
            _GIVEN_IN_CODE.reset(token)

    @model_validator(mode="before")
    @classmethod
    def _names_and_old_names(cls, data: Any) -> Any:
        """Field names given in code win; then an old name set in the environment, then the new.

        An old name wins over the new one for its last release: Compose and Kubernetes always pass
        the new name (its default when the user set nothing), so a user's old name must win for
        it to keep working. An empty old name is unset (Compose passes `${OLD:-}`).
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            info = declaration(field)
            if name in data:  # given by field name in code
                data[info.env] = data.pop(name)
            if {name, info.env} & _GIVEN_IN_CODE.get():  # code wins over the environment
                continue
            for old in info.renamed:
                value = os.environ.get(old.name)
                if not value:
                    continue
                converted = old.conversion != "same"
                warnings.warn(
                    f"{old.name} is deprecated and will stop working in the next release: "
                    f"set {info.env} instead"
                    + (f" ({old.conversion} converted)" if converted else "")
                    + f"; until then {old.name} wins over {info.env}",
                    FutureWarning,
                    stacklevel=2,
                )
                data[info.env] = CONVERSIONS[old.conversion](value)
                break
        return data

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Environment name -> field name."""
        return {declaration(field).env: name for name, field in cls.model_fields.items()}

    @classmethod
    def every_env_name(cls) -> tuple[str, ...]:
        """Every name the class reads, the old ones too (to clear a child's environment)."""
        return tuple(
            name
            for field in cls.model_fields.values()
            for name in (declaration(field).env, *(old.name for old in declaration(field).renamed))
        )


# -- settings several services read, declared here once ----------------------------------------


class DataSettings(Settings):
    data_dir: Path = setting(
        Path("data"),
        "Folder of ref_data.csv, prod_data.csv and samples/ (the images set it)",
        env="DATA_DIR",
        section="Folders",
        compose="no",
    )

    database_url: str | None = setting(
        None,
        "PostgreSQL URL (postgresql://user:password@host:5432/database) of the feedback store: "
        "feedback rows and the single-trainer lock live there instead of DATA_DIR/prod_data.csv "
        "and a file lock, so API replicas on several machines share no file system for them "
        "(docs/history.md says when to switch); empty: the file",
        env="DATABASE_URL",
        section="Secrets",
        secret=True,
    )


class SecretsSettings(Settings):
    secrets_dir: Path = setting(
        Path("secrets"),
        "Folder of the secrets generated at first start when none is set (api_token, "
        "evidently_secret, grafana_admin_password, mlflow_tracking_password); ignored by git "
        "(the images set it)",
        env="SECRETS_DIR",
        section="Folders",
        compose="no",
    )


class ApiTokenSettings(SecretsSettings):
    api_token: str | None = setting(
        None,
        "The token /feedback and the admin routes ask for ('Authorization: Bearer <token>'), "
        "which the page sends; empty: the one generated at first start in SECRETS_DIR/api_token",
        env="API_TOKEN",
        section="Secrets",
        start=True,
        secret=True,
    )


class MonitoringSettings(Settings):
    """The drift test and the window, the same for the retrain triggers and the dashboard."""

    drift_test: Literal["ks", "wasserstein"] = setting(
        "ks",
        "Test of each embedding column: 'ks' (two-sample Kolmogorov-Smirnov, drifted when its "
        "p-value is at most DRIFT_THRESHOLD) or 'wasserstein' (distance normed by the reference's "
        "standard deviation, drifted when at least DRIFT_THRESHOLD; Evidently's default 0.1)",
        env="DRIFT_TEST",
        section="Triggers and monitoring",
        renamed=("REPORTING_DRIFT_METHOD",),
    )
    drift_threshold: float = setting(
        0.05,
        "Threshold of DRIFT_TEST (a p-value for ks, a normed distance for wasserstein)",
        env="DRIFT_THRESHOLD",
        section="Triggers and monitoring",
        renamed=("REPORTING_DRIFT_THRESHOLD",),
        gt=0,
    )
    window_rows: int = setting(
        100,
        "W: the drift and quality triggers and the dashboard's windowed figures look at the "
        "newest W production rows",
        env="MONITORING_WINDOW_ROWS",
        section="Triggers and monitoring",
        renamed=("TRIGGER_WINDOW_ROWS", "REPORTING_WINDOW_ROWS"),
        ge=2,
    )
    min_rows: int = setting(
        30,
        "Production rows needed before drift and quality are judged (triggers) or reported "
        "(dashboard)",
        env="MONITORING_MIN_ROWS",
        section="Triggers and monitoring",
        renamed=("TRIGGER_MIN_ROWS", "REPORTING_MIN_ROWS"),
        ge=2,
    )

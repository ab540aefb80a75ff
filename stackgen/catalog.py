"""Every setting of the stack, from the settings classes that declare them (stackconf.setting).

Which Compose services read a setting follows from the classes: a service's containers run the
class of READERS (the serving API's class holds the ML core's, which the init step reads too), and a
setting only Compose reads (stackconf.compose) names its services itself.
"""

from __future__ import annotations

import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic.fields import FieldInfo

from ctloop.config import CoreSettings
from reporting.settings import ReportingSettings
from serving.settings import ServingSettings
from stackconf.compose import ComposeSettings
from stackconf.declare import Declaration, Settings, declaration
from tracking.settings import MlflowServerSettings, TrackingSettings
from webapp.settings import WebappSettings

# The Compose service whose containers read each class from their environment.
READERS: dict[str, type[Settings]] = {
    "init": CoreSettings,
    "serving-api": ServingSettings,
    "reporting": ReportingSettings,
    "webapp": WebappSettings,
    "mlflow": MlflowServerSettings,
    "mlflow-mirror": TrackingSettings,
}
CLASSES: tuple[type[Settings], ...] = (*READERS.values(), ComposeSettings)
SECTIONS = (
    "Data and embedding",
    "Retraining",
    "The gate",
    "Triggers and monitoring",
    "Progressive delivery",
    "Registry",
    "Serving API",
    "Serving API: hardening",
    "Input limits",
    "Page",
    "Dashboard",
    "Prometheus and Grafana",
    "MLflow",
    "Ports and memory",
    "Secrets",
    "Folders",
)


@dataclass(frozen=True)
class Entry:
    """One setting: its declaration, its field, and the Compose services that read it."""

    env: str
    field: FieldInfo
    declaration: Declaration
    services: tuple[str, ...]

    @property
    def default(self) -> Any:
        return self.field.get_default(call_default_factory=True)

    @property
    def env_default(self) -> str:
        """The default as an environment variable's value."""
        return env_value(self.default)

    @property
    def in_env_file(self) -> bool:
        """A user may set it for Compose (.env): Compose passes it on, or reads it itself."""
        info = self.declaration
        return (info.compose == "env" and info.container is None) or info.compose == "host"

    @property
    def kind(self) -> str:
        return type_name(self.field.annotation)

    @property
    def range(self) -> str:
        return constraints(self.field)


def env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        names = [type_name(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        return " | ".join(names)
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if origin is list:
        return "comma-separated list"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def constraints(field: FieldInfo) -> str:
    """The field's range as text: `>= 1`, `0 < x <= 1`..."""
    low = high = ""
    extra = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{item.ge} ≤"
        elif isinstance(item, annotated_types.Gt):
            low = f"{item.gt} <"
        elif isinstance(item, annotated_types.Le):
            high = f"≤ {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f"< {item.lt}"
        elif isinstance(item, annotated_types.MinLen):
            extra.append(f"at least {item.min_length} character")
        elif getattr(item, "pattern", None):
            extra.append(f"matches `{item.pattern}`")
    bounds = " ".join(part for part in (low, "x" if low or high else "", high) if part)
    return "; ".join(part for part in (bounds, *extra) if part)


def entries() -> list[Entry]:
    """Every setting once, by section then in declaration order."""
    found: dict[str, tuple[FieldInfo, Declaration, list[str]]] = {}
    for cls in CLASSES:
        readers = [name for name, reader in READERS.items() if reader is cls]
        for field in cls.model_fields.values():
            info = declaration(field)
            if info.env in found:
                _, known, services = found[info.env]
                if known is not info:
                    raise ValueError(f"{info.env} is declared twice ({cls.__name__})")
            else:
                services = []
                found[info.env] = (field, info, services)
            for service in (*readers, *info.services):
                if service not in services:
                    services.append(service)
    unknown = {info.section for _, info, _ in found.values()} - set(SECTIONS)
    if unknown:
        raise ValueError(f"sections not in stackgen.catalog.SECTIONS: {sorted(unknown)}")
    every = [
        Entry(env, field, info, tuple(services)) for env, (field, info, services) in found.items()
    ]
    return sorted(every, key=lambda entry: SECTIONS.index(entry.declaration.section))


def comment(text: str, width: int = 100) -> list[str]:
    return textwrap.wrap(text, width - 2, initial_indent="# ", subsequent_indent="# ")

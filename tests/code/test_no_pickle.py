"""No pickle or joblib anywhere: models are ONNX + JSON, nothing that runs code when loaded."""

from __future__ import annotations

import ast
from pathlib import Path

from ctloop.config import CoreSettings
from harness.data import REPO

FORBIDDEN_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "joblib",
    "cloudpickle",
    "dill",
    "shelve",
    "marshal",
}
FORBIDDEN_CALLS = {"read_pickle", "to_pickle"}
SKIP_DIRS = {".git", "data", "artifacts", "node_modules", ".ruff_cache", ".pytest_cache"}


def project_python_files() -> list[Path]:
    """The project's own Python files: not its virtual environments (.venv, .venv-bench...)."""
    return [
        path
        for path in REPO.rglob("*.py")
        if not any(
            part in SKIP_DIRS or part.startswith(".venv") for part in path.relative_to(REPO).parts
        )
    ]


def violations(source: str) -> list[str]:
    """Every import of a pickle-like module, pickle call or allow_pickle=True in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                alias.name for alias in node.names if alias.name.split(".")[0] in FORBIDDEN_MODULES
            ]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] in FORBIDDEN_MODULES
        ):
            found.append(node.module)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in FORBIDDEN_CALLS or (
                name == "__import__"
                and any(
                    isinstance(a, ast.Constant) and a.value in FORBIDDEN_MODULES for a in node.args
                )
            ):
                found.append(name)
            found += [
                "allow_pickle=True"
                for keyword in node.keywords
                if keyword.arg == "allow_pickle" and getattr(keyword.value, "value", False) is True
            ]
    return found


def test_the_check_catches_each_form() -> None:
    assert violations("import pickle") == ["pickle"]
    assert violations("import joblib as jl") == ["joblib"]
    assert violations("from sklearn.externals import joblib\nfrom joblib import dump") == ["joblib"]
    assert violations("import numpy as np\nnp.load('x.npy', allow_pickle=True)") == [
        "allow_pickle=True"
    ]
    assert violations("import pandas as pd\npd.read_pickle('x')") == ["read_pickle"]
    assert violations("__import__('dill')") == ["__import__"]
    assert violations("import json\njson.loads('{}')") == []


def test_no_project_file_uses_pickle_or_joblib() -> None:
    files = project_python_files()
    assert len(files) > 10, "the scan must see the project's code"
    offenders = {
        str(path.relative_to(REPO)): found
        for path in files
        if (found := violations(path.read_text()))
    }
    assert offenders == {}


def test_artifacts_are_onnx_and_json_only(built: CoreSettings) -> None:
    suffixes = {
        path.suffix
        for path in built.artifacts_dir.rglob("*")
        if path.is_file() and path.name != ".registry.lock"
    }
    assert suffixes <= {".onnx", ".json", ".jsonl"}

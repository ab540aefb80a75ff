"""The command lines as a user runs them, settings from the environment: in process (ctloop.cli's
main with the environment and the working folder of the test), and once as a real
`python -m ctloop` process for its exit status and standard error."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from ctloop.cli import main
from ctloop.credentials import NAMES


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(monkeypatch, capsys) -> Callable[..., Result]:
    """`ctloop ARGS` in the folder `cwd` with `env` added to the environment."""

    def run(args: list[str], cwd: Path, **env: str) -> Result:
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            for name, value in env.items():
                patch.setenv(name, value)
            capsys.readouterr()
            returncode = main(args)
            out = capsys.readouterr()
        return Result(returncode, out.out, out.err)

    return run


def test_a_real_process_exits_non_zero_with_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ctloop", "train"],
        cwd=tmp_path,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ") and "build-reference" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_init_builds_everything_once_then_reuses_it(run, tmp_path: Path) -> None:
    first = run(["init"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "reference built from digits" in first.stdout and "1437 rows" in first.stdout
    assert "trained v0001" in first.stdout and "promoted" in first.stdout
    assert (tmp_path / "data" / "ref_data.csv").exists()
    ref_before = (tmp_path / "data" / "ref_data.csv").stat().st_mtime_ns

    second = run(["init"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert "reference data present" in second.stdout
    assert "model v0001 present and verified" in second.stdout
    assert (tmp_path / "data" / "ref_data.csv").stat().st_mtime_ns == ref_before

    listing = run(["registry", "list"], tmp_path)
    assert listing.returncode == 0 and "* v0001" in listing.stdout

    trained = run(["train", "--no-promote"], tmp_path)
    assert (
        trained.returncode == 0
        and "trained v0002" in trained.stdout
        and "not promoted" in trained.stdout
    )
    promoted = run(["registry", "promote", "v0002"], tmp_path)
    assert promoted.returncode == 0 and "now serving v0002" in promoted.stdout
    rolled = run(["registry", "rollback"], tmp_path)
    assert rolled.returncode == 0 and "now serving v0001" in rolled.stdout


def test_settings_come_from_the_environment(run, tmp_path: Path) -> None:
    result = run(
        ["build-reference"], tmp_path, DATA_DIR=str(tmp_path / "elsewhere"), PCA_COMPONENTS="10"
    )
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "elsewhere" / "ref_data.csv").read_text().splitlines()[0]
    assert header == ",".join([f"PCA_{i}" for i in range(1, 11)] + ["target"])


def test_an_unknown_version_is_a_one_line_error(run, tmp_path: Path) -> None:
    missing = run(["registry", "promote", "v0009"], tmp_path)
    assert missing.returncode == 1 and "no model version 'v0009'" in missing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--components", "10", "build-reference"],
        ["build-reference", "--components", "10"],
    ],
    ids=["before the command", "after the command"],
)
def test_shared_options_work_before_and_after_the_command(run, tmp_path: Path, args) -> None:
    result = run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    header = (tmp_path / "data" / "ref_data.csv").read_text().splitlines()[0]
    assert header.endswith("PCA_10,target")


def test_init_takes_a_dataset_folder_after_its_name(run, tmp_path: Path) -> None:
    """The README's `ctloop init --dataset DIR`: a folder of <class>/ images."""
    from ctloop.dataset import load_digits_dataset

    digits = load_digits_dataset()
    folder = tmp_path / "images"
    for index, (image, label) in enumerate(zip(digits.inputs, digits.labels, strict=True)):
        if label in ("0", "1", "2") and index < 400:
            (folder / label).mkdir(parents=True, exist_ok=True)
            (folder / label / f"{index}.png").write_bytes(image)
    result = run(["init", "--dataset", str(folder), "--components", "8"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"reference built from {folder}" in result.stdout and "trained v0001" in result.stdout
    reference = (tmp_path / "data" / "ref_data.csv").read_text().splitlines()
    assert {line.rsplit(",", 1)[1] for line in reference[1:]} == {"0", "1", "2"}


def test_registry_verify_checks_every_version_and_names_a_broken_one(run, workspace) -> None:
    tmp_path = workspace.data_dir.parent  # a copy of `built` (ctloop init is tested above)
    assert run(["train", "--no-promote"], tmp_path).returncode == 0
    clean = run(["registry", "verify"], tmp_path)
    assert clean.returncode == 0
    assert "v0001: 4 files match" in clean.stdout and "v0002: 4 files match" in clean.stdout
    (tmp_path / "artifacts" / "versions" / "v0001" / "embedding.onnx").write_bytes(b"tampered")
    broken = run(["registry", "verify"], tmp_path)
    assert broken.returncode == 1
    assert "v0001: FAILED" in broken.stdout and "v0002: 4 files match" in broken.stdout


def test_secrets_are_generated_once(run, tmp_path: Path) -> None:
    first = run(["secrets"], tmp_path)
    assert first.returncode == 0 and first.stdout.count("generated") == len(NAMES) == 4
    token = (tmp_path / "secrets" / "api_token").read_text()
    second = run(["secrets"], tmp_path)
    assert second.stdout.count("present") == len(NAMES)
    assert (tmp_path / "secrets" / "api_token").read_text() == token

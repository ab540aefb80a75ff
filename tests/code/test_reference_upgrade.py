"""An upgrade that builds the reference differently: rebuilt, or kept with a message; and the
check that a model is never fed rows embedded differently from its training rows."""

from __future__ import annotations

import json

import pytest

from ctloop.cli import main
from ctloop.config import CoreSettings
from ctloop.embed import EMBEDDING_INFO, load_embedding
from ctloop.preprocess import LEGACY, PreprocessSpec
from ctloop.reference import check_reference, embedding_mismatch, read_reference
from ctloop.registry import ModelRegistry
from harness.data import copy_workspace, write_prod


def as_before_the_upgrade(settings: CoreSettings) -> None:
    """Make the stored reference look built by the release before stroke normalisation: its
    description and the served model's manifest lack the fields added since."""
    info_path = settings.embedding_dir / EMBEDDING_INFO
    info = json.loads(info_path.read_text())
    for key in (*LEGACY, "stroke_target", "ink_target", "fine"):
        info["preprocessing"].pop(key, None)
    info_path.write_text(json.dumps(info))


@pytest.fixture
def legacy(built: CoreSettings, tmp_path) -> CoreSettings:
    settings = copy_workspace(built, tmp_path)
    as_before_the_upgrade(settings)
    return settings


def add_prod_rows(settings: CoreSettings, count: int) -> None:
    reference = read_reference(settings.ref_data_path)
    targets = reference.targets[:count]
    write_prod(settings.prod_data_path, reference.embeddings[:count], targets, targets)


def test_an_up_to_date_reference_is_left_alone(built: CoreSettings, tmp_path) -> None:
    settings = copy_workspace(built, tmp_path)
    check = check_reference(settings)
    assert check.action == "unchanged" and not check.rebuilt


def test_an_automatic_choice_stands_until_a_setting_fixes_another(
    built: CoreSettings, tmp_path
) -> None:
    settings = copy_workspace(built, tmp_path)
    stored = load_embedding(settings.embedding_dir).info
    assert stored["choice"]["requested"]["size"] == "auto" and stored["preprocessing"]["size"] == 8
    assert check_reference(settings).action == "unchanged"  # no sweep again at each start
    fixed = settings.model_copy(update={"image_size": 16})
    check = check_reference(fixed)
    assert check.rebuilt and "preprocessing size 8 -> 16" in check.message
    rebuilt = load_embedding(settings.embedding_dir).info
    assert rebuilt["preprocessing"]["size"] == 16 and rebuilt["choice"]["requested"]["size"] == 16


def test_without_production_rows_init_rebuilds_and_serves_a_model_on_the_new_preprocessing(
    legacy: CoreSettings, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("DATA_DIR", str(legacy.data_dir))
    monkeypatch.setenv("ARTIFACTS_DIR", str(legacy.artifacts_dir))
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "reference rebuilt: this version builds it differently" in out
    assert "preprocessing stroke_min 0.0 -> 0.11" in out and "centre False -> True" in out
    registry = ModelRegistry(legacy.artifacts_dir)
    assert registry.current_version() == "v0002"
    served = PreprocessSpec.from_dict(registry.manifest("v0002")["preprocessing"])
    assert served == PreprocessSpec()
    assert load_embedding(legacy.embedding_dir).info["preprocessing"] == PreprocessSpec().to_dict()


def test_with_production_rows_init_keeps_the_stored_preprocessing_and_says_why(
    legacy: CoreSettings, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    add_prod_rows(legacy, 3)
    before = legacy.ref_data_path.read_bytes()
    monkeypatch.setenv("DATA_DIR", str(legacy.data_dir))
    monkeypatch.setenv("ARTIFACTS_DIR", str(legacy.artifacts_dir))
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    assert "reference kept as stored, not rebuilt" in out
    assert "holds 3 rows embedded the stored way" in out
    assert "move prod_data.csv aside and run `ctloop init` again" in out
    assert ModelRegistry(legacy.artifacts_dir).current_version() == "v0001"
    assert legacy.ref_data_path.read_bytes() == before
    stored = load_embedding(legacy.embedding_dir).info["preprocessing"]
    assert PreprocessSpec.from_dict(stored).stroke_min == 0.0  # still the old preprocessing


def test_build_reference_refuses_a_new_preprocessing_under_production_rows(
    legacy: CoreSettings, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_prod_rows(legacy, 2)
    monkeypatch.setenv("DATA_DIR", str(legacy.data_dir))
    monkeypatch.setenv("ARTIFACTS_DIR", str(legacy.artifacts_dir))
    assert main(["build-reference"]) == 1
    error = capsys.readouterr().err
    assert "holds rows embedded with the stored embedding" in error
    assert "preprocessing stroke_min 0.0 -> 0.11" in error and "--force" in error


def test_a_model_is_not_fed_rows_embedded_differently(built: CoreSettings) -> None:
    registry = ModelRegistry(built.artifacts_dir)
    manifest = registry.manifest(registry.current_version())
    info = load_embedding(built.embedding_dir).info
    assert embedding_mismatch(manifest, info) is None
    old_rows = {**info, "preprocessing": {"size": 8}}
    reason = embedding_mismatch(manifest, old_rows)
    assert "stroke_min 0.11 -> 0.0" in reason and "centre True -> False" in reason
    other = {**info, "sha256": "0" * 64}
    assert "embedding" in embedding_mismatch(manifest, other)


def test_a_manifest_from_before_a_field_reads_as_the_old_preprocessing() -> None:
    old = PreprocessSpec.from_dict({"size": 8, "ink_threshold": 0.25, "min_peak": 0.875})
    assert old.stroke_min == 0.0 and old.centre is False
    assert PreprocessSpec.from_dict(PreprocessSpec().to_dict()) == PreprocessSpec()

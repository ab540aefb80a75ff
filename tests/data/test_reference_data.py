"""The data contract of data/ref_data.csv, the split, and the samples kept unseen."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ctloop.config import CoreSettings
from ctloop.dataset import load_samples
from ctloop.reference import (
    ReferenceConflictError,
    build_reference,
    read_reference,
    reference_is_complete,
)
from harness.data import make_settings
from pictures import encode, render_grid

EXPECTED_HEADER = [f"PCA_{i}" for i in range(1, 33)] + ["target"]
CLASSES = [str(digit) for digit in range(10)]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_header_is_exactly_the_workshop_layout(built: CoreSettings) -> None:
    assert read_csv(built.ref_data_path)[0] == EXPECTED_HEADER


def test_one_row_per_reference_image_with_class_names(built: CoreSettings) -> None:
    rows = read_csv(built.ref_data_path)[1:]
    assert len(rows) == 1437  # 80 % of 1,797, stratified
    assert all(len(row) == 33 for row in rows)
    assert sorted({row[-1] for row in rows}) == CLASSES
    values = np.array([row[:-1] for row in rows], dtype=float)
    assert np.isfinite(values).all()
    assert np.abs(values).max() < 50  # an embedding of [0, 1] pixels, not raw ids
    # Stratified: every class keeps 80 % of its images, to within one image.
    totals = np.bincount(load_digits().target)
    for label in CLASSES:
        assert abs(sum(row[-1] == label for row in rows) - 0.8 * totals[int(label)]) <= 1


def test_unseen_part_is_kept_as_images_and_never_enters_ref_data(built: CoreSettings) -> None:
    samples = load_samples(built.samples_dir)
    assert len(samples) == 1797 - 1437
    assert samples.classes == CLASSES
    info = json.loads(built.reference_info_path.read_text())
    assert info["reference_rows"] + info["unseen_rows"] == 1797
    # No unseen image is a reference image: compare the digits themselves, not just counts.
    digits = load_digits()
    unseen_ids = {int(name.split("-")[1].split(".")[0]) for name in samples.filenames}
    assert len(unseen_ids) == len(samples)
    reference = read_reference(built.ref_data_path)
    assert len(reference) + len(unseen_ids) == len(digits.target)
    for name, label in zip(samples.filenames, samples.labels, strict=True):
        assert str(digits.target[int(name.split("-")[1].split(".")[0])]) == label


def test_rebuilding_gives_byte_identical_files(built: CoreSettings, tmp_path: Path) -> None:
    again = make_settings(tmp_path)
    build_reference(again)
    assert again.ref_data_path.read_bytes() == built.ref_data_path.read_bytes()
    assert (again.embedding_dir / "embedding.onnx").read_bytes() == (
        built.embedding_dir / "embedding.onnx"
    ).read_bytes()
    assert again.reference_info_path.read_bytes() == built.reference_info_path.read_bytes()
    first = sorted(p.relative_to(built.samples_dir) for p in built.samples_dir.rglob("*.png"))
    second = sorted(p.relative_to(again.samples_dir) for p in again.samples_dir.rglob("*.png"))
    assert first == second
    assert reference_is_complete(again)


def test_embedding_size_is_configurable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pca_components=12)
    build_reference(settings)
    assert read_csv(settings.ref_data_path)[0] == [f"PCA_{i}" for i in range(1, 13)] + ["target"]


def test_a_folder_of_images_is_a_dataset(tmp_path: Path) -> None:
    """One sub-folder per class, mixed formats; labels are the folder names."""
    digits = load_digits()
    formats = [("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("gif", "GIF"), ("webp", "WEBP")]
    names = {0: "zero", 1: "one", 7: "seven"}
    for index in np.flatnonzero(np.isin(digits.target, list(names)))[:150]:
        suffix, fmt = formats[index % len(formats)]
        folder = tmp_path / "images" / names[int(digits.target[index])]
        folder.mkdir(parents=True, exist_ok=True)
        extra = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        (folder / f"{index}.{suffix}").write_bytes(
            encode(render_grid(digits.data[index] / 16, 4), fmt, **extra)
        )
    (tmp_path / "images" / "one" / "notes.txt").write_text("not an image, skipped")
    settings = make_settings(tmp_path, dataset=str(tmp_path / "images"), pca_components=8)
    info = build_reference(settings)
    assert info["classes"] == ["one", "seven", "zero"]
    rows = read_csv(settings.ref_data_path)
    assert {row[-1] for row in rows[1:]} == {"one", "seven", "zero"}
    assert len(rows) - 1 + info["unseen_rows"] == 150
    assert sorted(p.name for p in settings.samples_dir.iterdir()) == ["one", "seven", "zero"]


def test_a_missing_dataset_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_reference(make_settings(tmp_path, dataset=str(tmp_path / "nowhere")))


def test_rebuilding_with_another_embedding_refuses_to_orphan_production_rows(
    workspace: CoreSettings,
) -> None:
    workspace.prod_data_path.write_text(
        ",".join([*EXPECTED_HEADER, "prediction"])
        + "\n"
        + ",".join(["0.1"] * 32 + ["3", "3"])
        + "\n"
    )
    other = CoreSettings(
        data_dir=workspace.data_dir, artifacts_dir=workspace.artifacts_dir, pca_components=16
    )
    before = workspace.ref_data_path.read_bytes()
    with pytest.raises(ReferenceConflictError, match=r"prod_data\.csv"):
        build_reference(other)
    assert workspace.ref_data_path.read_bytes() == before
    build_reference(workspace)  # the same embedding is fine
    assert workspace.ref_data_path.read_bytes() == before

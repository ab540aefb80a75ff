"""Data for the tests: settings under a temporary root, copies of the built stack, feedback rows."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ctloop.config import CoreSettings
from ctloop.dataset import load_samples
from ctloop.media import preprocess_inputs
from ctloop.predict import load_model
from ctloop.preprocess import preprocess_many
from ctloop.prod_data import ProductionData, ProductionRow
from ctloop.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots and figures the tests keep (CI uploads)


def embedding_size(settings: CoreSettings) -> int:
    """The stored embedding's size (PCA_COMPONENTS may be `auto`: init chose it)."""
    from ctloop.embed import load_embedding

    return int(load_embedding(settings.embedding_dir).info["n_components"])


def make_settings(root: Path, **overrides) -> CoreSettings:
    """Settings whose data/ and artifacts/ live under `root`."""
    return CoreSettings(data_dir=root / "data", artifacts_dir=root / "artifacts", **overrides)


# The first model as the project trained it before augmentation (an SVC, no transformed copies,
# the PCA fitted on the reference images only): a model that a drift or a poisoning flood
# visibly hurts, for the tests of what the loop does about that. The default model reads most
# drifted digits right from the start (docs/studies/retraining.md).
PLAIN_ENV = {
    "HEAD_MODEL": "svc",
    "AUGMENT_REFERENCE_COPIES": "0",
    "AUGMENT_FEEDBACK_COPIES": "0",
    "AUGMENT_EMBEDDING_COPIES": "0",
}


def plain_settings(root: Path) -> CoreSettings:
    """Settings under `root` with PLAIN_ENV's values."""
    return make_settings(
        root,
        head_model="svc",
        augment_reference_copies=0,
        augment_feedback_copies=0,
        augment_embedding_copies=0,
    )


def copy_workspace(built: CoreSettings, root: Path) -> CoreSettings:
    """A private copy of a built data/ and artifacts/ under `root` (the `built` one is shared)."""
    shutil.copytree(built.data_dir, root / "data")
    shutil.copytree(built.artifacts_dir, root / "artifacts")
    return make_settings(root)


def copy_reference(built: CoreSettings, data_dir: Path) -> Path:
    """A private copy of the built ref_data.csv alone."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(built.ref_data_path, data_dir / "ref_data.csv"))


def typical_samples(samples_dir: Path) -> dict[str, bytes]:
    """For each class, the unseen sample image nearest to its class's mean image."""
    samples = load_samples(samples_dir)
    pixels = preprocess_many(samples.inputs)
    labels = np.array(samples.labels)
    chosen = {}
    for label in sorted(set(samples.labels)):
        members = np.flatnonzero(labels == label)
        centre = pixels[members].mean(axis=0)
        best = members[np.linalg.norm(pixels[members] - centre, axis=1).argmin()]
        chosen[label] = samples.inputs[best]
    return chosen


def served_feedback(
    built: CoreSettings, change: Callable[[bytes, int], bytes] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, true labels, served labels) of the unseen inputs (pictures or sounds),
    through the served model; each input first through `change(data, index)` if given."""
    samples = load_samples(built.samples_dir)
    model = load_model(ModelRegistry(built.artifacts_dir).load())
    inputs = (
        samples.inputs
        if change is None
        else [change(data, i) for i, data in enumerate(samples.inputs)]
    )
    pixels = preprocess_inputs(inputs, model.spec)
    embeddings, labels, _ = model.predict_pixels(pixels)
    return embeddings, np.array(samples.labels), np.asarray(labels).astype(str)


def write_prod(
    path: Path,
    embeddings: np.ndarray,
    targets: np.ndarray,
    predictions: np.ndarray,
    version: str = "v0001",
) -> None:
    """Append feedback rows through prod_data.csv's owner, as the serving API does."""
    store = ProductionData(path, embeddings.shape[1])
    for number, (row, target, prediction) in enumerate(
        zip(embeddings, targets, predictions, strict=True)
    ):
        store.append(
            ProductionRow(
                embedding=np.asarray(row),
                target=str(target),
                prediction=str(prediction),
                model_version=version,
                request_id=f"r{number}",
                timestamp="2026-01-01T00:00:00.000Z",
            )
        )


def prod_labels(path: Path, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Target and prediction of prod_data.csv, read back through its owner."""
    table = ProductionData(path, n_components).read_rows()
    return table.columns["target"], table.columns["prediction"]


def prod_rows(settings: CoreSettings) -> list[dict[str, str]]:
    """The rows of prod_data.csv as a CSV reader sees them (none if it does not exist yet)."""
    if not settings.prod_data_path.exists():
        return []
    with settings.prod_data_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def flip(path: Path, count: int = 64) -> None:
    """Damage a file as a bad disk would: `count` bytes in its middle inverted."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(255 - b for b in data[middle : middle + count])
    path.write_bytes(bytes(data))

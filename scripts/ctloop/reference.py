"""The reference data: dataset -> split -> preprocess -> fit embedding -> data/ref_data.csv.

The one module that writes and reads data/ref_data.csv and data/reference.json.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from ctloop.config import CoreSettings
from ctloop.dataset import ImageDataset, load_dataset, split_reference_unseen, write_samples
from ctloop.embed import EmbeddingError, fit_embedding, load_embedding, save_embedding
from ctloop.predict import Embedding
from ctloop.preprocess import ImageError, PreprocessSpec, preprocess
from ctloop.prod_data import ProductionData
from ctloop.tables import Table, TableError, embedding_row, format_row, parse_table, ref_header
from ctloop.util import sha256_hex, write_atomic


class ReferenceMissingError(TableError):
    """ref_data.csv is missing or has no rows: build the reference first."""


class ReferenceConflictError(RuntimeError):
    """Rebuilding would put production rows and reference rows in different embedding spaces."""


def build_reference(settings: CoreSettings, force: bool = False) -> dict:
    """Write ref_data.csv, samples/, reference.json and the embedding; return what was written."""
    dataset = load_dataset(settings.dataset)
    reference_idx, unseen_idx = split_reference_unseen(
        dataset.labels, settings.unseen_fraction, settings.split_seed
    )
    spec = PreprocessSpec(size=settings.image_size)
    pixels = _preprocess_dataset(dataset, reference_idx, spec, settings.max_image_pixels)
    labels = [dataset.labels[i] for i in reference_idx]

    pca, model = fit_embedding(pixels, settings.pca_components)
    embeddings = Embedding(model, threads=0)(pixels)
    csv_bytes = ref_csv_bytes(embeddings, labels)
    embedding_sha = sha256_hex(model)
    _refuse_space_change(settings, embedding_sha, force)

    info = {
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint(),
        "classes": dataset.classes,
        "split": {"seed": settings.split_seed, "unseen_fraction": settings.unseen_fraction},
        "reference_rows": len(reference_idx),
        "unseen_rows": len(unseen_idx),
        "reference_rows_per_class": dict(sorted(Counter(labels).items())),
        "preprocessing": spec.to_dict(),
        "n_components": settings.pca_components,
        "explained_variance": round(float(pca.explained_variance_ratio_.sum()), 6),
        "ref_data_sha256": sha256_hex(csv_bytes),
    }
    save_embedding(settings.embedding_dir, model, info)
    write_atomic(settings.ref_data_path, csv_bytes)
    write_samples(dataset, unseen_idx, settings.samples_dir)
    info["embedding_sha256"] = embedding_sha
    write_atomic(settings.reference_info_path, (json.dumps(info, indent=2) + "\n").encode())
    return info


def _preprocess_dataset(
    dataset: ImageDataset, indices: np.ndarray, spec: PreprocessSpec, max_pixels: int
) -> np.ndarray:
    pixels = np.empty((len(indices), spec.n_pixels), dtype=np.float32)
    for row, index in enumerate(indices):
        try:
            pixels[row] = preprocess(dataset.images[index], spec, max_pixels)
        except ImageError as exc:
            raise ImageError(
                f"dataset image {dataset.labels[index]}/{dataset.filenames[index]}: {exc}"
            ) from exc
    return pixels


def _refuse_space_change(settings: CoreSettings, embedding_sha: str, force: bool) -> None:
    """Production rows were embedded by the stored embedding; a new one would orphan them."""
    try:
        stored = load_embedding(settings.embedding_dir)
    except EmbeddingError:
        return
    if stored.sha256 == embedding_sha or force:
        return
    production = ProductionData(settings.prod_data_path, int(stored.info["n_components"]))
    if production.count_rows_on_disk() > 0:
        raise ReferenceConflictError(
            f"{settings.prod_data_path} holds rows embedded with embedding {stored.sha256[:12]}, "
            f"and this "
            f"build gives {embedding_sha[:12]}: move prod_data.csv away or pass --force"
        )


def reference_is_complete(settings: CoreSettings) -> bool:
    """ref_data.csv, samples and an embedding that belong together (False after a crash)."""
    try:
        stored = load_embedding(settings.embedding_dir)
        ref_bytes = settings.ref_data_path.read_bytes()
        info = read_reference_info(settings.reference_info_path)
    except (EmbeddingError, FileNotFoundError, ValueError):
        return False
    return (
        sha256_hex(ref_bytes) == stored.info["ref_data_sha256"]
        and info.get("embedding_sha256") == stored.sha256
        and settings.samples_dir.is_dir()
    )


def read_reference_info(path: Path) -> dict:
    return json.loads(path.read_text())


def ref_csv_bytes(embeddings: np.ndarray, labels: list[str]) -> bytes:
    """The whole ref_data.csv for these embedding rows and labels."""
    lines = [format_row(ref_header(embeddings.shape[1]))]
    lines += [
        embedding_row(vector, [label]) for vector, label in zip(embeddings, labels, strict=True)
    ]
    return b"".join(lines)


def read_reference(path: Path) -> Table:
    """Every row of ref_data.csv; TableError when it is missing, empty or malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReferenceMissingError(
            f"{path} is missing: run `python -m ctloop build-reference` first"
        ) from None
    table = parse_table(data.splitlines(), path)
    if len(table) == 0:
        raise ReferenceMissingError(
            f"{path} has no rows: run `python -m ctloop build-reference` first"
        )
    return table

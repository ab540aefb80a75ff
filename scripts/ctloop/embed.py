"""The embedding: a PCA fitted once on the reference images, stored as ONNX in artifacts/embedding/.

Every model version carries a copy of the embedding it was trained with; reference rows and
feedback rows are embedded by this same graph, so ref_data.csv and prod_data.csv share one space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctloop.util import sha256_hex, write_atomic

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

EMBEDDING_FILE = "embedding.onnx"
EMBEDDING_INFO = "embedding.json"


class EmbeddingError(RuntimeError):
    """The stored embedding is missing or does not match its description."""


@dataclass(frozen=True)
class StoredEmbedding:
    model: bytes
    info: dict

    @property
    def sha256(self) -> str:
        return self.info["sha256"]


def fit_embedding(pixels: np.ndarray, n_components: int) -> tuple[PCA, bytes]:
    """Fit the PCA on preprocessed reference pixels; return it and its ONNX bytes."""
    # Imported here: the serving workers read the stored embedding and never fit one.
    from sklearn.decomposition import PCA

    from ctloop.export import embedding_to_onnx

    if n_components > min(pixels.shape):
        raise ValueError(
            f"PCA_COMPONENTS={n_components} is more than the data allows ({min(pixels.shape)})"
        )
    pca = PCA(n_components=n_components, svd_solver="full").fit(pixels)
    return pca, embedding_to_onnx(pca)


def save_embedding(directory: Path, model: bytes, info: dict) -> StoredEmbedding:
    """Write embedding.onnx then embedding.json (which names the ONNX file's sha256)."""
    info = {**info, "sha256": sha256_hex(model)}
    write_atomic(directory / EMBEDDING_FILE, model)
    write_atomic(
        directory / EMBEDDING_INFO, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    )
    return StoredEmbedding(model=model, info=info)


def load_embedding(directory: Path) -> StoredEmbedding:
    """Read the stored embedding and check it against its description."""
    model_path, info_path = directory / EMBEDDING_FILE, directory / EMBEDDING_INFO
    if not model_path.exists() or not info_path.exists():
        raise EmbeddingError(
            f"no embedding in {directory}: run `python -m ctloop build-reference` first"
        )
    model = model_path.read_bytes()
    info = json.loads(info_path.read_text())
    if sha256_hex(model) != info.get("sha256"):
        raise EmbeddingError(f"{model_path} does not match the sha256 in {info_path}")
    return StoredEmbedding(model=model, info=info)

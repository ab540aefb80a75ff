"""The CSV contracts: data/ref_data.csv and data/prod_data.csv.

ref_data.csv:  PCA_1,...,PCA_n,target
prod_data.csv: PCA_1,...,PCA_n,target,prediction,
               model_version,timestamp,request_id,client_prediction   (one line in the file)

(`prediction` is the serving model's answer when the feedback arrived, `model_version` that
model; `client_prediction` is what the client says it showed, empty when it did not say.)

Numbers are written with a fixed format so that the same embedding gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET = "target"
PREDICTION = "prediction"
PROD_METADATA = ("model_version", "timestamp", "request_id", "client_prediction")


def embedding_columns(n_components: int) -> list[str]:
    """PCA_1 .. PCA_n, the workshop's column names."""
    return [f"PCA_{i}" for i in range(1, n_components + 1)]


def ref_header(n_components: int) -> list[str]:
    return [*embedding_columns(n_components), TARGET]


def prod_header(n_components: int) -> list[str]:
    return [*embedding_columns(n_components), TARGET, PREDICTION, *PROD_METADATA]


def format_number(value: float) -> str:
    return f"{value:.6f}"


def format_row(values: list[str]) -> bytes:
    """One CSV line (quoted where needed), as bytes, newline included."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode("utf-8")


def ref_csv_bytes(embeddings: np.ndarray, labels: list[str]) -> bytes:
    """The whole ref_data.csv for these embedding rows and labels."""
    lines = [format_row(ref_header(embeddings.shape[1]))]
    for vector, label in zip(embeddings, labels, strict=True):
        lines.append(format_row([*map(format_number, vector.tolist()), label]))
    return b"".join(lines)


def prod_row_bytes(
    embedding: np.ndarray,
    target: str,
    prediction: str,
    model_version: str,
    timestamp: str,
    request_id: str,
    client_prediction: str = "",
) -> bytes:
    """One complete prod_data.csv line."""
    values = [target, prediction, model_version, timestamp, request_id, client_prediction]
    return format_row([*map(format_number, embedding.tolist()), *values])


@dataclass(frozen=True)
class Table:
    """Rows of ref_data.csv or prod_data.csv: embeddings, targets and the other columns."""

    embeddings: np.ndarray  # (rows, n) float32
    targets: np.ndarray  # (rows,) str
    columns: dict[str, np.ndarray]  # every non-embedding column, as strings

    def __len__(self) -> int:
        return len(self.targets)


class TableError(ValueError):
    """A CSV that does not follow the contract."""


def read_table(path: Path, n_components: int | None = None) -> Table:
    """Read ref_data.csv or prod_data.csv; an absent or header-only file gives an empty table."""
    if not path.exists() or path.stat().st_size == 0:
        return _empty(n_components or 0)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            return _empty(n_components or 0)
        n = sum(1 for name in header if name.startswith("PCA_"))
        if header[:n] != embedding_columns(n) or len(header) <= n or header[n] != TARGET:
            raise TableError(
                f"{path}: header must start with PCA_1..PCA_n,target; got {header[:3]}..."
            )
        if n_components is not None and n != n_components:
            raise TableError(f"{path}: {n} embedding columns, the embedding has {n_components}")
        rows = [row for row in reader if row]
    width = len(header)
    for number, row in enumerate(rows, start=2):
        if len(row) != width:
            raise TableError(f"{path}: line {number} has {len(row)} fields, the header {width}")
    if not rows:
        return _empty(n, header[n:])
    embeddings = np.array([row[:n] for row in rows], dtype=np.float32)
    columns = {name: np.array([row[n + i] for row in rows]) for i, name in enumerate(header[n:])}
    return Table(embeddings=embeddings, targets=columns[TARGET], columns=columns)


def _empty(n_components: int, names: list[str] | None = None) -> Table:
    names = names or [TARGET]
    return Table(
        embeddings=np.empty((0, n_components), dtype=np.float32),
        targets=np.array([], dtype=str),
        columns={name: np.array([], dtype=str) for name in names},
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

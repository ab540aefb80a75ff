"""The CSV format shared by data/ref_data.csv and data/prod_data.csv: columns, rows, parsing.

ref_data.csv:  PCA_1,...,PCA_n,target
prod_data.csv: PCA_1,...,PCA_n,target,prediction,
               model_version,timestamp,request_id,client_prediction   (one line in the file)

(`prediction` is the serving model's answer when the feedback arrived, `model_version` that
model; `client_prediction` is what the client says it showed, empty when it did not say.)

Numbers are written with a fixed format so that the same embedding gives the same bytes. This
module only encodes and decodes; each file has its owner: `ctloop.reference` (ref_data.csv) and
`ctloop.prod_data` (prod_data.csv).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass

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


def embedding_row(embedding: np.ndarray, values: list[str]) -> bytes:
    """A line of the embedding's numbers followed by `values`."""
    return format_row([*map(format_number, embedding.tolist()), *values])


@dataclass(frozen=True)
class Table:
    """Rows of ref_data.csv or prod_data.csv: embeddings, targets and the other columns."""

    embeddings: np.ndarray  # (rows, n) float32
    targets: np.ndarray  # (rows,) str
    columns: dict[str, np.ndarray]  # every non-embedding column, as strings
    row_numbers: np.ndarray | None = None  # 1-based data row numbers in the file, when known

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, keep: np.ndarray) -> Table:
        """The rows selected by a boolean mask or an index array."""
        return Table(
            embeddings=self.embeddings[keep],
            targets=self.targets[keep],
            columns={name: values[keep] for name, values in self.columns.items()},
            row_numbers=None if self.row_numbers is None else self.row_numbers[keep],
        )


class TableError(ValueError):
    """A CSV that does not follow the contract."""


def check_header(header: list[str], source: object, n_components: int | None = None) -> int:
    """The number of embedding columns of a valid header; TableError otherwise."""
    n = sum(1 for name in header if name.startswith("PCA_"))
    if n == 0 or header[:n] != embedding_columns(n) or len(header) <= n or header[n] != TARGET:
        raise TableError(
            f"{source}: line 1 must be the header PCA_1..PCA_n,target,...; got {header[:3]}..."
        )
    if n_components is not None and n != n_components:
        raise TableError(f"{source}: {n} embedding columns, the embedding has {n_components}")
    return n


def check_line(line: bytes, width: int, n_components: int) -> list[str]:
    """The fields of one complete data line, or ValueError saying what is wrong with it."""
    try:
        fields = next(csv.reader([line.decode("utf-8")], strict=True))
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise ValueError(f"not a CSV line ({exc})") from exc
    if len(fields) != width:
        raise ValueError(f"{len(fields)} fields, the header has {width}")
    for value in fields[:n_components]:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"embedding value {value[:20]!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"embedding value {value!r} is not finite")
    if not fields[n_components]:
        raise ValueError("the target is empty")
    return fields


def parse_table(
    lines: Iterable[bytes],
    source: object,
    n_components: int | None = None,
    header: list[str] | None = None,
    first_row: int = 1,
    skip_invalid: bool = False,
) -> Table:
    """Rows of a CSV from its lines (the header first, unless `header` is given). A line that is
    not a valid row raises TableError, or with `skip_invalid` is left out (its number too)."""
    lines = iter(lines)
    if header is None:
        first = next(lines, None)
        if first is None or not first.strip():
            return empty_table(n_components or 0)
        header = next(csv.reader([first.decode("utf-8")]))
    n = check_header(header, source, n_components)
    width = len(header)
    rows, numbers = [], []
    for number, line in enumerate(lines, start=first_row):
        try:
            rows.append(check_line(line, width, n))
        except ValueError as exc:
            if skip_invalid:
                continue
            raise TableError(f"{source}: data row {number}: {exc}") from None
        numbers.append(number)
    if not rows:
        return empty_table(n, header[n:])
    embeddings = np.array([row[:n] for row in rows], dtype=np.float32)
    columns = {name: np.array([row[n + i] for row in rows]) for i, name in enumerate(header[n:])}
    return Table(
        embeddings=embeddings,
        targets=columns[TARGET],
        columns=columns,
        row_numbers=np.array(numbers),
    )


def empty_table(n_components: int, names: list[str] | None = None) -> Table:
    names = names or [TARGET]
    return Table(
        embeddings=np.empty((0, n_components), dtype=np.float32),
        targets=np.array([], dtype=str),
        columns={name: np.array([], dtype=str) for name in names},
        row_numbers=np.array([], dtype=int),
    )

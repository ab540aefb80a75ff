"""The two CSVs as pandas frames for Evidently: reference embeddings and the newest feedback.

A snapshot reads the reference and the newest `rows` production rows, from the end of the file
(ctloop.prod_data), so its cost does not grow with the history; the total row count comes from
the rows' own numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctloop.prod_data import open_production
from ctloop.reference import read_reference
from ctloop.tables import PREDICTION, TARGET, embedding_columns
from reporting.settings import ReportingSettings

VERSION = "model_version"  # the prod_data.csv column naming the version that answered a row
ROW = "row_number"  # not a CSV column: the row's number in prod_data.csv (1 = the first row)


@dataclass(frozen=True)
class MonitoringData:
    """Reference and production rows with the same columns: PCA_1..PCA_n, target, prediction."""

    reference: pd.DataFrame
    production: pd.DataFrame
    embedding_columns: list[str]
    classes: list[str]  # the reference's class labels, sorted
    production_rows: int  # rows read from prod_data.csv (the newest), including any dropped
    total_rows: int  # rows in prod_data.csv: the newest row's number (0 when there is none)
    dropped_rows: int  # production rows without a target or a prediction
    model_versions: list[str]  # the model versions that answered the production rows


def load_monitoring_data(settings: ReportingSettings, rows: int) -> MonitoringData:
    """The reference and the newest `rows` production rows, through their owner modules (the
    file or PostgreSQL, ctloop.prod_data.open_production); no production rows yet is empty."""
    # ReferenceMissingError: the dashboard waits for it.
    reference = read_reference(settings.ref_data_path)
    n_components = reference.embeddings.shape[1]
    columns = embedding_columns(n_components)
    # Same n as the reference, or reading raises: the two files must share one vector space.
    production = open_production(settings, n_components).tail(rows)
    numbers = production.row_numbers

    reference_frame = pd.DataFrame(reference.embeddings.astype("float64"), columns=columns)
    reference_frame[TARGET] = pd.Series(reference.targets, dtype=object)
    # The reference has no model answers; its labels stand for the expected class balance, so the
    # production prediction distribution is compared with the reference class distribution.
    reference_frame[PREDICTION] = reference_frame[TARGET]

    production_frame = pd.DataFrame(production.embeddings.astype("float64"), columns=columns)
    production_frame[TARGET] = pd.Series(production.targets, dtype=object)
    predictions = production.columns.get(PREDICTION)
    production_frame[PREDICTION] = pd.Series(
        predictions if predictions is not None else [""] * len(production), dtype=object
    )
    versions = production.columns.get(VERSION)
    # Not a monitored column: the windowed figures use it to tell model versions apart.
    production_frame[VERSION] = pd.Series(
        versions if versions is not None else [""] * len(production), dtype=object
    )
    production_frame[ROW] = (
        numbers if numbers is not None else np.arange(1, len(production) + 1, dtype=np.int64)
    )
    labelled = (production_frame[TARGET] != "") & (production_frame[PREDICTION] != "")
    return MonitoringData(
        reference=reference_frame,
        production=production_frame[labelled].reset_index(drop=True),
        embedding_columns=columns,
        classes=sorted(set(reference.targets.tolist())),
        production_rows=len(production),
        total_rows=int(production_frame[ROW].max()) if len(production) else 0,
        dropped_rows=int((~labelled).sum()),
        model_versions=sorted(set(versions.tolist())) if versions is not None else [],
    )


def production_signature(settings: ReportingSettings) -> object:
    """What identifies the production rows now, without reading them (the refresher's check)."""
    # Any embedding width: a signature reads no row.
    return open_production(settings, 1).signature()


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """Size, modification time and inode of a file, or None when it does not exist."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_size, status.st_mtime_ns, status.st_ino)

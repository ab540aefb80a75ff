"""The two CSVs as pandas frames for Evidently: reference embeddings and production feedback."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ctloop.prod_data import ProductionData
from ctloop.reference import read_reference
from ctloop.tables import PREDICTION, TARGET, embedding_columns

VERSION = "model_version"  # the prod_data.csv column naming the version that answered a row


@dataclass(frozen=True)
class MonitoringData:
    """Reference and production rows with the same columns: PCA_1..PCA_n, target, prediction."""

    reference: pd.DataFrame
    production: pd.DataFrame
    embedding_columns: list[str]
    classes: list[str]  # the reference's class labels, sorted
    production_rows: int  # rows in prod_data.csv, including any dropped below
    dropped_rows: int  # production rows without a target or a prediction
    model_versions: list[str]  # the model versions that answered the production rows


def load_monitoring_data(ref_path: Path, prod_path: Path) -> MonitoringData:
    """Read both CSVs through their owner modules; a missing or header-only prod is empty."""
    reference = read_reference(ref_path)  # ReferenceMissingError: the dashboard waits for it
    n_components = reference.embeddings.shape[1]
    columns = embedding_columns(n_components)
    # Same n as the reference, or reading raises: the two files must share one vector space.
    production = ProductionData(prod_path, n_components).read_rows()

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
    labelled = (production_frame[TARGET] != "") & (production_frame[PREDICTION] != "")
    return MonitoringData(
        reference=reference_frame,
        production=production_frame[labelled].reset_index(drop=True),
        embedding_columns=columns,
        classes=sorted(set(reference.targets.tolist())),
        production_rows=len(production),
        dropped_rows=int((~labelled).sum()),
        model_versions=sorted(set(versions.tolist())) if versions is not None else [],
    )


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """Size, modification time and inode of a file, or None when it does not exist."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_size, status.st_mtime_ns, status.st_ino)

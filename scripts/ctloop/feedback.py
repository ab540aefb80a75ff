"""A feedback row and the errors of the stores that keep them (ctloop.prod_data: the file,
ctloop.prod_db: PostgreSQL), shared by both."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctloop.tables import TableError, embedding_row
from ctloop.util import utc_iso


class ProductionDataError(TableError):
    """prod_data.csv cannot take appends: its header is damaged or it cannot be written."""


class NoRoomError(ProductionDataError):
    """A row could not be written whole: the disk, a quota or the file-size limit is full. Nothing
    was kept; the next append tries again."""


@dataclass(frozen=True)
class ProductionRow:
    """One feedback row: the image's embedding, its true class and the served answer."""

    embedding: np.ndarray
    target: str
    prediction: str
    model_version: str
    request_id: str
    client_prediction: str = ""
    timestamp: str = field(default_factory=utc_iso)

    def to_line(self) -> bytes:
        return embedding_row(
            self.embedding,
            [
                self.target,
                self.prediction,
                self.model_version,
                self.timestamp,
                self.request_id,
                self.client_prediction,
            ],
        )

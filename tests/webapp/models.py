"""/model replies for the page's tests of its words (a ModelInfo, as the API would send)."""

from __future__ import annotations

from serving_client.contract import ModelInfo, Preprocessing


def stroke_grid(framing: str) -> Preprocessing:
    """An 8 x 8 grey picture model's preprocessing, in `framing`."""
    return Preprocessing(framing=framing, size=8, channels=1)


def model_info(
    classes: list[str], dataset: str | None, preprocessing: Preprocessing | None
) -> ModelInfo:
    """A first version of `classes`; None leaves a field out, as an older API does."""
    body: dict = {
        "version": "v0001",
        "created_at": "2026-01-01T00:00:00Z",
        "parent": None,
        "classes": classes,
        "metrics": {"holdout": {"accuracy": 0.9}},
        "training": {"rows": 10},
        "retrain_every": 20,
        "promotion_policy": "gate",
        "gate_rule": "",
        "production_rows": 0,
        "rows_since_last_retrain": 0,
        "rows_until_retrain": 20,
        "retrain_backlog": 0,
        "last_retrain": None,
    }
    if dataset is not None:
        body["dataset"] = dataset
    if preprocessing is not None:
        body["preprocessing"] = preprocessing.model_dump()
    return ModelInfo.model_validate(body)

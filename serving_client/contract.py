"""The serving API's contract: its request and response bodies, declared once.

The API validates and documents them (/docs, /openapi.json); its clients (the page, the traffic
simulator, `serving_client.client`) parse its replies with them. The few methods and properties
below the fields are views for clients; they are not part of the JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from serving_client.records import (
    Delivery,
    Fallback,
    FieldError,
    GateRecord,
    RetrainDecision,
    StageMove,
    TrainingRecord,
    VersionMetrics,
)

# The digits dataset's first "3", as an 8x8 PNG (any size works).
EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAARElEQVR4nDXGMRGAMBAAsBzHzkuolJeCBHBQ"
    "B0jAAg4qoRbqoEhgIlNwzB5Q+z4TSvSOxYgyAojW/t3VQs3Mzcp7eU4fVhgPr7VP6z8AAAAASUVORK5CYII="
)


# What a string holds beyond its type, in `format`s of this API (a JSON Schema consumer that does
# not know a format ignores it; the schema test generates real values for them).
# base64 of a PNG/JPEG/BMP/GIF/WebP file
IMAGE_STRING: JsonDict = {"format": "image-base64", "minLength": 1}
IMAGE_FILE: JsonDict = {
    "contentMediaType": "application/octet-stream",
    "format": "image",
    "minLength": 1,
}
CLASS_LABEL: JsonDict = {"format": "class-label"}  # one of the served model's classes (GET /model)


# A JSON schema is a document whose shape its keys decide: the hooks below edit the one pydantic
# generates, where the keys they use are known to hold objects.
def _exactly_one_image_field(schema: dict[str, Any]) -> None:
    """What PredictRequest's validator checks, said in its JSON schema: exactly one of `image`
    and `images`, neither empty (the validator's own messages stay: 'empty_image', ...)."""
    image, images = (schema["properties"][name]["anyOf"][0] for name in ("image", "images"))
    image.update(IMAGE_STRING)
    images["items"].update(IMAGE_STRING)
    images["minItems"] = 1
    schema["oneOf"] = [
        {"required": ["image"], "properties": {"image": dict(image)}},
        {"required": ["images"], "properties": {"images": dict(images)}},
    ]
    schema["examples"] = [{"image": EXAMPLE_PNG}]


class PredictRequest(BaseModel):
    """One image (`image`) or a small batch (`images`), base64-encoded PNG/JPEG/BMP/GIF/WebP."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one_image_field)

    image: str | None = Field(None, description="base64 of one image file")
    images: list[str] | None = Field(
        None, description="base64 of several image files (at most SERVING_MAX_BATCH, 64 by default)"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        if (self.image is None) == (self.images is None):
            raise ValueError("send either 'image' (one base64 image) or 'images' (a list of them)")
        if self.images is not None and not self.images:
            raise ValueError("'images' is empty")
        return self


class Prediction(BaseModel):
    label: str = Field(description="The predicted class")
    confidence: float = Field(description="Probability of the predicted class")
    probabilities: dict[str, float] = Field(description="Probability of every class")

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        """The `count` most probable classes, most probable first."""
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[:count]


class PredictResponse(Prediction):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "label": "3",
                    "confidence": 0.981,
                    "probabilities": {"0": 0.001, "3": 0.981, "8": 0.011},
                    "model_version": "v0004",
                    "request_id": "5f0c6a1e9d2b4c7a8e3f1b2d4c6a8e0f",
                }
            ]
        }
    )
    model_version: str = Field(description="The model version that answered")
    request_id: str


class BatchPredictResponse(BaseModel):
    predictions: list[Prediction]
    model_version: str
    request_id: str


GRID_DESCRIPTION = (
    "What the model saw (only with ?grid=true): the image after preprocessing, rows of cells "
    "top to bottom; a grey cell is one value (IMAGE_FRAMING=strokes: ink 1, background 0; "
    "whole: black 0, white 1), a colour cell (IMAGE_CHANNELS=3) its red, green and blue in [0, 1]; "
    "a grid of more than 64 cells a side (an EMBEDDING_MODEL's input) is averaged over blocks "
    "down to at most 64"
)
# Rows of grey cells, or rows of [red, green, blue] cells.
Grid = list[list[float]] | list[list[list[float]]]


class PredictionWithGrid(Prediction):
    grid: Grid = Field(description=GRID_DESCRIPTION)


class PredictResponseWithGrid(PredictResponse):
    grid: Grid = Field(description=GRID_DESCRIPTION)


# Not a BatchPredictResponse: its `predictions` hold more (a list is not covariant).
class BatchPredictResponseWithGrid(BaseModel):
    predictions: list[PredictionWithGrid]
    model_version: str
    request_id: str


def _class_label_or_null(schema: dict[str, Any]) -> None:
    schema["anyOf"][0].update(CLASS_LABEL)


class FeedbackRequest(BaseModel):
    """An image and its true class; `prediction` is what the client showed, if it wants to say."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"image": EXAMPLE_PNG, "target": "3", "prediction": "3"}]},
    )

    image: str = Field(description="base64 of one image file", json_schema_extra=IMAGE_STRING)
    target: str = Field(
        min_length=1,
        max_length=100,
        description="The true class (one of the model's classes)",
        json_schema_extra=CLASS_LABEL,
    )
    prediction: str | None = Field(
        None,
        max_length=100,
        description="The prediction shown (one of the model's classes)",
        json_schema_extra=_class_label_or_null,
    )


class FeedbackResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": 40,
                    "retrain_triggered": True,
                    "rows_until_retrain": 20,
                    "retrain_every": 20,
                    "target": "3",
                    "prediction": "3",
                    "model_version": "v0004",
                    "request_id": "5f0c6a1e9d2b4c7a8e3f1b2d4c6a8e0f",
                }
            ]
        }
    )
    rows: int = Field(description="Rows in prod_data.csv, this one included (its row number)")
    retrain_triggered: bool = Field(description="This row reached a multiple of RETRAIN_EVERY")
    rows_until_retrain: int
    retrain_every: int
    target: str
    prediction: str = Field(description="What the serving model predicted for this image")
    model_version: str = Field(description="The model that predicted it")
    request_id: str


class VersionSummary(BaseModel):
    version: str
    created_at: str
    parent: str | None
    current: bool
    training_rows: int
    mode: str | None = Field(
        None, description="'finetune' (from its base version) or 'scratch'; None before modes"
    )
    mode_reason: str | None = None
    base_version: str | None = Field(None, description="The version a fine-tune started from")
    production_window: list[int] | None = Field(
        None, description="First and last production row of a fine-tune's window"
    )
    seconds: float | None = Field(None, description="Training, export and gate, in seconds")
    holdout_accuracy: float | None
    holdout_macro_f1: float | None
    trigger_rows: int | None = Field(description="The retrain's production row count, if any")
    trigger_reasons: list[str] | None = Field(
        None, description="What started the retrain: rows (every k), drift, quality"
    )
    gate: GateRecord | None = Field(description="Champion and challenger scores and the decision")
    stages: list[StageMove] = Field(
        default_factory=list,
        description="Every move of the version, oldest first: {stage (champion, shadow, canary, "
        "retired, rolled_back), since, reason}",
    )


class RetrainOutcome(BaseModel):
    """One retrain decision, as `ModelInfo.last_retrain` holds it (a client's typed view: the
    API documents `last_retrain` as an object, the retrain ledger's entry)."""

    trigger_rows: int
    decision: str
    version: str | None = None
    reason: str | None = None


class Preprocessing(BaseModel):
    """What a model reads: how an input (an image, a sound) becomes the cells it sees (the
    preprocessing recorded in the version's manifest). A client words its page, and draws the
    cells, after it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"medium": "image", "framing": "strokes", "size": 8, "channels": 1},
                {
                    "medium": "audio",
                    "framing": "log-mel",
                    "size": 32,
                    "columns": 32,
                    "channels": 1,
                    "sample_rate": 16000,
                    "seconds": 1.0,
                },
            ]
        }
    )

    medium: str = Field(
        "image",
        description="'image': the model reads pictures; 'audio': sounds (WAV, FLAC, OGG, MP3), "
        "sent in the same fields as pictures",
    )
    framing: str = Field(
        description="'strokes': ink on a plain background (handwriting, sketches), framed on "
        "its ink; a grey cell is the ink (1) or the background (0). 'whole': a picture "
        "(photograph, texture) averaged down as it is; a grey cell is its brightness "
        "(black 0, white 1). 'log-mel': a sound's spectrogram, rows are mel bands (low "
        "first), columns time; a cell is loudness (0: 40 dB below the loudest, 1: the loudest)"
    )
    size: int = Field(description="The grid's rows (a picture's side: size x size cells)")
    channels: int = Field(description="Values per cell: 1 (grey), 3 (red, green, blue)")
    columns: int | None = Field(None, description="The grid's columns, if not `size`")
    sample_rate: int | None = Field(None, description="Sounds: resampled to this rate (Hz)")
    seconds: float | None = Field(
        None, description="Sounds: the silence trimmed, centred in this many seconds"
    )


class ModelInfo(BaseModel):
    version: str
    created_at: str
    parent: str | None
    classes: list[str]
    dataset: str | None = Field(
        None,
        description="The name of the dataset the served version learnt: 'digits' (the bundled "
        "set) or the DATASET folder's name; null for a version whose manifest predates it",
        examples=["digits"],
    )
    preprocessing: Preprocessing | None = Field(
        None,
        description="What the served version reads (IMAGE_FRAMING, IMAGE_SIZE, IMAGE_CHANNELS "
        "as it was trained with them); null only from an API older than this field",
    )
    metrics: VersionMetrics = Field(
        description="Held-out metrics recorded when the version was trained"
    )
    training: TrainingRecord
    retrain_every: int
    promotion_policy: str
    gate_rule: str
    production_rows: int
    rows_since_last_retrain: int = Field(description="Rows since the last decided retrain trigger")
    rows_until_retrain: int = Field(description="Rows to send before the next retrain starts")
    retrain_backlog: int = Field(description="Retrain triggers due and not decided yet")
    last_retrain: RetrainDecision | None
    fallback: Fallback | None = Field(
        None,
        description="Set while this worker serves another version than the registry pointer "
        "names: {wanted, serving, reason}",
    )
    problems: list[str] = Field(
        default_factory=list, description="Anything degraded, in words (empty when all is well)"
    )
    delivery: Delivery = Field(
        default_factory=lambda: Delivery(strategy="direct", stage=None),
        description="PROMOTION_STRATEGY, the challenger on stage (shadow or canary) if any, the "
        "split of requests in percent by version, and the live comparison on the feedback rows "
        "since the stage began (rows and accuracy of each, what it leads to)",
    )

    @property
    def holdout_accuracy(self) -> float | None:
        """The held-out accuracy recorded when the served version was trained, if any."""
        return self.metrics.get("holdout", {}).get("accuracy")

    @property
    def retrain_outcome(self) -> RetrainOutcome | None:
        """`last_retrain`, typed."""
        if self.last_retrain is None:
            return None
        return RetrainOutcome.model_validate(self.last_retrain)


class SampleFile(BaseModel):
    name: str = Field(description="The file's name in its class folder")
    url: str = Field(description="Its path on this API (GET: the image's bytes)")
    media_type: str = Field(description="Its media type, from its suffix")
    size_bytes: int = Field(description="Its size in bytes")


class SampleClass(BaseModel):
    label: str = Field(description="The class (its folder's name)")
    files: list[SampleFile] = Field(description="A few of its images, sorted by name")


class SampleListing(BaseModel):
    """A few images of each class that the model never learnt from (`data/samples/`, written by
    `ctloop init`), for a client to show and try."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "per_class": 1,
                    "classes": [
                        {
                            "label": "3",
                            "files": [
                                {
                                    "name": "digit-0083.png",
                                    "url": "/samples/3/digit-0083.png",
                                    "media_type": "image/png",
                                    "size_bytes": 84,
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    per_class: int = Field(description="At most this many files of each class are listed")
    classes: list[SampleClass] = Field(
        description="The classes with samples, sorted; empty when the API has none"
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(None, description="Version to serve; default: the current's parent")


class StageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(
        None, description="Act only if this version is the one on stage (a guard against a race)"
    )
    reason: str | None = Field(None, max_length=200, description="Recorded in history.jsonl")


class StageResponse(BaseModel):
    version: str = Field(description="The challenger whose stage ended")
    stage: str = Field(description="Its new stage: champion or rolled_back")
    champion: str = Field(description="The version every client gets now")


class RollbackResponse(BaseModel):
    version: str
    previous: str | None


class ErrorResponse(BaseModel):
    """The body of every error, on every route."""

    detail: str = Field(description="What is wrong, in words")
    error: str = Field(description="A short machine-readable code")
    request_id: str | None = Field(None, description="The request's id (in the logs too)")
    errors: list[FieldError] | None = Field(
        None, description="The first 10 invalid fields, for a 422 (`error_count` counts them all)"
    )
    error_count: int | None = Field(None, description="How many fields were invalid, for a 422")
    classes: list[str] | None = Field(None, description="The valid classes, for unknown_class")

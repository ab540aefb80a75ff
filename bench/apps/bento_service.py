"""The off-the-shelf alternative: BentoML serving the same ONNX model, same request and reply.

Run with BentoML's defaults: `bentoml serve bench.apps.bento_service:DigitService`.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import bentoml

from ctloop.predict import load_model
from ctloop.preprocess import preprocess
from ctloop.registry import ModelRegistry


@bentoml.service
class DigitService:
    def __init__(self) -> None:
        files = ModelRegistry(Path(os.environ["ARTIFACTS_DIR"])).load()
        self.model = load_model(files)

    @bentoml.api(route="/predict")
    def predict(self, image: str) -> dict:
        vector = preprocess(base64.b64decode(image), self.model.spec)
        _, labels, probabilities = self.model.predict_pixels(vector)
        values = probabilities[0].tolist()
        return {
            "label": str(labels[0]),
            "confidence": round(max(values), 6),
            "probabilities": {
                c: round(p, 6) for c, p in zip(self.model.classes, values, strict=True)
            },
            "model_version": self.model.version,
            "request_id": uuid.uuid4().hex,
        }

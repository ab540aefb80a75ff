"""The naive pattern: the same kind of model as a scikit-learn pipeline, called inside the route.

Same request, same reply, same preprocessing function as the product; the difference is
scikit-learn's predict_proba (PCA + scaler + MLP head) instead of onnxruntime. The pipeline is
fitted at startup on the reference images of the benchmark's dataset (the project stores no
pickles to load one from), its PCA and its head on the same vectors, so that it answers like the
product without reading the product's embedding.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from sklearn.pipeline import make_pipeline

from ctloop.config import CoreSettings
from ctloop.dataset import load_dataset, split_reference_unseen
from ctloop.embed import fit_embedding
from ctloop.preprocess import preprocess, preprocess_many
from ctloop.train import fit_head

settings = CoreSettings(
    data_dir=Path(os.environ["DATA_DIR"]), artifacts_dir=Path(os.environ["ARTIFACTS_DIR"])
)
dataset = load_dataset(settings.dataset)
reference, _ = split_reference_unseen(dataset.labels, settings.unseen_fraction, settings.split_seed)
pixels = preprocess_many([dataset.inputs[i] for i in reference])
pca, _ = fit_embedding(pixels, 32)  # the workshop's embedding size
labels = np.array([str(dataset.labels[i]) for i in reference])
head = fit_head(pca.transform(pixels).astype(np.float32), labels)
pipeline = make_pipeline(pca, *[step for _, step in head.steps])
classes = [str(label) for label in pipeline.classes_]

app = FastAPI()


class Request(BaseModel):
    image: str


@app.post("/predict")
async def predict(body: Request) -> dict:
    vector = preprocess(base64.b64decode(body.image)).reshape(1, -1)
    probabilities = pipeline.predict_proba(vector)[0]
    best = int(np.argmax(probabilities))
    return {
        "label": classes[best],
        "confidence": round(float(probabilities[best]), 6),
        "probabilities": {
            c: round(float(p), 6) for c, p in zip(classes, probabilities, strict=True)
        },
        "model_version": "sklearn",
        "request_id": uuid.uuid4().hex,
    }

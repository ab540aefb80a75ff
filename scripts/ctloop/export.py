"""scikit-learn -> ONNX: the embedding (PCA) and the classifier head (scaler + classifier).

Graphs are exported with a fixed opset so that the same model gives the same bytes, and without
ZipMap so that probabilities come out as a plain (rows, classes) float tensor.
"""

from __future__ import annotations

import warnings

from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from ctloop.predict import (
    EMBEDDING_INPUT,
    EMBEDDING_OUTPUT,
    LABEL_OUTPUT,
    PIXELS_INPUT,
    PROBABILITIES_OUTPUT,
)

TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}


def embedding_to_onnx(pca: PCA) -> bytes:
    """The fitted PCA as an ONNX graph: pixels (rows, n_pixels) -> embedding (rows, n)."""
    model = to_onnx(
        pca,
        initial_types=[(PIXELS_INPUT, FloatTensorType([None, pca.n_features_in_]))],
        final_types=[(EMBEDDING_OUTPUT, FloatTensorType([None, pca.n_components_]))],
        target_opset=TARGET_OPSET,
    )
    return model.SerializeToString()


def head_to_onnx(head: Pipeline) -> bytes:
    """The classifier head as ONNX: embedding -> label (rows,) and probabilities (rows, classes)."""
    classifier = head.steps[-1][1]
    with warnings.catch_warnings():
        # skl2onnx reads SVC.probA_/probB_, deprecated in scikit-learn 1.9 even when unused.
        warnings.filterwarnings(
            "ignore", message=r"Attribute `prob[AB]_` was deprecated", category=FutureWarning
        )
        model = to_onnx(
            head,
            initial_types=[(EMBEDDING_INPUT, FloatTensorType([None, head.n_features_in_]))],
            options={id(classifier): {"zipmap": False}},
            target_opset=TARGET_OPSET,
        )
    outputs = [output.name for output in model.graph.output]
    renames = dict(zip(outputs, (LABEL_OUTPUT, PROBABILITIES_OUTPUT), strict=True))
    for node in model.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for output in model.graph.output:
        output.name = renames[output.name]
    return model.SerializeToString()

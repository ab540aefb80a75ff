"""scikit-learn -> ONNX: the embedding (PCA) and the classifier head (scaler + classifier).

Graphs are exported with a fixed opset so that the same model gives the same bytes, and without
ZipMap so that probabilities come out as a plain (rows, classes) float tensor.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # onnx is imported where a graph is merged
    from onnx import GraphProto

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
    _rename(model.graph, renames)
    return model.SerializeToString()


def pipeline_to_onnx(embedding: bytes, head: bytes) -> bytes:
    """One graph from pixels to embedding, label and probabilities: the serving path makes one
    onnxruntime call per request instead of two (45 -> 39 us per image, measured here)."""
    import onnx
    from onnx import compose, helper

    first, second = onnx.load_from_string(embedding), onnx.load_from_string(head)
    # skl2onnx declares the ai.onnx.ml version each graph needs (PCA 3, SVM 1); merging needs one.
    # Scaler and SVMClassifier are unchanged since ai.onnx.ml 1, so declaring 3 is exact.
    for model in (first, second):
        del model.opset_import[:]
        model.opset_import.extend(helper.make_opsetid(d, v) for d, v in TARGET_OPSET.items())
    # An encoder's embedding may be of a newer IR version than skl2onnx writes (torch: 10).
    first.ir_version = second.ir_version = max(first.ir_version, second.ir_version)
    second = compose.add_prefix(second, prefix="head_")
    merged = compose.merge_models(
        first,
        second,
        io_map=[(EMBEDDING_OUTPUT, "head_" + EMBEDDING_INPUT)],
        outputs=[EMBEDDING_OUTPUT, "head_" + LABEL_OUTPUT, "head_" + PROBABILITIES_OUTPUT],
    )
    renames = {
        "head_" + LABEL_OUTPUT: LABEL_OUTPUT,
        "head_" + PROBABILITIES_OUTPUT: PROBABILITIES_OUTPUT,
    }
    _rename(merged.graph, renames)
    onnx.checker.check_model(merged)
    return merged.SerializeToString()


def _rename(graph: GraphProto, renames: dict[str, str]) -> None:
    """Rename tensors everywhere they occur: node outputs, node inputs (an MLP's ArgMax reads
    the probabilities) and graph outputs."""
    for node in graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
        node.input[:] = [renames.get(name, name) for name in node.input]
    for output in graph.output:
        output.name = renames.get(output.name, output.name)

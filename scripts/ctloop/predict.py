"""Inference with onnxruntime: the embedding and the classifier head of one model version.

Only numpy and onnxruntime: the serving workers import this, never scikit-learn or skl2onnx.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from ctloop.media import Spec, spec_from_dict
from ctloop.preprocess import PreprocessSpec
from ctloop.registry import VersionFiles

# Names of the graphs' inputs and outputs (ctloop.export writes them).
PIXELS_INPUT = "pixels"
EMBEDDING_OUTPUT = "embedding"
EMBEDDING_INPUT = "embedding"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"


def make_session(model: bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU session; one thread by default, the right choice for one small request at a time."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class Embedding:
    """pixels (rows, n_pixels) -> embedding (rows, n) through the exported PCA."""

    def __init__(self, model: bytes, threads: int = 1) -> None:
        self.session = make_session(model, threads)
        shape = self.session.get_outputs()[0].shape
        self.n_components = int(shape[1])
        self.n_pixels = int(self.session.get_inputs()[0].shape[1])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run([EMBEDDING_OUTPUT], {PIXELS_INPUT: _as_rows(pixels)})[0]


class Classifier:
    """embedding (rows, n) -> labels (rows,) and probabilities (rows, classes).

    The label is the most probable class, so a reply never shows a label that is not its own top
    probability (an SVC's vote can disagree with its Platt probabilities on a few rows).
    """

    def __init__(self, model: bytes, classes: list[str], threads: int = 1) -> None:
        self.session = make_session(model, threads)
        self.classes = list(classes)
        self._classes = np.array(self.classes)

    def __call__(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs = {EMBEDDING_INPUT: _as_rows(embeddings)}
        probabilities = self.session.run([PROBABILITIES_OUTPUT], inputs)[0]
        return self._classes[probabilities.argmax(axis=1)], probabilities


class ImageGraph:
    """pixels (rows, n_pixels) -> embeddings, labels, probabilities in one onnxruntime call
    (a version's pipeline.onnx: the embedding and the head merged into one graph)."""

    def __init__(self, model: bytes, classes: list[str], threads: int = 1) -> None:
        self.session = make_session(model, threads)
        self.n_pixels = int(self.session.get_inputs()[0].shape[1])
        self._classes = np.array(classes)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        embeddings, probabilities = self.session.run(
            [EMBEDDING_OUTPUT, PROBABILITIES_OUTPUT], {PIXELS_INPUT: _as_rows(pixels)}
        )
        return embeddings, self._classes[probabilities.argmax(axis=1)], probabilities


@dataclass
class Model:
    """One loaded model version: what the API holds in memory and swaps on promotion."""

    version: str
    manifest: dict
    image_graph: ImageGraph  # preprocessed images: what the API runs
    classifier: Classifier  # embedding rows: what the gate scores
    spec: Spec = field(default_factory=PreprocessSpec)

    @property
    def classes(self) -> list[str]:
        return self.classifier.classes

    def predict_pixels(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, labels, probabilities) for preprocessed pixel rows."""
        return self.image_graph(pixels)


def _as_rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    return values.reshape(1, -1) if values.ndim == 1 else values


def load_model(files: VersionFiles, threads: int = 1) -> Model:
    """Build the in-memory model of a verified registry version."""
    manifest = files.manifest
    return Model(
        version=files.version,
        manifest=manifest,
        image_graph=ImageGraph(files.files["pipeline.onnx"], manifest["classes"], threads),
        classifier=Classifier(files.files["classifier.onnx"], manifest["classes"], threads),
        spec=spec_from_dict(manifest["preprocessing"]),
    )

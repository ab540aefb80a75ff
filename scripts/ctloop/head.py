"""The classifier head: StandardScaler + a classifier on embedding rows, fitted or fine-tuned.

`mlp` (the default) is StandardScaler + MLPClassifier: it fine-tunes. From scratch, `members`
networks are trained from different seeds on the same rows and merged into one network whose
output is the mean of their logits (hidden layers side by side, output weights divided by their
number): an ensemble that exports, serves and fine-tunes as one MLP. A fine-tune starts from a
served version's weights, read from its `head.json` (JSON, never pickle), keeps that version's
scaler frozen, trains the network for `finetune_epochs` epochs on the rows given, and keeps
`finetune_interpolation` of that step: the weights end on the straight line between the base's
and the fine-tuned ones (weight-space interpolation, as in WiSE-FT: Wortsman et al., "Robust
fine-tuning of zero-shot models", CVPR 2022), which keeps more of what the base read right.
`svc` is the first head of this project (StandardScaler + RBF SVC with Platt probabilities):
scratch only.

    fitted = fit_head(embeddings, targets, weights, config)                 # scratch
    fitted = finetune_head(base_files, embeddings, targets, weights, config)
    files = export_head(fitted)   # {"classifier.onnx": ..., "head.json": ...} for the registry
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ctloop.config import CoreSettings

HEAD_FILE = "head.json"
CLASSIFIER_FILE = "classifier.onnx"
HEAD_FORMAT = "ctloop.head.mlp/1"


class WarmStartError(ValueError):
    """The base version cannot be fine-tuned (no head.json, an SVC head, other classes...)."""


def _default(name: str) -> Any:
    """The default of the setting `name`, declared once in ctloop.config."""
    return CoreSettings.model_fields[name].default


@dataclass(frozen=True)
class HeadConfig:
    """What the head is and how it is trained. Defaults measured in docs/studies/retraining.md."""

    # What a setting also decides takes its default from the setting's declaration.
    kind: Literal["mlp", "svc"] = _default("head_model")
    hidden_units: int = 128  # per member
    members: int = _default("head_members")  # networks averaged
    learning_rate: float = 1e-3  # Adam's initial step
    batch_size: int = 32
    alpha: float = 2e-2  # L2 penalty
    epochs: int = _default("head_epochs")  # at most, from scratch (stops once the loss stops)
    finetune_epochs: int = _default("finetune_epochs")  # exactly, per fine-tune
    finetune_learning_rate: float = 1e-3  # Adam restarts at each fine-tune: a gentler step
    # weights after a fine-tune = base + this * (fine-tuned - base): 1 keeps the fine-tuned ones
    finetune_interpolation: float = _default("finetune_interpolation")
    svc_c: float = 10.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> HeadConfig:
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> HeadConfig:
        """HEAD_MODEL, HEAD_MEMBERS, HEAD_EPOCHS, FINETUNE_EPOCHS and FINETUNE_INTERPOLATION;
        the rest are the measured defaults."""
        return cls(
            kind=settings.head_model,
            members=settings.head_members,
            epochs=settings.head_epochs,
            finetune_epochs=settings.finetune_epochs,
            finetune_interpolation=settings.finetune_interpolation,
        )

    def describe(self) -> str:
        if self.kind == "svc":
            return f"StandardScaler + SVC(C={self.svc_c:g}, rbf, probability=True)"
        network = (
            f"MLPClassifier(({self.hidden_units},), relu, adam "
            f"lr={self.learning_rate:g}, batch={self.batch_size}, alpha={self.alpha:g})"
        )
        if self.members > 1:
            network = f"mean of {self.members} x {network}"
        return f"StandardScaler + {network}"


DEFAULT_HEAD = HeadConfig()


def fit_head(
    embeddings: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    config: HeadConfig | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> Pipeline:
    """A new head (scaler fitted on these rows) trained from scratch. `checkpoint` is called
    before each network is trained: it may raise to stop a long fit (a rebuild giving way)."""
    config = config or DEFAULT_HEAD
    if config.kind == "svc":
        return _fit_svc(embeddings, targets, weights, config)
    scaler = StandardScaler().fit(_float64(embeddings))
    scaled = scaler.transform(_float64(embeddings))
    networks = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        for member in range(max(config.members, 1)):
            if checkpoint is not None:
                checkpoint()
            network = _mlp(config, config.epochs).set_params(random_state=config.seed + member)
            networks.append(network.fit(scaled, targets, sample_weight=weights))
    return Pipeline([("scaler", scaler), ("classifier", merge_networks(networks))])


def merge_networks(networks: list[MLPClassifier]) -> MLPClassifier:
    """One network computing the mean of the networks' logits: their hidden units side by side,
    output weights and biases divided by their number (softmax of the mean logit: the usual
    way to average an ensemble of classifiers in one graph)."""
    merged = networks[0]
    if len(networks) == 1:
        return merged
    count = float(len(networks))
    merged.coefs_ = [
        np.hstack([network.coefs_[0] for network in networks]),
        np.vstack([network.coefs_[1] for network in networks]) / count,
    ]
    merged.intercepts_ = [
        np.concatenate([network.intercepts_[0] for network in networks]),
        np.sum([network.intercepts_[1] for network in networks], axis=0) / count,
    ]
    merged.hidden_layer_sizes = (merged.coefs_[0].shape[1],)
    return merged


def finetune_head(
    base_files: dict[str, bytes],
    embeddings: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    config: HeadConfig | None = None,
) -> Pipeline:
    """The base version's head trained `config.finetune_epochs` more epochs on these rows.

    `base_files` are the files of a registry version (name -> bytes); its `head.json` gives the
    starting weights and is checked against its `classifier.onnx` when that file is there. The
    scaler stays the base's. Every class of the base must occur in `targets` (Adam restarts on
    these rows; a class with no row would only be pushed down): include a replay sample.
    """
    config = config or DEFAULT_HEAD
    if config.kind != "mlp":
        raise WarmStartError(f"a {config.kind} head cannot be fine-tuned; use kind='mlp'")
    head = load_head(base_files, config)
    classes = head.classes_
    missing = sorted(set(classes.tolist()) - set(np.asarray(targets).tolist()))
    if missing:
        raise WarmStartError(
            f"fine-tuning needs rows of every class; none of {missing} among {len(targets)} rows"
        )
    unknown = sorted(set(np.asarray(targets).tolist()) - set(classes.tolist()))
    if unknown:
        raise WarmStartError(f"classes {unknown} are not in the base head ({list(classes)})")
    if config.finetune_epochs == 0:
        return head
    scaled = head.named_steps["scaler"].transform(_float64(embeddings))
    network = head.named_steps["classifier"]
    # warm_start: `fit` keeps coefs_ and starts a fresh Adam on them; never stop early, so a
    # fine-tune costs exactly `finetune_epochs` passes over the rows given.
    network.set_params(
        warm_start=True,
        max_iter=config.finetune_epochs,
        n_iter_no_change=config.finetune_epochs + 1,
        learning_rate_init=config.finetune_learning_rate,
        batch_size=min(config.batch_size, len(targets)),
        alpha=config.alpha,
        random_state=config.seed,
    )
    base_coefs = [c.copy() for c in network.coefs_]
    base_intercepts = [b.copy() for b in network.intercepts_]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        network.fit(scaled, targets, sample_weight=weights)
    share = config.finetune_interpolation
    network.coefs_ = _between(base_coefs, network.coefs_, share)
    network.intercepts_ = _between(base_intercepts, network.intercepts_, share)
    return head


def _between(base: list[np.ndarray], tuned: list[np.ndarray], share: float) -> list[np.ndarray]:
    """Each array `share` of the way from the base's to the fine-tuned one (1: the fine-tuned)."""
    if share == 1.0:
        return tuned
    return [b + share * (t - b) for b, t in zip(base, tuned, strict=True)]


def export_head(head: Pipeline) -> dict[str, bytes]:
    """The head's files for a registry version: `classifier.onnx`, and `head.json` for an MLP."""
    from ctloop.export import head_to_onnx

    files = {CLASSIFIER_FILE: head_to_onnx(head)}
    if isinstance(head.named_steps["classifier"], MLPClassifier):
        files[HEAD_FILE] = head_json(head)
    return files


def head_json(head: Pipeline) -> bytes:
    """The MLP head's weights as JSON (float64 written exactly; about 110 kB at 128 units)."""
    scaler, network = head.named_steps["scaler"], head.named_steps["classifier"]
    document = {
        "format": HEAD_FORMAT,
        "classes": [str(label) for label in network.classes_],
        "activation": network.activation,
        "scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
        "layers": [
            {"weights": coef.tolist(), "bias": bias.tolist()}
            for coef, bias in zip(network.coefs_, network.intercepts_, strict=True)
        ],
    }
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()


def load_head(base_files: dict[str, bytes], config: HeadConfig | None = None) -> Pipeline:
    """The scikit-learn head described by a version's head.json (checked against its ONNX)."""
    config = config or DEFAULT_HEAD
    if HEAD_FILE not in base_files:
        raise WarmStartError(
            f"the base version has no {HEAD_FILE} (a head that cannot be fine-tuned, such as "
            "the SVC of versions trained before fine-tuning existed): train from scratch"
        )
    try:
        document = json.loads(base_files[HEAD_FILE])
    except ValueError as exc:
        raise WarmStartError(f"{HEAD_FILE} is not valid JSON ({exc})") from exc
    if document.get("format") != HEAD_FORMAT:
        raise WarmStartError(
            f"{HEAD_FILE} has format {document.get('format')!r}, not {HEAD_FORMAT}"
        )
    layers = document["layers"]
    if len(layers) != 2:
        raise WarmStartError(
            f"the base head has hidden layers {[len(x['bias']) for x in layers[:-1]]}; "
            "a fine-tune continues a network with one hidden layer: train from scratch"
        )
    head = _assemble(document, config)
    if CLASSIFIER_FILE in base_files:
        _check_against_onnx(head, base_files[CLASSIFIER_FILE])
    return head


def _assemble(document: dict, config: HeadConfig) -> Pipeline:
    """A fitted Pipeline with the document's weights: the network is initialised by a one-epoch
    fit on one zero row per class (shapes, classes, output activation), then its weights are
    replaced; the scaler's fitted statistics are set."""
    classes = np.array(document["classes"])
    mean = np.array(document["scaler"]["mean"], dtype=np.float64)
    scale = np.array(document["scaler"]["scale"], dtype=np.float64)
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.var_ = mean, scale, scale**2
    scaler.n_features_in_, scaler.n_samples_seen_ = len(mean), 1
    units = len(document["layers"][0]["bias"])  # the base's own width (members side by side)
    network = _mlp(config, 1, units).set_params(batch_size=len(classes))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        network.fit(np.zeros((len(classes), len(mean))), classes)
    network.coefs_ = [np.array(layer["weights"], np.float64) for layer in document["layers"]]
    network.intercepts_ = [np.array(layer["bias"], np.float64) for layer in document["layers"]]
    return Pipeline([("scaler", scaler), ("classifier", network)])


def _check_against_onnx(head: Pipeline, classifier_onnx: bytes) -> None:
    from ctloop.predict import Classifier

    probe = np.random.default_rng(0).normal(size=(16, len(head.named_steps["scaler"].mean_)))
    probe = (probe * head.named_steps["scaler"].scale_ + head.named_steps["scaler"].mean_).astype(
        np.float32
    )
    served = Classifier(classifier_onnx, [str(c) for c in head.classes_])(probe)[1]
    if np.abs(served - head.predict_proba(probe)).max() > 1e-4:
        raise WarmStartError(f"{HEAD_FILE} does not describe the version's {CLASSIFIER_FILE}")


def _float64(values: np.ndarray) -> np.ndarray:
    """Training runs in float64 (the export casts to float32), so head.json is exact."""
    return np.asarray(values, dtype=np.float64)


def _mlp(config: HeadConfig, epochs: int, units: int | None = None) -> MLPClassifier:
    return MLPClassifier(
        hidden_layer_sizes=(units or config.hidden_units,),
        activation="relu",
        solver="adam",
        learning_rate_init=config.learning_rate,
        batch_size=config.batch_size,
        alpha=config.alpha,
        max_iter=epochs,
        random_state=config.seed,
    )


def _fit_svc(
    embeddings: np.ndarray, targets: np.ndarray, weights: np.ndarray | None, config: HeadConfig
) -> Pipeline:
    """scikit-learn 1.9 deprecates SVC(probability=True) (removal in 1.11) in favour of
    CalibratedClassifierCV, which exports to a 332-node ONNX graph that takes 224 us per row
    against 46 us for this 3-node one (measured here). scikit-learn is pinned at 1.9.1."""
    head = Pipeline(
        [
            ("scaler", StandardScaler()),
            ("classifier", SVC(C=config.svc_c, probability=True, random_state=config.seed)),
        ]
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*`probability`", category=FutureWarning)
        head.fit(embeddings, targets, classifier__sample_weight=weights)
    return head

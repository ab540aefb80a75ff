"""Figures of the ML core: build + train time, held-out accuracy, ONNX vs scikit-learn latency.

    .venv/bin/python bench/core.py

Runs in a temporary folder; prints medians over repeated runs (this machine is shared and noisy).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ctloop.candidate import train_candidate
from ctloop.config import CoreSettings
from ctloop.predict import load_model
from ctloop.preprocess import preprocess
from ctloop.reference import build_reference
from ctloop.registry import ModelRegistry
from ctloop.retrain_set import load_training_set
from ctloop.train import fit_head


def median_us(function, repeat: int = 2000) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        function()
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        settings = CoreSettings(
            data_dir=Path(root) / "data", artifacts_dir=Path(root) / "artifacts"
        )
        started = time.perf_counter()
        build_reference(settings)
        built = time.perf_counter() - started
        outcome = train_candidate(settings, ModelRegistry(settings.artifacts_dir))
        total = time.perf_counter() - started
        print(
            f"build reference: {built:.2f} s; train + export + register: {outcome.seconds:.2f} s;"
        )
        print(f"  together {total:.2f} s (in process, imports excluded)")
        holdout = outcome.head.metrics["holdout"]
        print(
            f"held-out accuracy {holdout['accuracy']:.4f} on {holdout['rows']} rows, macro F1 "
            f"{holdout['macro_f1']:.4f}"
        )

        model = load_model(ModelRegistry(settings.artifacts_dir).load())
        training_set = load_training_set(settings)
        fit = ~training_set.holdout
        head = fit_head(training_set.embeddings[fit], training_set.targets[fit])
        row = training_set.embeddings[training_set.holdout][:1]
        sample = next(settings.samples_dir.rglob("*.png")).read_bytes()
        pixels = preprocess(sample).reshape(1, -1)
        onnx_head = median_us(lambda: model.classifier(row))
        sklearn_head = median_us(lambda: head.predict_proba(row), repeat=500)
        print(
            f"one row, classifier head: onnxruntime {onnx_head:.1f} us, scikit-learn predict_proba "
            f"{sklearn_head:.1f} us ({sklearn_head / onnx_head:.1f}x)"
        )
        print(
            f"one image, preprocess {median_us(lambda: preprocess(sample)):.1f} us; "
            f"embedding + head {median_us(lambda: model.predict_pixels(pixels)):.1f} us"
        )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()

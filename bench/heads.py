"""The two classifier heads side by side: held-out accuracy, ONNX latency and parity, sizes,
seconds to fit from scratch and to fine-tune (docs/studies/retraining.md).

    .venv/bin/python -m bench.heads

Builds the reference as `ctloop build-reference` does, in a temporary folder; medians over
repeated runs (the machine is shared).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.core import median_us
from bench.retrain_study_world import SVC_AUGMENT
from ctloop.augment import Augmentation, AugmentConfig
from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.head import HEAD_FILE, HeadConfig, load_head
from ctloop.predict import Classifier, PreprocessSpec
from ctloop.reference import build_reference
from ctloop.retrain_set import load_training_set
from ctloop.train import train_head


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        settings = CoreSettings(
            data_dir=Path(root) / "data", artifacts_dir=Path(root) / "artifacts"
        )
        build_reference(settings)
        stored = load_embedding(settings.embedding_dir)
        spec = PreprocessSpec.from_dict(stored.info["preprocessing"])
        training_set = load_training_set(settings)
        held = training_set.embeddings[training_set.holdout]
        rows = {}
        for name, config, augment in (
            ("5 MLPs merged, 8 reference copies (default)", HeadConfig(), AugmentConfig()),
            (
                "one MLP (lr 3e-3, 30 epochs, alpha 0.05), 8 reference copies: before",
                HeadConfig(members=1, learning_rate=3e-3, epochs=30, alpha=0.05),
                AugmentConfig(),
            ),
            ("MLP, no augmentation", HeadConfig(), None),
            ("SVC, 2 reference copies", HeadConfig(kind="svc"), SVC_AUGMENT),
            ("SVC, no augmentation", HeadConfig(kind="svc"), None),
        ):
            augmentation = Augmentation(stored.model, augment, 0, spec) if augment else None
            started = time.perf_counter()
            head = train_head(training_set, config, None, augmentation)
            seconds = time.perf_counter() - started
            classifier = Classifier(head.model, head.classes)
            row = held[:1]
            parity = None
            if HEAD_FILE in head.extra_files:
                sklearn = load_head(head.files, config)
                parity = float(np.abs(classifier(held)[1] - sklearn.predict_proba(held)).max())
            rows[name] = {
                "holdout": head.metrics["holdout"]["accuracy"],
                "onnx_us": median_us(lambda c=classifier, r=row: c(r)),
                "fit_s": seconds,
                "onnx_kb": len(head.model) / 1024,
                "json_kb": len(head.extra_files.get(HEAD_FILE, b"")) / 1024,
                "parity": parity,
                "files": head.files,
            }
        base = rows["5 MLPs merged, 8 reference copies (default)"]["files"]
        fine = training_set  # 1,149 reference rows: time a fine-tune on a window's worth
        rng = np.random.default_rng(0)
        chosen = rng.choice(np.flatnonzero(~fine.holdout), 192, replace=False)
        window = type(fine)(
            fine.embeddings[chosen],
            fine.targets[chosen],
            fine.is_prod[chosen],
            np.zeros(len(chosen), bool),
            fine.weights[chosen],
        )
        for augmented in (False, True):
            timings = []
            for _ in range(5):
                augmentation = (
                    Augmentation(stored.model, AugmentConfig(), 1, spec) if augmented else None
                )
                started = time.perf_counter()
                train_head(window, HeadConfig(), base, augmentation)
                timings.append(time.perf_counter() - started)
            print(
                f"fine-tune on 192 rows ({'8 copies each' if augmented else 'no copies'}), "
                f"export and parity included: {statistics.median(timings):.2f} s"
            )
    print(
        "\n| Head | Held-out acc. | ONNX us/row | Parity gap | Fit s | classifier.onnx kB |", end=""
    )
    print(" head.json kB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        parity = "n/a" if r["parity"] is None else f"{r['parity']:.1e}"
        print(
            f"| {name} | {r['holdout']:.3f} | {r['onnx_us']:.1f} | {parity} | {r['fit_s']:.1f} | "
            f"{r['onnx_kb']:.0f} | {r['json_kb']:.0f} |"
        )


if __name__ == "__main__":
    main()

"""How big the monitoring window W should be: false alarms on clean traffic against detection delay.

    .venv/bin/python -m bench.monitoring_window [--windows 20 40 60 100 150]

Builds the digits reference and a first model in a temporary folder, embeds the unseen images
(never in ref_data.csv) as the API would, clean and with the `slant` drift of the traffic
simulator, and for each W prints:

- the drift share (reporting.drift, the dashboard's test) of W clean rows, over random draws:
  median and maximum; the drift alert fires above 0.5;
- after a switch from clean to slanted traffic, how many slanted rows until the share of the
  latest W rows passes 0.5;
- the spread (standard deviation over random draws) of the windowed accuracy of clean traffic,
  which the quality alert compares with the held-out accuracy minus 0.05.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ctloop.candidate import train_candidate
from ctloop.config import CoreSettings
from ctloop.dataset import load_samples
from ctloop.predict import load_model
from ctloop.preprocess import preprocess, preprocess_many
from ctloop.reference import build_reference, read_reference
from ctloop.registry import ModelRegistry
from ctloop.tables import embedding_columns
from reporting.drift import embedding_drift
from reporting.settings import ReportingSettings
from traffic.drift import transformed_png


def embed(model, pngs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.stack([preprocess(png, model.spec) for png in pngs])
    embeddings, labels, _ = model.predict_pixels(pixels)
    return embeddings, np.asarray(labels).astype(str)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[20, 40, 60, 100, 150])
    parser.add_argument("--draws", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        core = CoreSettings(data_dir=Path(folder) / "data", artifacts_dir=Path(folder) / "art")
        build_reference(core)
        train_candidate(core, ModelRegistry(core.artifacts_dir))
        model = load_model(ModelRegistry(core.artifacts_dir).load())
        samples = load_samples(core.samples_dir)
        cells = preprocess_many(samples.images)
        truth = np.array(samples.labels)
        clean, clean_labels = embed(model, [transformed_png("clean", c, rng) for c in cells])
        slanted, _ = embed(model, [transformed_png("slant", c, rng) for c in cells])
        reference = read_reference(core.ref_data_path)
        columns = embedding_columns(reference.embeddings.shape[1])
        ref_frame = pd.DataFrame(reference.embeddings, columns=columns)
        settings = ReportingSettings(data_dir=core.data_dir)

        def share(rows: np.ndarray) -> float:
            frame = pd.DataFrame(rows, columns=columns)
            return embedding_drift(ref_frame, frame, columns, settings)["drift_share"]

        print(f"{len(clean)} unseen images; {len(reference.embeddings)} reference rows")
        print(f"{'W':>4} {'clean share med':>16} {'clean share max':>16} "
              f"{'rows to flag':>12} {'acc sd':>7}")  # fmt: skip
        for w in args.windows:
            shares, accuracies = [], []
            for _ in range(args.draws):
                pick = rng.choice(len(clean), size=w, replace=False)
                shares.append(share(clean[pick]))
                accuracies.append(float(np.mean(clean_labels[pick] == truth[pick])))
            order = rng.permutation(len(clean))
            stream = np.vstack([clean[order[:w]], slanted[order]])
            flagged = next(
                (n for n in range(5, len(order), 5) if share(stream[n : n + w]) > 0.5), None
            )
            print(
                f"{w:4} {statistics.median(shares):16.3f} {max(shares):16.3f} "
                f"{flagged if flagged is not None else 'n/a':>12} "
                f"{statistics.pstdev(accuracies):7.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

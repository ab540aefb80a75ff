"""/predict with a pretrained image encoder as the embedding (EMBEDDING_MODEL), against the PCA.

    .venv/bin/python -m bench.encoder [--requests 300] [--json FILE] [--encoder FILE ...]

The encoder has ResNet-18's layers and shapes with seeded random weights (harness.encoders): the
same arithmetic per image as the pretrained model the README exports, without a download. Its
accuracy means nothing and is not reported. The figures: `ctloop init`'s seconds, the embedding
graph's size, and /predict's latency through a real uvicorn (one worker, one client sending
requests one after another, keep-alive): median and 90th percentile, on scikit-image's LFW
subset (25 x 25 photographs, enlarged to the encoder's 224 x 224). `--encoder` measures ONNX
files of your own as well (an export of torchvision's MobileNetV3, say).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.own_data import stack
from harness.data import make_settings
from harness.datasets import lfw
from harness.encoders import resnet18_shaped
from harness.processes import LiveServer


def latency(
    settings_root: Path,
    image: bytes,
    requests: int,
    name: str = "face.png",
    kind: str = "image/png",
) -> dict:
    """Sequential /predict calls on one keep-alive connection, the file uploaded as `name`:
    milliseconds."""
    settings = make_settings(settings_root)
    with (
        LiveServer(settings, settings_root / "server.log") as server,
        httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as client,
    ):
        files = {"file": (name, image, kind)}
        for _ in range(10):  # warm-up: first sessions runs, allocator
            client.post("/predict", files=files).raise_for_status()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            client.post("/predict", files=files).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(times[int(0.9 * len(times))], 2),
        "requests": requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the figures there")
    parser.add_argument("--encoder", type=Path, nargs="*", default=[], help="ONNX encoders too")
    args = parser.parse_args(argv)
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="ctloop-encoder-") as folder:
        root = Path(folder)
        source = lfw(root / "datasets")
        image = sorted((Path(source) / "face").iterdir())[0].read_bytes()
        encoder = resnet18_shaped(root / "resnet18.onnx")
        runs = {
            "PCA of pixels (auto)": {},
            "ResNet-18-shaped encoder, 224 x 224": {"EMBEDDING_MODEL": str(encoder)},
            **{path.name: {"EMBEDDING_MODEL": str(path.resolve())} for path in args.encoder},
        }
        print(f"{'embedding':38} {'init s':>7} {'graph MB':>9} {'median ms':>10} {'p90 ms':>7}")
        for name, env in runs.items():
            work = root / f"run{len(figures)}"
            made = stack(source, work, env)
            if made["accuracy"] is None:
                raise SystemExit(f"{name}: ctloop init failed: {made['error']}")
            graph = (work / "artifacts" / "embedding" / "embedding.onnx").stat().st_size / 1e6
            timed = latency(work, image, args.requests)
            figures[name] = {"init_seconds": round(made["init_seconds"], 1), "graph_mb": graph}
            figures[name].update(timed)
            print(
                f"{name:38} {made['init_seconds']:7.1f} {graph:9.1f} "
                f"{timed['median_ms']:10.2f} {timed['p90_ms']:7.2f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

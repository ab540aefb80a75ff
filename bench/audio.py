"""What a sound costs: the preprocessing per format and /predict through a real uvicorn, against
a picture of the bundled digits; the spoken-digit model's accuracy on held-out recordings and on
voices and speeds it never heard.

    .venv/bin/python -m bench.audio [--requests 300] [--json FILE] [--output FILE]

Writes its figures into docs/benchmarks.md (the block between the `sounds` markers, which
`make bench` keeps), or into --output.

The sounds are harness.speech's (espeak-ng): the dataset of the tests at its full size (6 voices,
3 speeds, 3 pitches, with and without noise: 1,080 files), and the word "three" spoken by a voice
outside it, encoded as a client would send it. /predict: one client sending requests one after
another on a keep-alive connection (bench.encoder.latency), median and 90th percentile.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile

from bench.encoder import latency
from bench.own_data import stack
from bench.report import write_block
from ctloop.audio import AudioSpec, preprocess_audio
from ctloop.dataset import load_folder_dataset
from ctloop.media import preprocess_inputs
from ctloop.predict import load_model
from ctloop.registry import ModelRegistry
from harness.processes import REPO
from harness.speech import HELD_OUT_SPEEDS, HELD_OUT_VOICES, speak, write_spoken_digits


def inputs() -> dict[str, tuple[bytes, str, str]]:
    """Name -> (bytes, file name, media type): one spoken word as clients send it."""
    native = speak("three", HELD_OUT_VOICES[0], 160, 50)  # espeak-ng: 22,050 Hz mono WAV
    samples, _ = soundfile.read(io.BytesIO(native), dtype="float32")

    def encoded(values: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
        out = io.BytesIO()
        soundfile.write(out, values, rate, format=fmt, subtype=subtype)
        return out.getvalue()

    from scipy.signal import resample_poly

    cd = resample_poly(samples, 2, 1).astype(np.float32)  # 44,100 Hz
    stereo = np.stack([cd, 0.8 * cd], axis=1)
    three_seconds = np.pad(stereo, ((44_100, 44_100 * 3 - len(cd) - 44_100), (0, 0)))
    long = np.pad(resample_poly(samples, 320, 147).astype(np.float32), (48_000, 48_000 * 9))
    return {
        "WAV 1 s, 22.05 kHz mono (espeak)": (native, "three.wav", "audio/wav"),
        "WAV 3 s, 44.1 kHz stereo": (encoded(three_seconds, 44_100, "WAV"), "t.wav", "audio/wav"),
        "WAV 10 s, 48 kHz mono": (encoded(long, 48_000, "WAV"), "t.wav", "audio/wav"),
        "FLAC 3 s, 44.1 kHz stereo": (
            encoded(three_seconds, 44_100, "FLAC"),
            "t.flac",
            "audio/flac",
        ),
        "OGG Vorbis 3 s, 44.1 kHz stereo": (
            encoded(three_seconds, 44_100, "OGG", "VORBIS"),
            "t.ogg",
            "audio/ogg",
        ),
        "MP3 3 s, 44.1 kHz stereo": (encoded(three_seconds, 44_100, "MP3"), "t.mp3", "audio/mpeg"),
    }


def preprocessing_ms(data: bytes, runs: int = 100) -> float:
    """Median milliseconds of `preprocess_audio` in this process."""
    preprocess_audio(data, AudioSpec())
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        preprocess_audio(data, AudioSpec())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def outside_accuracy(work: Path, folder: Path) -> float:
    """The served version's accuracy on recordings by voices and at speeds it never heard."""
    registry = ModelRegistry(work / "artifacts")
    model = load_model(registry.load(registry.current_version() or "v0001"))
    dataset = load_folder_dataset(folder)
    _, labels, _ = model.predict_pixels(preprocess_inputs(dataset.inputs, model.spec))
    return float(np.mean(labels == np.array(dataset.labels)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", type=Path, help="also write the figures there")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    figures: dict = {"stacks": {}, "inputs": {}}
    with tempfile.TemporaryDirectory(prefix="ctloop-audio-") as folder:
        root = Path(folder)
        sounds, outside = root / "spoken", root / "outside"
        files = write_spoken_digits(sounds)
        write_spoken_digits(outside, HELD_OUT_VOICES, HELD_OUT_SPEEDS, (50,), noisy=False)
        for name, source in (("digits (pictures)", "digits"), ("spoken digits", str(sounds))):
            made = stack(source, root / name, {})
            if made["accuracy"] is None:
                raise SystemExit(f"{name}: ctloop init failed: {made['error']}")
            figures["stacks"][name] = {
                "init_seconds": round(made["init_seconds"], 1),
                "held_out_accuracy": made["accuracy"],
            }
        spoken = figures["stacks"]["spoken digits"]
        spoken["files"] = files
        spoken["outside_accuracy"] = round(outside_accuracy(root / "spoken digits", outside), 4)
        print(f"{'dataset':20} {'init s':>7} {'held-out':>9} {'outside':>8}")
        for name, row in figures["stacks"].items():
            print(
                f"{name:20} {row['init_seconds']:7.1f} {row['held_out_accuracy']:9.3f} "
                f"{row.get('outside_accuracy', float('nan')):8.3f}"
            )
        digit = sorted((root / "digits (pictures)" / "data" / "samples" / "3").iterdir())[0]
        runs = {"PNG 8 x 8 digit (picture model)": (digit.read_bytes(), "d.png", "image/png")}
        runs.update(inputs())
        print(
            f"\n{'input':34} {'bytes':>9} {'preprocess ms':>14} {'/predict median ms':>19} "
            f"{'p90 ms':>7}"
        )
        for name, (data, filename, kind) in runs.items():
            picture = kind.startswith("image/")
            work = root / ("digits (pictures)" if picture else "spoken digits")
            timed = latency(work, data, args.requests, filename, kind)
            row = {"bytes": len(data), **timed}
            if not picture:
                row["preprocess_ms"] = round(preprocessing_ms(data), 2)
            figures["inputs"][name] = row
            shown = f"{row['preprocess_ms']:14.2f}" if not picture else f"{'':>14}"
            print(
                f"{name:34} {len(data):9,} {shown} {timed['median_ms']:19.2f} "
                f"{timed['p90_ms']:7.2f}",
                flush=True,
            )
    figures["measured_at"] = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    figures["load_average"] = round(os.getloadavg()[0], 1)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    write_block(args.output, report(figures, args.requests), BEGIN, END)
    return 0


BEGIN, END = "<!-- sounds -->", "<!-- /sounds -->"


def report(figures: dict, requests: int) -> list[str]:
    spoken = figures["stacks"]["spoken digits"]
    rows = [
        f"| {name} | {row['bytes']:,} | "
        f"{'' if 'preprocess_ms' not in row else format(row['preprocess_ms'], '.2f')} | "
        f"{row['median_ms']:.2f} | {row['p90_ms']:.2f} |"
        for name, row in figures["inputs"].items()
    ]
    picture = next(row for name, row in figures["inputs"].items() if name.startswith("PNG"))
    second = next(row for name, row in figures["inputs"].items() if name.startswith("WAV 1 s"))
    return [
        BEGIN,
        "## Sounds",
        "",
        f"Measured {figures['measured_at']} by `python -m bench.audio` on {os.cpu_count()} cores "
        f"(load average {figures['load_average']} at the end). The preprocessing of one "
        "sound in process (median of 100), and /predict through a real uvicorn (one worker; one "
        f"client, {requests} requests one after another on a keep-alive connection), a sound "
        "decoded in a thread; the picture is the digits stack's, for comparison:",
        "",
        "| Input | Bytes | Preprocessing ms | /predict median ms | p90 ms |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"- A second of sound costs {second['median_ms'] / picture['median_ms']:.1f} times a "
        "digit's /predict (median); a sound's own cost is its decoding and resampling, which grow "
        "with its length and rate, not with the model.",
        f"- The spoken-digit model ({spoken['files']:,} files, `ctloop init` in "
        f"{spoken['init_seconds']} s): held-out accuracy {spoken['held_out_accuracy']:.3f}, and "
        f"{spoken['outside_accuracy']:.3f} on 40 recordings by voices and at speeds outside the "
        "dataset.",
        END,
    ]


if __name__ == "__main__":
    raise SystemExit(main())

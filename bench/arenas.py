"""How much memory a process keeps after decoding large images in threads, by glibc setting:
none, `malloc_trim(0)` after the decodes (what serving.decode_budget does), a fixed mmap
threshold of 1 MB (mallopt M_MMAP_THRESHOLD), MALLOC_ARENA_MAX=2 (mallopt M_ARENA_MAX).

    .venv/bin/python -m bench.arenas [--images 8] [--rounds 3]

Each setting runs in its own process: `rounds` times, `images` 4096 x 4096 RGBA PNGs are
preprocessed at once in as many threads; RSS is read half a second after each round.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SETTINGS = ("none", "malloc_trim", "mmap_threshold_1mb", "arena_max_2")
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_setting(setting: str, images: int, rounds: int) -> None:
    from ctloop.preprocess import open_image, preprocess_image
    from tests.support.attacks import big_rgba_png

    data = big_rgba_png()
    libc = ctypes.CDLL("libc.so.6")
    if setting == "mmap_threshold_1mb":
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    if setting == "arena_max_2":
        libc.mallopt(M_ARENA_MAX, 2)
    start = rss_mib()
    after = []
    for _ in range(rounds):
        with ThreadPoolExecutor(images) as pool:
            list(pool.map(lambda _: preprocess_image(open_image(data)), range(images)))
        if setting == "malloc_trim":
            libc.malloc_trim(0)
        time.sleep(0.5)
        after.append(rss_mib())
    rounds_text = " / ".join(f"{value:.0f}" for value in after)
    print(f"| {setting} | {start:.0f} | {rounds_text} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setting", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting:
        one_setting(args.setting, args.images, args.rounds)
        return
    print(f"| glibc setting | RSS at start (MB) | RSS after each of {args.rounds} rounds (MB) |")
    print("|---|---:|---:|", flush=True)
    for setting in SETTINGS:
        command = [sys.executable, "-m", "bench.arenas", "--setting", setting]
        command += ["--images", str(args.images), "--rounds", str(args.rounds)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()

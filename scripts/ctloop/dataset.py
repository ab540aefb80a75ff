"""The dataset: scikit-learn's bundled digits, or a folder with one sub-folder per class.

A folder holds pictures or sounds (its medium, ctloop.media), never both. Every input is kept as
encoded bytes, so the reference builder preprocesses it exactly as the API preprocesses an
upload. The split into reference and unseen parts is stratified and seeded.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ctloop.media import IMAGE, medium_of_file
from ctloop.util import fsync_dir
from pictures import encode, render_grid


@dataclass(frozen=True)
class Dataset:
    """Encoded inputs (image or sound files) with their class names, in a fixed order."""

    name: str
    inputs: list[bytes]
    labels: list[str]
    filenames: list[str]  # a file name for each input, unique within its class
    medium: str = IMAGE

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def classes(self) -> list[str]:
        """Sorted as strings, the order of the classifier's probability columns."""
        return sorted(set(self.labels))

    def fingerprint(self) -> str:
        """sha256 over labels and input bytes: equal fingerprints mean the same dataset."""
        digest = hashlib.sha256()
        for label, data in zip(self.labels, self.inputs, strict=True):
            digest.update(label.encode() + b"\0" + hashlib.sha256(data).digest())
        return digest.hexdigest()


def load_dataset(source: str) -> Dataset:
    """'digits' for scikit-learn's bundled set, otherwise a folder path."""
    if source == "digits":
        return load_digits_dataset()
    return load_folder_dataset(Path(source))


def load_digits_dataset() -> Dataset:
    """The 1,797 8x8 digits (grey levels 0..16) as 8x8 PNGs, light ink on a dark background."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return Dataset(
        name="digits",
        inputs=[encode(render_grid(row / 16.0)) for row in digits.data],
        labels=[str(int(target)) for target in digits.target],
        filenames=[f"digit-{index:04d}.png" for index in range(len(digits.target))],
    )


def load_folder_dataset(root: Path) -> Dataset:
    """Images or sounds under root/<class>/, in sorted order; hidden files and other suffixes
    are skipped; a folder holding both media is refused (one model reads one medium)."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset folder {root} does not exist (DATASET=digits or a folder)"
        )
    inputs, labels, filenames = [], [], []
    media: dict[str, str] = {}  # medium -> its first file
    for class_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        if class_dir.name.startswith("."):
            continue
        for path in sorted(class_dir.iterdir()):
            medium = medium_of_file(path.name)
            if medium is None or not path.is_file() or path.name.startswith("."):
                continue
            media.setdefault(medium, f"{class_dir.name}/{path.name}")
            inputs.append(path.read_bytes())
            labels.append(class_dir.name)
            filenames.append(path.name)
    if len(media) > 1:
        found = ", ".join(f"{medium} ({first})" for medium, first in sorted(media.items()))
        raise ValueError(
            f"dataset folder {root} mixes media: {found}; a dataset holds images or sounds"
        )
    if len(set(labels)) < 2:
        raise ValueError(
            f"dataset folder {root} needs at least two class sub-folders with images or sounds"
        )
    return Dataset(
        name=str(root), inputs=inputs, labels=labels, filenames=filenames, medium=next(iter(media))
    )


def split_reference_unseen(
    labels: list[str], unseen_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the reference part and of the unseen part, stratified by class, sorted."""
    indices = np.arange(len(labels))
    reference, unseen = train_test_split(
        indices, test_size=unseen_fraction, stratify=labels, random_state=seed
    )
    return np.sort(reference), np.sort(unseen)


def write_samples(dataset: Dataset, indices: np.ndarray, samples_dir: Path) -> None:
    """Write the unseen inputs as files under samples_dir/<class>/, replacing the folder whole."""
    staging = samples_dir.with_name(f".{samples_dir.name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    for index in indices:
        class_dir = staging / dataset.labels[index]
        class_dir.mkdir(parents=True, exist_ok=True)
        (class_dir / dataset.filenames[index]).write_bytes(dataset.inputs[index])
    previous = samples_dir.with_name(f".{samples_dir.name}.previous")
    if previous.exists():
        shutil.rmtree(previous)
    if samples_dir.exists():
        samples_dir.rename(previous)
    staging.rename(samples_dir)
    fsync_dir(samples_dir.parent)
    if previous.exists():
        shutil.rmtree(previous)


def load_samples(samples_dir: Path) -> Dataset:
    """The unseen inputs written by `write_samples`."""
    dataset = load_folder_dataset(samples_dir)
    return Dataset(
        name="samples",
        inputs=dataset.inputs,
        labels=dataset.labels,
        filenames=dataset.filenames,
        medium=dataset.medium,
    )

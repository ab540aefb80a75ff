"""The reference data: dataset -> split -> preprocess -> fit embedding -> data/ref_data.csv.

The one module that writes and reads data/ref_data.csv and data/reference.json. Also where an
upgrade is checked: a stored reference built with another preprocessing, embedding size or
dataset than this code would build (`check_reference`), and a model whose training rows were
embedded differently from the rows at hand (`embedding_mismatch`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctloop.audio import AudioSpec
from ctloop.augment import embedding_fit, embedding_fit_pixels
from ctloop.choose import FIELDS, audio_choice, chosen_settings, requested, resolve
from ctloop.config import AUTO, CoreSettings
from ctloop.dataset import Dataset, load_dataset, split_reference_unseen, write_samples
from ctloop.embed import EmbeddingError, fit_embedding, load_embedding, save_embedding
from ctloop.encoder import BATCH, components, embedding_graph, encode, features_graph, load_encoder
from ctloop.media import AUDIO, IMAGE, Limits, Spec, preprocess_input, spec_from_dict
from ctloop.predict import Embedding
from ctloop.preprocess import PreprocessSpec
from ctloop.prod_data import open_production
from ctloop.tables import Table, TableError, embedding_row, format_row, parse_table, ref_header
from ctloop.util import InputError, sha256_hex, write_atomic

if TYPE_CHECKING:
    from sklearn.decomposition import PCA


class ReferenceMissingError(TableError):
    """ref_data.csv is missing or has no rows: build the reference first."""


class ReferenceConflictError(RuntimeError):
    """Rebuilding would put production rows and reference rows in different embedding spaces."""


def build_reference(settings: CoreSettings, force: bool = False) -> dict:
    """Write ref_data.csv, samples/, reference.json and the embedding; return what was written.

    Preprocessing settings left at `auto` are chosen first, by measurement (ctloop.choose); with
    EMBEDDING_MODEL the encoder's input decides them (ctloop.encoder)."""
    dataset = load_dataset(settings.dataset)
    reference_idx, unseen_idx = split_reference_unseen(
        dataset.labels, settings.unseen_fraction, settings.split_seed
    )
    labels = [dataset.labels[i] for i in reference_idx]
    if settings.embedding_model and dataset.medium != IMAGE:
        raise ValueError(
            f"EMBEDDING_MODEL reads pictures; {dataset.name} holds {dataset.medium} files: leave "
            "EMBEDDING_MODEL empty"
        )
    if settings.embedding_model:
        built = _encoder_embedding(settings, dataset, reference_idx)
    else:
        built = _pca_embedding(settings, dataset, reference_idx, labels)
    csv_bytes = ref_csv_bytes(built.embeddings, labels)
    embedding_sha = sha256_hex(built.model)
    _refuse_space_change(settings, embedding_sha, built.spec, force)

    info = {
        "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint(),
        "medium": dataset.medium,
        "classes": dataset.classes,
        "split": {"seed": settings.split_seed, "unseen_fraction": settings.unseen_fraction},
        "reference_rows": len(reference_idx),
        "unseen_rows": len(unseen_idx),
        "reference_rows_per_class": dict(sorted(Counter(labels).items())),
        "preprocessing": built.spec.to_dict(),
        "n_components": int(built.pca.n_components_),
        # the sweep's record, without its time: a rebuild writes the same bytes
        "choice": {key: value for key, value in built.choice.items() if key != "seconds"},
        "embedding_fit": built.fit,
        "explained_variance": round(float(built.pca.explained_variance_ratio_.sum()), 6),
        "ref_data_sha256": sha256_hex(csv_bytes),
    }
    if built.encoder is not None:
        info["encoder"] = built.encoder
    save_embedding(settings.embedding_dir, built.model, info)
    write_atomic(settings.ref_data_path, csv_bytes)
    write_samples(dataset, unseen_idx, settings.samples_dir)
    info["embedding_sha256"] = embedding_sha
    write_atomic(settings.reference_info_path, (json.dumps(info, indent=2) + "\n").encode())
    return info


@dataclass(frozen=True)
class _Built:
    """An embedding fitted on the reference, and the reference's rows through it."""

    spec: Spec
    model: bytes
    pca: PCA
    embeddings: np.ndarray
    choice: dict
    fit: dict
    encoder: dict | None = None


def _pca_embedding(
    settings: CoreSettings, dataset: Dataset, indices: np.ndarray, labels: list[str]
) -> _Built:
    """A PCA of the pixels (of a picture, or of a sound's spectrogram), the preprocessing and
    its size chosen where they are `auto`."""
    fit: dict
    if dataset.medium == AUDIO:
        choice = audio_choice(settings)
        components = int(choice["chosen"]["components"])
        spec: Spec = audio_spec(settings)
        fit = {"augmented_copies": 0}  # the transformations are a pen's
    else:
        choice = resolve(settings, dataset)
        settings = chosen_settings(settings, choice)
        components = int(settings.pca_components)
        spec = preprocess_spec(settings)
        fit = embedding_fit(settings)
    pixels = _preprocess_dataset(dataset, indices, spec, Limits.from_settings(settings))
    fit_rows = (
        pixels if isinstance(spec, AudioSpec) else embedding_fit_pixels(pixels, labels, fit, spec)
    )
    pca, model = fit_embedding(fit_rows, components)
    return _Built(spec, model, pca, Embedding(model, threads=0)(pixels), choice, fit)


def _encoder_embedding(settings: CoreSettings, dataset: Dataset, indices: np.ndarray) -> _Built:
    """EMBEDDING_MODEL's pooled features, a PCA fitted on top; images encoded a batch at a time
    (a 224 x 224 colour image is 600 kB of floats)."""
    from sklearn.decomposition import PCA

    from ctloop.export import embedding_to_onnx  # scikit-learn -> ONNX: init only

    encoder = load_encoder(settings)
    spec = encoder.spec()
    fixed = {
        "framing": "whole",
        "size": encoder.size,
        "channels": 3,
        "components": settings.pca_components,
    }
    for name, value in fixed.items():
        asked = getattr(settings, FIELDS[name])
        if name != "components" and asked not in (AUTO, value):
            raise ValueError(
                f"{FIELDS[name].upper()}={asked}, but EMBEDDING_MODEL takes {value}: leave it "
                "at auto"
            )
    features_model = features_graph(encoder)
    limit = Limits.from_settings(settings)
    batches = (
        _preprocess_dataset(dataset, indices[start : start + BATCH], spec, limit)
        for start in range(0, len(indices), BATCH)
    )
    features = encode(features_model, batches)
    n = components(settings, len(features), features.shape[1])
    pca = PCA(n_components=n, svd_solver="full").fit(features)
    model = embedding_graph(features_model, pca)
    embeddings = Embedding(embedding_to_onnx(pca), threads=0)(features)  # the graph's own tail
    choice = {
        "requested": requested(settings),
        "chosen": {**fixed, "components": n},
        "why": f"EMBEDDING_MODEL={encoder.name} takes {encoder.size} x {encoder.size} colour "
        "images",
    }
    return _Built(spec, model, pca, embeddings, choice, {"augmented_copies": 0}, encoder.info())


def preprocess_spec(settings: CoreSettings) -> PreprocessSpec:
    """The preprocessing these settings ask for (IMAGE_SIZE, IMAGE_FRAMING, IMAGE_CHANNELS),
    once none of them is `auto` (`ctloop.choose.chosen_settings`)."""
    if AUTO in (settings.image_size, settings.image_framing, settings.image_channels):
        raise ValueError("IMAGE_SIZE, IMAGE_FRAMING, IMAGE_CHANNELS: resolve 'auto' first")
    try:
        return PreprocessSpec(
            size=int(settings.image_size),
            framing=str(settings.image_framing),
            channels=int(settings.image_channels),
        )
    except ValueError as exc:
        raise ValueError(f"IMAGE_FRAMING / IMAGE_CHANNELS: {exc}") from None


def audio_spec(settings: CoreSettings) -> AudioSpec:
    """The audio preprocessing these settings ask for (AUDIO_SECONDS)."""
    return AudioSpec(seconds=settings.audio_seconds)


def build_spec(settings: CoreSettings, medium: str) -> Spec:
    """What this code would build a dataset of `medium` with, `auto` resolved."""
    return audio_spec(settings) if medium == AUDIO else preprocess_spec(settings)


def _preprocess_dataset(
    dataset: Dataset, indices: np.ndarray, spec: Spec, limits: Limits
) -> np.ndarray:
    pixels = np.empty((len(indices), spec.n_pixels), dtype=np.float32)
    for row, index in enumerate(indices):
        try:
            pixels[row] = preprocess_input(dataset.inputs[index], spec, limits)
        except InputError as exc:
            raise type(exc)(
                f"dataset file {dataset.labels[index]}/{dataset.filenames[index]}: {exc}"
            ) from exc
    return pixels


def _refuse_space_change(
    settings: CoreSettings, embedding_sha: str, spec: Spec, force: bool
) -> None:
    """Production rows were embedded by the stored embedding after the stored preprocessing;
    another embedding or preprocessing would put new rows in another space than theirs."""
    try:
        stored = load_embedding(settings.embedding_dir)
    except EmbeddingError:
        return
    changes = _differences(stored.info, spec, embedding_sha=embedding_sha)
    if not changes or force:
        return
    production = open_production(settings, int(stored.info["n_components"]))
    if production.count_rows_on_disk() > 0:
        raise ReferenceConflictError(
            f"{settings.prod_data_path} holds rows embedded with the stored embedding "
            f"{stored.sha256[:12]} and its preprocessing; this build changes {'; '.join(changes)}: "
            "move prod_data.csv away or pass --force"
        )


def embedding_mismatch(manifest: dict, embedding_info: dict) -> str | None:
    """Why rows embedded by `embedding_info` (artifacts/embedding/embedding.json, i.e. the rows
    of ref_data.csv and prod_data.csv) must not be fed to the model of `manifest`, or None.

    The trainer calls this before fine-tuning a base version on those rows."""
    reasons = []
    trained_sha = (manifest.get("embedding") or {}).get("sha256")
    if trained_sha != embedding_info.get("sha256"):
        reasons.append(
            f"embedding {str(trained_sha)[:12]} (model) != {str(embedding_info.get('sha256'))[:12]}"
            " (rows)"
        )
    trained = spec_from_dict(manifest.get("preprocessing") or {})
    rows = spec_from_dict(embedding_info.get("preprocessing") or {})
    reasons += _spec_changes(trained, rows)
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class ReferenceCheck:
    """What `check_reference` found and did."""

    action: str  # "unchanged", "rebuilt" or "kept"
    message: str

    @property
    def rebuilt(self) -> bool:
        return self.action == "rebuilt"


def check_reference(settings: CoreSettings) -> ReferenceCheck:
    """On an existing deployment (`ctloop init`): is the stored reference what this version
    of the code and these settings build (preprocessing, embedding size, dataset)?

    - yes: nothing to do;
    - no, and prod_data.csv is empty: rebuild the reference (the caller trains and serves a
      model on it);
    - no, and production rows exist: keep everything as it is. Those rows were embedded the
      stored way and cannot be embedded again (their images are not kept); the served model
      and every retrain keep the stored preprocessing, which each manifest records. The message
      says what differs and how to adopt the new preprocessing.
    """
    stored = load_embedding(settings.embedding_dir)
    settings = as_stored(settings, stored.info)
    medium = stored.info.get("medium", IMAGE)
    changes = _differences(stored.info, build_spec(settings, medium), settings=settings)
    if not changes:
        return ReferenceCheck("unchanged", "reference data present and up to date")
    what = "; ".join(changes)
    rows = open_production(settings, int(stored.info["n_components"])).count_rows_on_disk()
    if rows == 0:
        build_reference(settings, force=True)
        return ReferenceCheck(
            "rebuilt",
            f"reference rebuilt: this version builds it differently ({what}) and "
            f"{settings.prod_data_path} has no rows embedded the old way",
        )
    return ReferenceCheck(
        "kept",
        f"reference kept as stored, not rebuilt: this version would build it differently "
        f"({what}), but {settings.prod_data_path} holds {rows} rows embedded the stored way, "
        "and a model is never fed rows embedded differently from its training rows. The served "
        "model and retrains keep the stored preprocessing. To adopt the new one, move "
        "prod_data.csv aside and run `ctloop init` again.",
    )


def as_stored(settings: CoreSettings, info: dict) -> CoreSettings:
    """The settings with `auto` replaced by what the stored reference was built with: an
    automatic choice stands until the reference is built again (another dataset, or a setting
    fixed to another value)."""
    stored = spec_from_dict(info.get("preprocessing") or {})
    built = {"pca_components": info.get("n_components")}
    if isinstance(stored, PreprocessSpec):
        built |= {
            "image_framing": stored.framing,
            "image_size": stored.size,
            "image_channels": stored.channels,
        }
    return settings.model_copy(
        update={key: value for key, value in built.items() if getattr(settings, key) == AUTO}
    )


def _differences(
    info: dict,
    spec: Spec,
    settings: CoreSettings | None = None,
    embedding_sha: str | None = None,
) -> list[str]:
    """What differs between a stored reference description and a new build."""
    changes = _spec_changes(spec_from_dict(info.get("preprocessing") or {}), spec)
    if embedding_sha is not None and embedding_sha != info.get("sha256"):
        changes.append(f"embedding {str(info.get('sha256'))[:12]} -> {embedding_sha[:12]}")
    if settings is not None:
        stored_fit = info.get("embedding_fit") or {"augmented_copies": 0}
        if stored_fit != embedding_fit(settings):
            changes.append(
                f"embedding fitted on {stored_fit['augmented_copies']} -> "
                f"{embedding_fit(settings)['augmented_copies']} augmented copies per image "
                "(or other bounds)"
            )
        if info.get("n_components") != settings.pca_components:
            changes.append(
                f"PCA_COMPONENTS {info.get('n_components')} -> {settings.pca_components}"
            )
        stored_encoder = (info.get("encoder") or {}).get("sha256")
        encoder = load_encoder(settings).sha256 if settings.embedding_model else None
        if stored_encoder != encoder:
            changes.append(f"encoder {str(stored_encoder)[:12]} -> {str(encoder)[:12]}")
        dataset = load_dataset(settings.dataset)
        if info.get("dataset_fingerprint") != dataset.fingerprint():
            changes.append(f"dataset {info.get('dataset')} -> {dataset.name} (other files)")
    return changes


def _spec_changes(old: Spec, new: Spec) -> list[str]:
    before, after = old.to_dict(), new.to_dict()
    if before["medium"] != after["medium"]:
        return [f"preprocessing medium {before['medium']} -> {after['medium']}"]
    return [
        f"preprocessing {key} {before[key]} -> {after[key]}"
        for key in after
        if before.get(key) != after[key]
    ]


def reference_is_complete(settings: CoreSettings) -> bool:
    """ref_data.csv, samples and an embedding that belong together (False after a crash)."""
    try:
        stored = load_embedding(settings.embedding_dir)
        ref_bytes = settings.ref_data_path.read_bytes()
        info = read_reference_info(settings.reference_info_path)
    except (EmbeddingError, FileNotFoundError, ValueError):
        return False
    return (
        sha256_hex(ref_bytes) == stored.info["ref_data_sha256"]
        and info.get("embedding_sha256") == stored.sha256
        and settings.samples_dir.is_dir()
    )


def read_reference_info(path: Path) -> dict:
    return json.loads(path.read_text())


def ref_csv_bytes(embeddings: np.ndarray, labels: list[str]) -> bytes:
    """The whole ref_data.csv for these embedding rows and labels."""
    lines = [format_row(ref_header(embeddings.shape[1]))]
    lines += [
        embedding_row(vector, [label]) for vector, label in zip(embeddings, labels, strict=True)
    ]
    return b"".join(lines)


def read_reference(path: Path) -> Table:
    """Every row of ref_data.csv; TableError when it is missing, empty or malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReferenceMissingError(
            f"{path} is missing: run `python -m ctloop build-reference` first"
        ) from None
    table = parse_table(data.splitlines(), path)
    if len(table) == 0:
        raise ReferenceMissingError(
            f"{path} has no rows: run `python -m ctloop build-reference` first"
        )
    return table

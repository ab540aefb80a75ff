"""Augmentation at training time: transformed copies of digits, in memory only.

Two sources, one set of transformations:

- reference images: their preprocessed pixels (`augment_reference`);
- feedback rows, whose images are not stored: each embedding is mapped back to pixels through the
  embedding's own inverse (PCA: pixels ~ embedding @ components + mean, read from the embedding
  graph's initializers), transformed, and embedded again (`augment_embeddings`).

A copy is the 8 x 8 digit drawn at `RENDER_SCALE` pixels per cell, rotated, slanted, shifted
and drawn with a wider or finer pen at random within the configured bounds, then put through
**the** preprocessing (`ctloop.preprocess.preprocess_image`), exactly as an uploaded picture is.
Nothing here is written to disk: `ref_data.csv` and the embedding are unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter

from ctloop.media import spec_from_dict
from ctloop.preprocess import BlankImageError, PreprocessSpec, preprocess_image
from pictures import moved_sideways, render_grid

if TYPE_CHECKING:
    from ctloop.config import CoreSettings
    from ctloop.embed import StoredEmbedding
    from ctloop.training_set import TrainingSet

RENDER_SCALE = 4  # pixels per cell of the 8 x 8 grid while transforming (32 x 32 for digits)


@dataclass(frozen=True)
class AugmentConfig:
    """How many transformed copies of each row, and how far a copy may be transformed.

    Defaults measured in docs/studies/retraining.md.
    """

    reference_copies: int = 8  # copies of each reference row (0: reference not augmented)
    feedback_copies: int = 8  # copies of each production row (0: feedback not augmented)
    embedding_copies: int = 8  # copies of each reference image the PCA is fitted on (build)
    max_rotation: float = 15.0  # degrees, either way
    max_shear: float = 0.3  # horizontal shear (a slanted hand), either way
    max_shift: int = 1  # pixels at the render scale, each axis, ink pushed out of frame is lost
    # Share of copies also moved one whole cell sideways (left or right; ink pushed past the
    # frame is lost): a digit written off its guide (the traffic simulator's `shift`).
    # `side_shift` for a head trained on the reference alone (the first model), and
    # `retrain_side_shift` once production rows are in the training set.
    side_shift: float = 0.0
    retrain_side_shift: float = 0.25
    max_stretch: float = 0.0  # width scaled by a factor in [1 - s, 1 + s] (a narrower hand)
    elastic: float = 1.0  # elastic distortion (Simard et al. 2003): largest shift, in cells
    pen_widths: tuple[int, ...] = (-1, 0, 0, 1, 2)  # pen change in pixels, one drawn per copy

    def to_dict(self) -> dict:
        return {**asdict(self), "pen_widths": list(self.pen_widths)}

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        known = {key: values[key] for key in cls.__dataclass_fields__ if key in values}
        if "pen_widths" in known:
            known["pen_widths"] = tuple(int(width) for width in known["pen_widths"])
        return cls(**known)

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> AugmentConfig:
        """AUGMENT_REFERENCE_COPIES and AUGMENT_FEEDBACK_COPIES; the bounds are the defaults."""
        return cls(
            reference_copies=settings.augment_reference_copies,
            feedback_copies=settings.augment_feedback_copies,
            embedding_copies=settings.augment_embedding_copies,
        )

    @property
    def enabled(self) -> bool:
        return self.reference_copies > 0 or self.feedback_copies > 0


NO_AUGMENTATION = AugmentConfig(reference_copies=0, feedback_copies=0, embedding_copies=0)


def embedding_fit(settings: CoreSettings) -> dict:
    """What the PCA is fitted on besides the reference images: transformed copies of them
    (AUGMENT_EMBEDDING_COPIES per image, seeded), so that its components also span the ways
    people's digits differ from the dataset's. Recorded in embedding.json."""
    config = AugmentConfig.from_settings(settings)
    if config.embedding_copies == 0 or settings.image_framing != "strokes":
        return {"augmented_copies": 0}  # the transformations are a pen's: strokes only
    bounds = {k: v for k, v in config.to_dict().items() if not k.endswith("_copies")}
    return {"augmented_copies": config.embedding_copies, "seed": settings.split_seed, **bounds}


def embedding_fit_pixels(
    pixels: np.ndarray, labels: list[str], fit: dict, spec: PreprocessSpec
) -> np.ndarray:
    """The pixels the PCA is fitted on: the reference images and, per `fit`, their copies."""
    if fit["augmented_copies"] == 0:
        return pixels
    config = AugmentConfig.from_dict(fit)
    copies, _ = augment_pixels(
        pixels, np.array(labels), fit["augmented_copies"], config, fit["seed"], spec
    )
    return np.vstack([pixels, copies])


@dataclass(frozen=True)
class Augmentation:
    """What `train_head` needs to augment: the embedding (for its inverse), the preprocessing
    its rows were made with, bounds, a seed."""

    embedding_model: bytes
    config: AugmentConfig
    seed: int = 0
    spec: PreprocessSpec | None = None  # None: the default preprocessing

    @classmethod
    def from_settings(
        cls, settings: CoreSettings, embedding: StoredEmbedding, seed: int = 0
    ) -> Augmentation | None:
        """None when the settings turn augmentation off. The preprocessing is the embedding's
        own (recorded when the reference was built), so copies are made like its rows."""
        config = AugmentConfig.from_settings(settings)
        spec = spec_from_dict(embedding.info["preprocessing"])
        if not (config.enabled and isinstance(spec, PreprocessSpec) and spec.framing == "strokes"):
            return None  # rotated, slanted, other pens: a pen's strokes only
        return cls(embedding.model, config, seed, spec)


def augment_pixels(
    pixels: np.ndarray,
    labels: np.ndarray,
    copies: int,
    config: AugmentConfig,
    seed: int,
    spec: PreprocessSpec | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`copies` transformed copies of each preprocessed row: (copies * rows, n_pixels), labels.

    Row i's copies are rows i*copies .. i*copies + copies - 1. Deterministic for a given seed.
    """
    spec = spec or PreprocessSpec(size=round(np.sqrt(pixels.shape[1])))
    rng = np.random.default_rng(seed)
    out = np.empty((len(pixels) * copies, pixels.shape[1]), dtype=np.float32)
    for row, cells in enumerate(np.asarray(pixels, dtype=np.float32)):
        picture = render_grid(cells, RENDER_SCALE)
        for copy in range(copies):
            out[row * copies + copy] = _transformed(picture, cells, config, rng, spec)
    return out, np.repeat(np.asarray(labels), copies)


def augment_embeddings(
    embeddings: np.ndarray,
    labels: np.ndarray,
    embedding_model: bytes,
    config: AugmentConfig,
    seed: int,
    copies: int | None = None,
    spec: PreprocessSpec | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Transformed copies of embedding rows whose images are gone (feedback rows).

    inverse PCA -> 8 x 8 -> transform -> preprocess -> embed; `copies` defaults to
    `config.feedback_copies`. Returns (copies * rows, n) embeddings and their labels.
    """
    from ctloop.predict import Embedding

    copies = config.feedback_copies if copies is None else copies
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if copies == 0 or len(embeddings) == 0:
        return np.empty((0, embeddings.shape[1]), np.float32), np.asarray(labels)[:0]
    inverse = EmbeddingInverse.from_model(embedding_model)
    pixels, repeated = augment_pixels(inverse(embeddings), labels, copies, config, seed, spec)
    return Embedding(embedding_model, threads=0)(pixels), repeated


def augment_training_set(
    training_set: TrainingSet,
    embedding_model: bytes,
    config: AugmentConfig,
    seed: int,
    spec: PreprocessSpec | None = None,
) -> TrainingSet:
    """The training set plus transformed copies of its rows that are not held out.

    Reference rows get `config.reference_copies` copies, production rows
    `config.feedback_copies`, each with its source row's weight; copies are never held out
    (so the gate and the held-out metrics see only real rows) and are flagged `augmented`.
    Both go through the embedding's inverse: measured as accurate as re-rendering the
    reference images themselves (docs/studies/retraining.md).
    """
    parts = [training_set]
    if training_set.prod_rows:
        config = replace(config, side_shift=config.retrain_side_shift)
    for is_prod, copies, offset in (
        (False, config.reference_copies, 0),
        (True, config.feedback_copies, 1),
    ):
        rows = np.flatnonzero(~training_set.holdout & (training_set.is_prod == is_prod))
        if copies == 0 or len(rows) == 0:
            continue
        embeddings, labels = augment_embeddings(
            training_set.embeddings[rows],
            training_set.targets[rows],
            embedding_model,
            config,
            seed=seed * 2 + offset,
            copies=copies,
            spec=spec,
        )
        n = len(labels)
        parts.append(
            replace(
                training_set,
                embeddings=embeddings,
                targets=labels.astype(str),
                is_prod=np.full(n, is_prod),
                holdout=np.zeros(n, dtype=bool),
                weights=np.repeat(training_set.weights[rows], copies),
                augmented=np.ones(n, dtype=bool),
            )
        )
    if len(parts) == 1:
        return training_set
    return replace(
        training_set,
        embeddings=np.concatenate([p.embeddings for p in parts]).astype(np.float32),
        targets=np.concatenate([p.targets for p in parts]),
        is_prod=np.concatenate([p.is_prod for p in parts]),
        holdout=np.concatenate([p.holdout for p in parts]),
        weights=np.concatenate([p.weights for p in parts]),
        augmented=np.concatenate([p.augmented_mask() for p in parts]),
    )


@dataclass(frozen=True)
class EmbeddingInverse:
    """pixels ~ embedding @ components + mean, clipped to [0, 1] (the PCA's inverse transform)."""

    components: np.ndarray  # (n, n_pixels)
    mean: np.ndarray  # (n_pixels,)

    @classmethod
    def from_model(cls, embedding_model: bytes) -> EmbeddingInverse:
        """Read the PCA from the embedding graph (its `transform_matrix` and `mean`
        initializers, as skl2onnx writes a PCA without whitening) and check it is one."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load_from_string(embedding_model).graph
        found = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        if set(found) != {"transform_matrix", "mean"} or [n.op_type for n in graph.node] != [
            "Sub",
            "MatMul",
            "Cast",
        ]:
            raise ValueError("the embedding graph is not a PCA without whitening: no inverse")
        components = found["transform_matrix"].T.astype(np.float32)
        gram = components @ components.T
        if not np.allclose(gram, np.eye(len(gram)), atol=1e-4):
            raise ValueError("the embedding's components are not orthonormal: no inverse")
        return cls(components=components, mean=found["mean"].astype(np.float32).reshape(-1))

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        pixels = np.asarray(embeddings, dtype=np.float32) @ self.components + self.mean
        return np.clip(pixels, 0.0, 1.0)


def _transformed(
    picture: Image.Image,
    cells: np.ndarray,
    config: AugmentConfig,
    rng: np.random.Generator,
    spec: PreprocessSpec,
) -> np.ndarray:
    angle = float(rng.uniform(-config.max_rotation, config.max_rotation))
    shear = float(rng.uniform(-config.max_shear, config.max_shear))
    dx, dy = (int(v) for v in rng.integers(-config.max_shift, config.max_shift + 1, size=2))
    stretch = float(rng.uniform(1 - config.max_stretch, 1 + config.max_stretch))
    pen = int(rng.choice(config.pen_widths)) if config.pen_widths else 0
    side = picture.width
    # One affine map (inverse, output -> input): rotation about the centre, shear, stretch,
    # shift: input = R(angle) . Shear . Stretch^-1 . (output - centre - shift) + centre.
    radians = np.deg2rad(angle)
    cos, sin = np.cos(radians), np.sin(radians)
    a, b = cos / stretch, sin + shear * cos
    d, e = -sin / stretch, cos - shear * sin
    centre = side / 2.0
    c = centre - a * (centre + dx) - b * (centre + dy)
    f = centre - d * (centre + dx) - e * (centre + dy)
    moved = picture.transform(
        picture.size, Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR
    )
    if config.elastic > 0:
        moved = _elastic(moved, config.elastic * RENDER_SCALE, rng)
    if config.side_shift > 0 and rng.random() < config.side_shift:
        moved = moved_sideways(moved, RENDER_SCALE * int(rng.choice([-1, 1])))
    if pen > 0:
        moved = moved.filter(ImageFilter.MaxFilter(2 * pen + 1))
    elif pen < 0:
        moved = moved.filter(ImageFilter.MinFilter(-2 * pen + 1))
    try:
        return preprocess_image(moved, spec)
    except BlankImageError:  # a thin stroke eroded away: keep the digit as it was
        return cells


def _elastic(picture: Image.Image, amplitude: float, rng: np.random.Generator) -> Image.Image:
    """A smooth random displacement field (white noise blurred over about a cell and a half,
    scaled so its largest shift is `amplitude` pixels), applied with bilinear interpolation."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    values = np.asarray(picture, dtype=np.float32)
    shape = values.shape
    fields = []
    for _ in range(2):
        field = gaussian_filter(rng.uniform(-1, 1, shape), sigma=1.5 * RENDER_SCALE)
        peak = float(np.abs(field).max())
        fields.append(field * (amplitude / peak if peak > 0 else 0.0))
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    moved = map_coordinates(values, [rows + fields[0], cols + fields[1]], order=1, mode="constant")
    return Image.fromarray(np.clip(np.rint(moved), 0, 255).astype(np.uint8))

"""EMBEDDING_MODEL (issue 26): a pretrained image encoder of the user's own, in ONNX, replaces the
PCA of pixels. Its pooled features, reduced by a PCA fitted on top, are the embedding: written to
ref_data.csv under the same contract, versioned with every model (sha256 in the manifest) and
served in one onnxruntime graph. The encoders are built here (harness.encoders), no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctloop.candidate import train_candidate
from ctloop.config import CoreSettings
from ctloop.dataset import load_samples
from ctloop.embed import load_embedding
from ctloop.encoder import EncoderError, load_encoder
from ctloop.predict import make_session
from ctloop.preprocess import PreprocessSpec, preprocess
from ctloop.reference import build_reference, check_reference, read_reference
from ctloop.registry import ModelRegistry
from harness.asgi import in_process_blocking, serving_settings
from harness.data import copy_workspace, make_settings
from harness.datasets import colour
from harness.encoders import small_encoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> CoreSettings:
    """The colour set's first model on a small convolutional encoder (feature maps out, opset 13,
    converted to the stack's), 16 PCA components on top."""
    root = tmp_path_factory.mktemp("encoded")
    settings = make_settings(
        root,
        dataset=colour(root / "datasets", per_class=40),
        embedding_model=str(small_encoder(root / "encoder.onnx")),
        pca_components=16,
    )
    build_reference(settings)
    train_candidate(settings, ModelRegistry(settings.artifacts_dir))
    return settings


def test_the_encoder_is_the_embedding_and_is_versioned(encoded: CoreSettings) -> None:
    info = load_embedding(encoded.embedding_dir).info
    encoder = load_encoder(encoded)
    assert info["encoder"]["sha256"] == encoder.sha256
    assert (info["encoder"]["layout"], info["encoder"]["size"]) == ("nchw", 32)
    spec = info["preprocessing"]
    assert (spec["framing"], spec["size"], spec["channels"]) == ("whole", 32, 3)
    reference = read_reference(encoded.ref_data_path)
    assert reference.embeddings.shape[1] == info["n_components"] == 16  # one column each
    manifest = ModelRegistry(encoded.artifacts_dir).manifest("v0001")
    assert manifest["embedding"]["encoder"]["sha256"] == encoder.sha256
    assert manifest["embedding"]["sha256"] == info["sha256"]
    assert manifest["metrics"]["holdout"]["accuracy"] >= 0.85, manifest["metrics"]["holdout"]


def test_the_stored_graph_computes_what_the_encoder_says(encoded: CoreSettings) -> None:
    """Reshape, ImageNet's normalisation, NCHW, the encoder, the mean over its maps, the PCA:
    the stored embedding of a sample equals the same steps done here with numpy."""
    sample = load_samples(encoded.samples_dir).inputs[0]
    pixels = preprocess(sample, PreprocessSpec(size=32, framing="whole", channels=3))
    stored = load_embedding(encoded.embedding_dir)
    embedded = make_session(stored.model).run(None, {"pixels": pixels[None]})[0]

    encoder = load_encoder(encoded)
    image = (pixels.reshape(32, 32, 3) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    maps = make_session(encoder.model).run(
        None, {"image": image.transpose(2, 0, 1)[None].astype(np.float32)}
    )[0]
    features = maps.mean(axis=(2, 3))
    mean, projection = _stored_pca(stored.model)
    np.testing.assert_allclose(embedded, (features - mean) @ projection, atol=1e-4)


def _stored_pca(model: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The PCA's mean and projection, read from the graph's initialisers."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model).graph
    values = [numpy_helper.to_array(t) for t in graph.initializer if t.name.startswith("pca_")]
    matrices = [v for v in values if v.ndim == 2]
    means = [v for v in values if v.ndim == 1 and v.size == matrices[0].shape[0]]
    return means[0], matrices[0]


def test_the_api_serves_the_encoder_in_one_graph(encoded: CoreSettings, tmp_path) -> None:
    workspace = copy_workspace(encoded, tmp_path)
    red = sorted((workspace.samples_dir / "red").iterdir())[0].read_bytes()
    with in_process_blocking(serving_settings(workspace, tmp_path / "secrets")) as http:
        reply = http.post("/predict?grid=true", files={"file": ("red.png", red, "image/png")})
        model = http.get("/model").json()
    assert reply.status_code == 200, reply.text
    assert reply.json()["label"] == "red"
    assert np.array(reply.json()["grid"]).shape == (32, 32, 3)
    assert model["version"] == "v0001"


def test_another_encoder_file_rebuilds_the_reference(encoded: CoreSettings, tmp_path) -> None:
    workspace = copy_workspace(encoded, tmp_path)
    other = small_encoder(tmp_path / "other.onnx", layout="nhwc", pooled=True, opset=18)
    check = check_reference(workspace.model_copy(update={"embedding_model": str(other)}))
    assert check.rebuilt and "encoder" in check.message
    info = load_embedding(workspace.embedding_dir).info
    assert info["encoder"]["layout"] == "nhwc" and info["encoder"]["output_rank"] == 2
    assert check_reference(workspace.model_copy(update={"embedding_model": str(other)})).action == (
        "unchanged"
    )


def not_onnx(path: Path) -> Path:
    path.write_bytes(b"not onnx")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (not_onnx, "not a valid ONNX model"),
        (lambda path: small_encoder(path, side=None), "set EMBEDDING_INPUT_SIZE"),
        (lambda path: path, "cannot read it"),  # no such file
    ],
)
def test_an_unusable_encoder_is_refused_with_what_to_do(tmp_path, make, message) -> None:
    path = make(tmp_path / "encoder.onnx")
    settings = make_settings(tmp_path, embedding_model=str(path))
    with pytest.raises(EncoderError, match=message):
        load_encoder(settings)


def test_bgr_and_other_statistics_are_applied(tmp_path) -> None:
    path = small_encoder(tmp_path / "encoder.onnx", pooled=True)
    settings = make_settings(
        tmp_path,
        embedding_model=str(path),
        embedding_channel_order="bgr",
        embedding_mean=[0.5, 0.5, 0.5],
        embedding_std=[0.25, 0.5, 1.0],
    )
    from ctloop.encoder import FEATURES, features_graph

    encoder = load_encoder(settings)
    pixels = np.random.default_rng(0).random((2, 32 * 32 * 3), dtype=np.float32)
    got = make_session(features_graph(encoder)).run([FEATURES], {"pixels": pixels})[0]
    images = (pixels.reshape(2, 32, 32, 3)[..., ::-1] - 0.5) / [0.25, 0.5, 1.0]
    want = make_session(encoder.model).run(
        None, {"image": images.transpose(0, 3, 1, 2).astype(np.float32)}
    )[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_large_input_is_shown_averaged_down(tmp_path) -> None:
    """A 128 x 128 encoder input: /predict's grid shows 64 x 64 block means, not 49,152 numbers."""
    settings = make_settings(
        tmp_path,
        dataset=colour(tmp_path / "datasets", per_class=20),
        embedding_model=str(small_encoder(tmp_path / "encoder.onnx", side=128, pooled=True)),
        pca_components=8,
    )
    build_reference(settings)
    train_candidate(settings, ModelRegistry(settings.artifacts_dir))
    red = sorted((settings.samples_dir / "red").iterdir())[0].read_bytes()
    with in_process_blocking(serving_settings(settings, tmp_path / "secrets")) as http:
        reply = http.post("/predict?grid=true", files={"file": ("red.png", red, "image/png")})
    assert reply.status_code == 200, reply.text
    grid = np.array(reply.json()["grid"])
    assert grid.shape == (64, 64, 3)
    full = preprocess(red, PreprocessSpec(size=128, framing="whole", channels=3))
    blocks = full.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(grid, blocks, atol=1e-4)


def test_weights_saved_beside_the_graph_are_read_and_versioned(tmp_path) -> None:
    """torch.onnx.export writes large weights to `name.onnx.data` beside the graph."""
    import onnx

    inline = small_encoder(tmp_path / "inline.onnx", pooled=True)
    graph = onnx.load(str(inline))
    split = tmp_path / "encoder.onnx"
    onnx.save_model(
        graph, str(split), save_as_external_data=True, location="encoder.onnx.data",
        size_threshold=0,
    )  # fmt: skip
    assert (tmp_path / "encoder.onnx.data").stat().st_size > 10_000
    encoder = load_encoder(make_settings(tmp_path, embedding_model=str(split)))
    assert set(encoder.files) == {"encoder.onnx", "encoder.onnx.data"}
    same = load_encoder(make_settings(tmp_path, embedding_model=str(inline)))
    assert encoder.sha256 == same.sha256  # the same graph and weights, however they are stored
    (tmp_path / "encoder.onnx.data").unlink()
    with pytest.raises(EncoderError, match="copy both files into the same folder"):
        load_encoder(make_settings(tmp_path, embedding_model=str(split)))


def test_an_encoder_of_torchs_ir_version_trains_and_serves(tmp_path) -> None:
    """torch.onnx.export writes IR version 10, skl2onnx's heads 8: the served pipeline is one
    graph of both (torchvision's MobileNetV3 failed here before)."""
    import onnx

    path = small_encoder(tmp_path / "encoder.onnx", pooled=True, opset=18)
    graph = onnx.load(str(path))
    graph.ir_version = 10
    onnx.save_model(graph, str(path))
    settings = make_settings(
        tmp_path,
        dataset=colour(tmp_path / "datasets", per_class=20),
        embedding_model=str(path),
        pca_components=8,
    )
    build_reference(settings)
    candidate = train_candidate(settings, ModelRegistry(settings.artifacts_dir))
    assert candidate.promoted
    pipeline = settings.artifacts_dir / "versions" / candidate.version / "pipeline.onnx"
    assert onnx.load(str(pipeline)).ir_version == 10

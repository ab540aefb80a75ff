"""A pretrained image encoder of your own as the embedding (`EMBEDDING_MODEL=encoder.onnx`).

The encoder is an ONNX graph that takes a batch of colour images, (N, 3, H, W) or (N, H, W, 3),
and gives one feature vector per image, (N, D), or feature maps, (N, D, h, w), averaged here over
h and w. Its input side is read from its input shape (or EMBEDDING_INPUT_SIZE), its channel order
and normalisation are settings (ImageNet's by default, what torchvision's models expect).

The stored embedding (`embedding.onnx`) stays one graph from the preprocessed pixels to the
embedding, so that everything downstream (ref_data.csv, prod_data.csv, drift, the head, the
served pipeline) is unchanged:

    pixels (rows, H * W * 3), the whole picture at the encoder's side in [0, 1]
      -> images -> channel order -> (x - mean) / std -> the encoder -> pooled features (rows, D)
      -> a PCA fitted on the reference's features (PCA_COMPONENTS) -> embedding (rows, n)

The encoder's sha256 is recorded in embedding.json and every manifest. Nothing is downloaded:
the user exports the model on a machine with internet (README).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctloop.config import AUTO, CoreSettings
from ctloop.predict import EMBEDDING_OUTPUT, PIXELS_INPUT, make_session
from ctloop.preprocess import PreprocessSpec

if TYPE_CHECKING:  # onnx and skl2onnx are imported where a graph is built (init only)
    from onnx import ModelProto
    from sklearn.decomposition import PCA

FEATURES = "features"  # the pooled encoder output, inside the embedding graph
BATCH = 32  # images encoded at once while the reference is built (bounded memory)
DEFAULT_COMPONENTS = 64  # PCA_COMPONENTS=auto with an encoder


class EncoderError(ValueError):
    """EMBEDDING_MODEL cannot be used: what is wrong and what to do."""


@dataclass(frozen=True)
class Encoder:
    """The encoder as given, and how images are fed to it."""

    model: bytes  # the ONNX graph, at TARGET_OPSET
    name: str  # the file's name
    sha256: str  # of the graph with its weights inside, at the stack's opset
    files: dict[str, str]  # sha256 of each file as given: the graph, its external data
    input_name: str
    output_name: str
    output_rank: int
    layout: str  # "nchw" or "nhwc"
    size: int
    channel_order: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def spec(self) -> PreprocessSpec:
        """The preprocessing feeding it: the whole picture at its side, in colour."""
        return PreprocessSpec(size=self.size, framing="whole", channels=3)

    def info(self) -> dict:
        """What embedding.json and the manifests record (not the graph)."""
        return {key: value for key, value in asdict(self).items() if key != "model"}


def load_encoder(settings: CoreSettings) -> Encoder:
    """Read and check EMBEDDING_MODEL; EncoderError says what is wrong."""
    import onnx

    path = Path(settings.embedding_model)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EncoderError(f"EMBEDDING_MODEL={path}: cannot read it ({exc.strerror})") from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and others
        raise EncoderError(f"EMBEDDING_MODEL={path}: not a valid ONNX model ({exc})") from None
    files = {path.name: hashlib.sha256(data).hexdigest(), **_external_data(model, path)}
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # ValidationError
        raise EncoderError(f"EMBEDDING_MODEL={path}: not a valid ONNX model ({exc})") from None
    model = _at_target_opset(model, path)
    whole = model.SerializeToString()  # the weights inside: what every version carries
    given = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in given]
    if len(inputs) != 1 or len(model.graph.output) < 1:
        raise EncoderError(f"EMBEDDING_MODEL={path}: one image input expected, found {inputs}")
    dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
    layout, sides = _layout(dims, path)
    size = _side(settings, sides, path)
    output = model.graph.output[0]
    rank = len(output.type.tensor_type.shape.dim)
    if rank not in (2, 4):
        raise EncoderError(
            f"EMBEDDING_MODEL={path}: its output {output.name!r} has {rank} dimensions; features "
            "(N, D) or feature maps (N, D, h, w) expected"
        )
    return Encoder(
        model=whole,
        name=path.name,
        sha256=hashlib.sha256(whole).hexdigest(),
        files=files,
        input_name=inputs[0].name,
        output_name=output.name,
        output_rank=rank,
        layout=layout,
        size=size,
        channel_order=settings.embedding_channel_order,
        mean=tuple(settings.embedding_mean),
        std=tuple(settings.embedding_std),
    )


def _external_data(model: ModelProto, path: Path) -> dict[str, str]:
    """Weights kept beside the graph (torch.onnx.export writes `name.onnx.data`) read into it;
    the sha256 of each such file."""
    from onnx import external_data_helper

    tensors = [t for t in model.graph.initializer if external_data_helper.uses_external_data(t)]
    names = sorted(
        {entry.value for t in tensors for entry in t.external_data if entry.key == "location"}
    )
    found = {}
    for name in names:
        beside = path.parent / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not beside.is_file():
            raise EncoderError(
                f"EMBEDDING_MODEL={path}: its weights are in {name!r}, which is not beside it: "
                "copy both files into the same folder"
            )
        found[name] = hashlib.sha256(beside.read_bytes()).hexdigest()
    if tensors:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    return found


def _at_target_opset(model: ModelProto, path: Path) -> ModelProto:
    """The graph at the opset the heads are exported with: one pipeline graph needs one."""
    from onnx import version_converter

    from ctloop.export import TARGET_OPSET

    domains = {entry.domain or "": entry.version for entry in model.opset_import}
    foreign = set(domains) - {"", "ai.onnx"}
    if foreign:
        raise EncoderError(
            f"EMBEDDING_MODEL={path}: operators of {sorted(foreign)} are not supported; export "
            "with the standard operators only"
        )
    target = TARGET_OPSET[""]
    version = domains.get("", domains.get("ai.onnx", target))
    if version == target:
        return model
    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:  # the converter's own errors vary by operator
        raise EncoderError(
            f"EMBEDDING_MODEL={path}: opset {version} could not be converted to {target} ({exc}); "
            f"export it with opset_version={target}"
        ) from None


def _layout(dims: list[int | None], path: Path) -> tuple[str, tuple[int | None, int | None]]:
    if len(dims) == 4 and dims[1] == 3:
        return "nchw", (dims[2], dims[3])
    if len(dims) == 4 and dims[3] == 3:
        return "nhwc", (dims[1], dims[2])
    raise EncoderError(
        f"EMBEDDING_MODEL={path}: its input {dims} is not a batch of colour images "
        "(N, 3, H, W) or (N, H, W, 3)"
    )


def _side(settings: CoreSettings, sides: tuple[int | None, int | None], path: Path) -> int:
    asked = settings.embedding_input_size
    if asked != AUTO:
        if any(side not in (None, int(asked)) for side in sides):
            raise EncoderError(
                f"EMBEDDING_INPUT_SIZE={asked}, but EMBEDDING_MODEL={path} takes {sides}"
            )
        return int(asked)
    if sides[0] is None or sides[0] != sides[1]:
        raise EncoderError(
            f"EMBEDDING_MODEL={path} takes images of {sides}: set EMBEDDING_INPUT_SIZE to the "
            "side it was trained on (224 for torchvision's models)"
        )
    return int(sides[0])


def features_graph(encoder: Encoder) -> bytes:
    """pixels (rows, size * size * 3) in [0, 1] -> the encoder's pooled features (rows, D)."""
    import onnx
    from onnx import TensorProto, compose, helper, numpy_helper

    from ctloop.export import TARGET_OPSET

    s = encoder.size
    channels = [2, 1, 0] if encoder.channel_order == "bgr" else [0, 1, 2]
    constants: dict[str, np.ndarray] = {
        "shape": np.array([-1, s, s, 3], dtype=np.int64),
        "order": np.array(channels, dtype=np.int64),
        "mean": np.array(encoder.mean, dtype=np.float32).reshape(1, 1, 1, 3),
        "std": np.array(encoder.std, dtype=np.float32).reshape(1, 1, 1, 3),
    }
    nodes = [
        helper.make_node("Reshape", [PIXELS_INPUT, "shape"], ["hwc"]),
        helper.make_node("Gather", ["hwc", "order"], ["ordered"], axis=3),
        helper.make_node("Sub", ["ordered", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
    ]
    if encoder.layout == "nchw":
        nodes.append(helper.make_node("Transpose", ["normalised"], ["images"], perm=[0, 3, 1, 2]))
    else:
        nodes.append(helper.make_node("Identity", ["normalised"], ["images"]))
    before = helper.make_model(
        helper.make_graph(
            nodes,
            "ctloop_encoder_input",
            [helper.make_tensor_value_info(PIXELS_INPUT, TensorProto.FLOAT, [None, s * s * 3])],
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(value, name) for name, value in constants.items()],
        ),
        opset_imports=[helper.make_opsetid("", TARGET_OPSET[""])],
    )
    pooled = (
        [
            helper.make_node("GlobalAveragePool", ["maps"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], [FEATURES], axis=1),
        ]
        if encoder.output_rank == 4
        else [helper.make_node("Flatten", ["maps"], [FEATURES], axis=1)]
    )
    after = helper.make_model(
        helper.make_graph(
            pooled,
            "ctloop_encoder_output",
            [helper.make_tensor_value_info("maps", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, None])],
        ),
        opset_imports=[helper.make_opsetid("", TARGET_OPSET[""])],
    )
    inner = compose.add_prefix(onnx.load_from_string(encoder.model), prefix="encoder_")
    _same_ir(inner, before, after)
    merged = compose.merge_models(
        before, inner, io_map=[("images", "encoder_" + encoder.input_name)]
    )
    merged = compose.merge_models(
        merged,
        after,
        io_map=[("encoder_" + encoder.output_name, "maps")],
        outputs=[FEATURES],
    )
    onnx.checker.check_model(merged)
    return merged.SerializeToString()


def _same_ir(encoder: ModelProto, *made: ModelProto) -> None:
    """merge_models wants one IR version: the encoder's, or the oldest that its opset allows
    when the encoder's is older (onnx's helper writes a newer one than onnxruntime reads)."""
    from onnx import helper

    from ctloop.export import TARGET_OPSET

    opsets = [helper.make_opsetid("", TARGET_OPSET[""])]
    version = max(encoder.ir_version, helper.find_min_ir_version_for(opsets))
    for model in (encoder, *made):
        model.ir_version = version


def embedding_graph(features: bytes, pca: PCA) -> bytes:
    """The whole embedding: pixels -> features -> the PCA fitted on top."""
    import onnx
    from onnx import compose

    from ctloop.export import embedding_to_onnx

    head = compose.add_prefix(onnx.load_from_string(embedding_to_onnx(pca)), prefix="pca_")
    first = onnx.load_from_string(features)
    _same_ir(first, head)  # first: already at the encoder's version
    del head.opset_import[:]
    head.opset_import.extend(first.opset_import)  # the PCA's ops are the same at either opset
    merged = compose.merge_models(
        first,
        head,
        io_map=[(FEATURES, "pca_" + PIXELS_INPUT)],
        outputs=["pca_" + EMBEDDING_OUTPUT],
    )
    named = {"pca_" + EMBEDDING_OUTPUT: EMBEDDING_OUTPUT}
    for node in merged.graph.node:
        node.output[:] = [named.get(output, output) for output in node.output]
    merged.graph.output[0].name = EMBEDDING_OUTPUT
    onnx.checker.check_model(merged)
    return merged.SerializeToString()


def encode(
    features: bytes, batches: Iterator[np.ndarray], progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """The pooled features of every batch of pixels, BATCH images at a time."""
    session = make_session(features, threads=0)
    out = []
    done = 0
    for pixels in batches:
        out.append(session.run([FEATURES], {PIXELS_INPUT: np.asarray(pixels, np.float32)})[0])
        done += len(pixels)
        if progress is not None:
            progress(done)
    return np.vstack(out).astype(np.float32)


def components(settings: CoreSettings, rows: int, width: int) -> int:
    """PCA_COMPONENTS over the features: DEFAULT_COMPONENTS with 'auto', at most what the rows and
    the features allow."""
    asked = DEFAULT_COMPONENTS if settings.pca_components == AUTO else int(settings.pca_components)
    return min(asked, rows, width)

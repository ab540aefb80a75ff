"""Image encoders in ONNX built here, nothing downloaded: what EMBEDDING_MODEL reads, for the tests
(a small convolutional network) and the latency benchmark (ResNet-18's layers and shapes, with
seeded random weights: the same arithmetic per image as the pretrained model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 7  # of the weights


class _Graph:
    """Nodes and seeded He-initialised weights of a convolutional network, built layer by layer."""

    def __init__(self, layout: str) -> None:
        self.nodes: list = []
        self.weights: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(SEED)
        self.layout = layout
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def conv(self, x: str, inputs: int, outputs: int, kernel: int, stride: int) -> str:
        from onnx import helper

        weight, bias, out = self.name("w"), self.name("b"), self.name("conv")
        scale = np.sqrt(2.0 / (inputs * kernel * kernel))
        shape = (outputs, inputs, kernel, kernel)
        self.weights[weight] = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        self.weights[bias] = np.zeros(outputs, dtype=np.float32)
        pad = kernel // 2
        self.nodes.append(
            helper.make_node("Conv", [x, weight, bias], [out], strides=[stride] * 2, pads=[pad] * 4)
        )
        return out

    def op(self, kind: str, inputs: list[str], **attributes) -> str:
        from onnx import helper

        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attributes))
        return out

    def save(self, path: Path, x: str, out: str, side: int | None, opset: int) -> Path:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        images = ["N", 3, side, side] if self.layout == "nchw" else ["N", side, side, 3]
        graph = helper.make_graph(
            self.nodes,
            "encoder",
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, images)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
            [numpy_helper.from_array(value, name) for name, value in self.weights.items()],
        )
        opsets = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = helper.find_min_ir_version_for(opsets)  # what onnxruntime reads
        shaped = onnx.shape_inference.infer_shapes(model)
        model.graph.output[0].CopyFrom(shaped.graph.output[0])
        onnx.checker.check_model(model)
        path.write_bytes(model.SerializeToString())
        return path


def small_encoder(
    path: Path,
    side: int | None = 32,
    layout: str = "nchw",
    pooled: bool = False,
    opset: int = 13,
) -> Path:
    """Two strided 3 x 3 convolutions with ReLU (16 then 32 maps); feature maps out, or pooled
    (N, 32) features with `pooled`. Opset 13 by default: older than the stack's, as many
    exported models are."""
    net = _Graph(layout)
    x = "image"
    first = x if layout == "nchw" else net.op("Transpose", [x], perm=[0, 3, 1, 2])
    hidden = net.op("Relu", [net.conv(first, 3, 16, 3, 2)])
    out = net.op("Relu", [net.conv(hidden, 16, 32, 3, 2)])
    if pooled:
        out = net.op("Flatten", [net.op("GlobalAveragePool", [out])], axis=1)
    return net.save(path, x, out, side, opset)


def resnet18_shaped(path: Path, side: int = 224) -> Path:
    """ResNet-18's convolutions, strides, residual additions and pooling (He et al. 2016; batch
    normalisation folded into the convolutions, as an exported model has it), 512 features out."""
    net = _Graph("nchw")
    x = "input"
    out = net.op("Relu", [net.conv(x, 3, 64, 7, 2)])
    out = net.op("MaxPool", [out], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            step = stride if block == 0 else 1
            inner = net.op("Relu", [net.conv(out, channels, width, 3, step)])
            inner = net.conv(inner, width, width, 3, 1)
            same = step == 1 and channels == width
            skip = out if same else net.conv(out, channels, width, 1, step)  # a 1 x 1 projection
            out = net.op("Relu", [net.op("Add", [inner, skip])])
            channels = width
    out = net.op("Flatten", [net.op("GlobalAveragePool", [out])], axis=1)
    return net.save(path, x, out, side, 18)

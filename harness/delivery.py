"""Challengers for the progressive-delivery tests: a sound one, and one trained on flipped labels.

Registered straight into the registry (not put to the gate), as an operator could, so that a
test decides when and how each one goes on stage.
"""

from __future__ import annotations

import copy
import dataclasses
import re

import numpy as np

from ctloop.candidate import build_manifest, version_files
from ctloop.config import CoreSettings
from ctloop.embed import load_embedding
from ctloop.registry import ModelRegistry
from ctloop.retrain_set import load_training_set
from ctloop.train import train_head
from ctloop.util import sha256_hex
from harness import loopback


def flipped(targets: np.ndarray) -> np.ndarray:
    """Every label replaced by the next class: a model that learns these is always wrong."""
    classes = sorted(set(targets.tolist()))
    following = {label: classes[(i + 1) % len(classes)] for i, label in enumerate(classes)}
    return np.array([following[label] for label in targets.tolist()])


def register_challenger(settings: CoreSettings, flip: bool = False) -> str:
    """Register a head trained on the reference rows (labels flipped if asked); its id.

    The head is trained once per process for each workspace content and `flip`: the tests that
    call this exercise staging, not training, and a copy of one head per call changed nothing
    but the seconds (each version is still registered, verified and loaded on its own)."""
    registry = ModelRegistry(settings.artifacts_dir)
    files, manifest = _challenger(
        sha256_hex(settings.ref_data_path.read_bytes()),
        sha256_hex((settings.embedding_dir / "embedding.onnx").read_bytes()),
        flip,
        settings,
    )
    return registry.register(files=files, manifest=copy.deepcopy(manifest))


_CHALLENGERS: dict[tuple[str, str, bool], tuple[dict[str, bytes], dict]] = {}


def _challenger(
    reference: str, embedding_sha: str, flip: bool, settings: CoreSettings
) -> tuple[dict[str, bytes], dict]:
    key = (reference, embedding_sha, flip)
    if key not in _CHALLENGERS:
        embedding = load_embedding(settings.embedding_dir)
        training_set = load_training_set(settings, 0)
        if flip:
            training_set = dataclasses.replace(training_set, targets=flipped(training_set.targets))
        head = train_head(training_set)
        gate = {"decision": "promoted", "reason": "registered by a test", "champion": None}
        _CHALLENGERS[key] = (
            version_files(embedding.model, head.model, head.extra_files),
            build_manifest(head, embedding.info, gate=gate),
        )
    return _CHALLENGERS[key]


def failing_pipeline(pipeline: bytes) -> bytes:
    """The serving graph with a check in front that fails at run time on any real image (its
    brightest pixel above 0.1) and passes on the blank rows a worker warms a model up with: a
    challenger that loads, then answers every client with a server error."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(pipeline)
    graph = model.graph
    source = graph.input[0].name
    width = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    for node in graph.node:
        node.input[:] = [f"{source}_checked" if name == source else name for name in node.input]
    constants = [
        helper.make_tensor("fail_threshold", TensorProto.FLOAT, [1], [0.1]),
        helper.make_tensor("fail_width", TensorProto.INT64, [1], [width]),
        helper.make_tensor("fail_rows", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("fail_flat", TensorProto.INT64, [1], [1]),
    ]
    check = [
        helper.make_node("ReduceMax", [source], ["fail_max"], keepdims=0),
        helper.make_node("Reshape", ["fail_max", "fail_flat"], ["fail_max_1"]),
        helper.make_node("Greater", ["fail_max_1", "fail_threshold"], ["fail_bright"]),
        helper.make_node("Cast", ["fail_bright"], ["fail_extra"], to=TensorProto.INT64),
        helper.make_node("Add", ["fail_width", "fail_extra"], ["fail_columns"]),
        helper.make_node("Concat", ["fail_rows", "fail_columns"], ["fail_shape"], axis=0),
        helper.make_node("Reshape", [source, "fail_shape"], [f"{source}_checked"]),
    ]
    graph.initializer.extend(constants)
    nodes = check + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def register_failing_challenger(settings: CoreSettings) -> str:
    """A copy of the served version whose serving graph fails on every real image."""
    registry = ModelRegistry(settings.artifacts_dir)
    files = dict(registry.load().files)
    manifest = {
        key: value
        for key, value in registry.manifest(registry.current_version()).items()
        if key not in ("version", "parent", "created_at", "files")
    }
    files["pipeline.onnx"] = failing_pipeline(files["pipeline.onnx"])
    return registry.register(files=files, manifest=manifest)


def stage_by_worker(url: str) -> dict[str, tuple[str, str]]:
    """{pid: (version, stage)} of the challenger each live worker serves on stage, from
    ctloop_stage_percent (every worker sets it when it publishes a stage)."""
    text = loopback.get(f"{url}/metrics", timeout=10).text
    pattern = r'ctloop_stage_percent\{pid="(\d+)",stage="(\w+)",version="(v\d+)"\} ([\d.]+)'
    found = {}
    for pid, stage, version, percent in re.findall(pattern, text):
        if float(percent) > 0:
            found[pid] = (version, stage)
    return found

"""GET /model says which dataset the served model learnt and what it reads (framing, grid,
channels), for a client to follow the data; in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctloop.candidate import train_candidate
from ctloop.reference import build_reference
from ctloop.registry import ModelRegistry
from harness.asgi import BlockingClient, in_process_blocking, serving_settings
from harness.data import make_settings
from harness.datasets import colour
from serving.routes.model import dataset_name
from serving_client.contract import ModelInfo

# What /model says of a sound model's grid and rate, null for a picture model (test_api_audio.py)
NOT_A_SOUND = {"columns": None, "sample_rate": None, "seconds": None}


def test_model_names_its_dataset_and_what_it_reads(client: BlockingClient, settings) -> None:
    body = client.get("/model").json()
    manifest = ModelRegistry(settings.artifacts_dir).manifest(body["version"])
    assert body["dataset"] == "digits"
    recorded = manifest["preprocessing"]
    picture = {key: recorded[key] for key in ("framing", "size", "channels")}
    assert body["preprocessing"] == {"medium": "image", **picture, **NOT_A_SOUND}
    assert body["preprocessing"]["framing"] == "strokes"


def test_a_colour_picture_set_is_named_by_its_folder_and_read_whole(tmp_path: Path) -> None:
    source = colour(tmp_path / "datasets", per_class=20, size=16)
    core = make_settings(
        tmp_path,
        dataset=source,
        image_framing="whole",
        image_channels=3,
        image_size=8,
        pca_components=32,
    )
    build_reference(core)
    train_candidate(core, ModelRegistry(core.artifacts_dir))
    with in_process_blocking(serving_settings(core, tmp_path / "secrets")) as http:
        body = http.get("/model").json()
    assert source.endswith("/colour")
    assert body["dataset"] == "colour", "the folder's name, not its path on the server"
    assert body["preprocessing"] == {
        "medium": "image",
        "framing": "whole",
        "size": 8,
        "channels": 3,
        **NOT_A_SOUND,
    }
    assert body["classes"] == ["blue", "green", "red"]


@pytest.mark.parametrize(
    ("recorded", "name"),
    [("digits", "digits"), ("/app/data/faces", "faces"), ("data/my images/", "my images")],
)
def test_the_dataset_name_is_the_folders_own(recorded: str, name: str) -> None:
    assert dataset_name({"embedding": {"dataset": recorded}}) == name


def test_a_manifest_without_a_dataset_has_no_name() -> None:
    assert dataset_name({"classes": ["a", "b"]}) is None
    assert dataset_name({"embedding": {}}) is None


def test_a_reply_of_an_older_api_still_parses(client: BlockingClient) -> None:
    """The new fields are additive: a client reads an API that does not send them."""
    body = client.get("/model").json()
    older = {key: value for key, value in body.items() if key not in ("dataset", "preprocessing")}
    parsed = ModelInfo.model_validate(older)
    assert parsed.dataset is None and parsed.preprocessing is None
    assert ModelInfo.model_validate(body).preprocessing is not None


def test_the_schema_documents_what_the_model_reads(client: BlockingClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    model = schemas["ModelInfo"]["properties"]
    assert "DATASET" in model["dataset"]["description"]
    assert "IMAGE_FRAMING" in model["preprocessing"]["description"]
    fields = schemas["Preprocessing"]["properties"]
    assert {"medium", "framing", "size", "channels", *NOT_A_SOUND} == set(fields)
    assert all(field["description"] for field in fields.values())

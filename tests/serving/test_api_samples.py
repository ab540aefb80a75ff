"""GET /samples lists a few unseen images of each class, boundedly, and GET
/samples/{label}/{name} returns one of them, and nothing else; in process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from ctloop.config import CoreSettings
from harness.asgi import BlockingClient, in_process, in_process_blocking, serving_settings
from harness.data import copy_workspace
from serving.errors import ApiError
from serving.routes import samples as samples_route
from serving.routes.samples import (
    MAX_PER_CLASS,
    MEDIA_TYPES,
    SCANNED_PER_CLASS,
    SampleGallery,
)
from serving.settings import ServingSettings
from serving_client.contract import SampleListing

DIGITS = [str(digit) for digit in range(10)]


@contextlib.contextmanager
def without_token(settings: ServingSettings) -> Iterator[BlockingClient]:
    """The app in process, called as a stranger: no Authorization header."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(in_process(settings)) as http,
    ):
        yield BlockingClient(portal, http)


def error(reply, status: int, code: str) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["error"] == code, body
    return body["detail"]


def test_the_schema_documents_the_samples_routes(client: BlockingClient) -> None:
    spec = client.get("/openapi.json").json()
    listing = spec["paths"]["/samples"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SampleListing"
    )
    image = spec["paths"]["/samples/{label}/{name}"]["get"]
    assert set(image["responses"]["200"]["content"]) == set(MEDIA_TYPES.values())
    assert image["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )


# -- GET /samples, GET /samples/{label}/{name} -----------------------------------------------


def test_samples_lists_a_few_sorted_files_of_each_class(
    client: BlockingClient, settings: ServingSettings
) -> None:
    reply = client.get("/samples")
    assert reply.status_code == 200, reply.text
    listing = SampleListing.model_validate(reply.json())
    assert listing.per_class == 3
    assert [entry.label for entry in listing.classes] == DIGITS
    for entry in listing.classes:
        on_disk = sorted(path.name for path in (settings.samples_dir / entry.label).iterdir())
        assert [f.name for f in entry.files] == on_disk[:3]
        for file in entry.files:
            assert file.url == f"/samples/{entry.label}/{file.name}"
            assert file.media_type == "image/png"
            on_disk_size = (settings.samples_dir / entry.label / file.name).stat().st_size
            assert file.size_bytes == on_disk_size
    one = client.get("/samples", params={"per_class": 1}).json()
    assert [len(entry["files"]) for entry in one["classes"]] == [1] * 10


@pytest.mark.parametrize("per_class", ["0", str(MAX_PER_CLASS + 1), "many"])
def test_a_wrong_per_class_is_a_clear_422(client: BlockingClient, per_class: str) -> None:
    detail = error(client.get("/samples", params={"per_class": per_class}), 422, "invalid_request")
    assert "per_class" in detail


def test_a_sample_comes_back_as_its_bytes_and_is_predicted(
    client: BlockingClient, settings: ServingSettings
) -> None:
    listing = client.get("/samples").json()
    for entry in listing["classes"][:3]:
        file = entry["files"][0]
        reply = client.get(file["url"])
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "image/png"
        assert reply.content == (settings.samples_dir / entry["label"] / file["name"]).read_bytes()
        answer = client.post("/predict", files={"file": (file["name"], reply.content)})
        assert answer.status_code == 200 and answer.json()["label"] in DIGITS


def test_samples_are_read_without_the_token(settings: ServingSettings) -> None:
    with without_token(settings) as stranger:
        listing = stranger.get("/samples")
        assert listing.status_code == 200
        url = listing.json()["classes"][0]["files"][0]["url"]
        assert stranger.get(url).status_code == 200
        assert stranger.post("/model/rollback").status_code == 401, "writes still need it"


def test_unknown_samples_are_a_404_that_says_what_exists(
    client: BlockingClient, settings: ServingSettings
) -> None:
    detail = error(client.get("/samples/three/digit-0001.png"), 404, "unknown_sample")
    assert "no sample class 'three'" in detail and "0, 1, 2" in detail
    detail = error(client.get("/samples/3/nothing.png"), 404, "unknown_sample")
    assert "no sample 'nothing.png' in class '3'" in detail and "GET /samples" in detail
    detail = error(client.get(f"/samples/3/{'x' * 5000}.png"), 404, "unknown_sample")
    assert len(detail) < 300, "a name from the request is not echoed whole"
    # A real file beyond the listed few is not served either: only what GET /samples lists.
    unlisted = sorted(path.name for path in (settings.samples_dir / "3").iterdir())[-1]
    error(client.get(f"/samples/3/{unlisted}"), 404, "unknown_sample")


@pytest.mark.parametrize(
    "path",
    [
        "/samples/3/..%2F..%2Freference.json",
        "/samples/..%2F..%2Fdata/reference.json",
        "/samples/../reference.json",
        "/samples/%2e%2e/reference.json",
        "/samples/3/%2e%2e",
        "/samples/.%2F3/x.png",
        "/samples/3/%00.png",
    ],
)
def test_a_path_out_of_the_samples_is_a_404(client: BlockingClient, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 404, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json()["error"] in ("unknown_sample", "not_found")
    assert b"dataset" not in reply.content


# -- The gallery's bounds, on a folder of its own ----------------------------------------------


def png(data: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes([data % 256]) * 16


def make_samples(root: Path, classes: dict[str, int]) -> Path:
    for label, count in classes.items():
        (root / label).mkdir(parents=True)
        for index in range(count):
            (root / label / f"s-{index:04d}.png").write_bytes(png(index))
    return root


def test_the_listing_is_bounded_whatever_a_class_folder_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = make_samples(tmp_path / "samples", {"a": 2000, "b": 2})
    real = os.scandir
    looked_at: list[str] = []

    @contextlib.contextmanager
    def counting_scandir(path):
        with real(path) as entries:
            yield (looked_at.append(entry.name) or entry for entry in entries)

    monkeypatch.setattr(samples_route.os, "scandir", counting_scandir)
    classes = SampleGallery(samples, 10_000).classes()
    assert [listed.file.name for listed in classes["b"]] == ["s-0000.png", "s-0001.png"]
    assert len(classes["a"]) == MAX_PER_CLASS
    assert len(looked_at) <= 2 + SCANNED_PER_CLASS + 2, len(looked_at)


def test_hidden_odd_and_too_large_files_are_not_listed(tmp_path: Path) -> None:
    samples = make_samples(tmp_path / "samples", {"a": 1, ".hidden": 1})
    (samples / "a" / ".secret.png").write_bytes(png(1))
    (samples / "a" / "notes.txt").write_bytes(b"notes")
    (samples / "a" / "empty.png").write_bytes(b"")
    (samples / "a" / "huge.png").write_bytes(png(2) + bytes(2000))
    (samples / "a" / "link.png").symlink_to(samples / "a" / "s-0000.png")
    (samples / "stray.png").write_bytes(png(3))
    classes = SampleGallery(samples, 1000).classes()
    assert list(classes) == ["a"]
    assert [listed.file.name for listed in classes["a"]] == ["s-0000.png"]


def test_the_listing_is_kept_until_init_replaces_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = make_samples(tmp_path / "samples", {"a": 1, "b": 1})
    gallery = SampleGallery(samples, 1000)
    assert list(gallery.classes()) == ["a", "b"]
    scans = []
    scan = gallery._scan
    monkeypatch.setattr(gallery, "_scan", lambda: scans.append(1) or scan())
    assert list(gallery.classes()) == ["a", "b"] and not scans, "one stat, no scan"

    # What ctloop.dataset.write_samples does: the new folder written aside, renamed into place.
    staging = make_samples(tmp_path / ".samples.staging", {"c": 1})
    samples.rename(tmp_path / ".samples.previous")
    staging.rename(samples)
    assert list(gallery.classes()) == ["c"] and scans == [1]
    with pytest.raises(ApiError, match="no sample class 'a'"):
        gallery.find("a", "s-0000.png")
    assert gallery.read("c", "s-0000.png") == (png(0), "image/png")

    # A file swapped for a link after it was listed is not followed.
    listed = gallery.find("c", "s-0000.png").path
    listed.unlink()
    listed.symlink_to(tmp_path / ".samples.previous" / "a" / "s-0000.png")
    with pytest.raises(ApiError, match="is gone"):
        gallery.read("c", "s-0000.png")

    (tmp_path / "samples").rename(tmp_path / "gone")
    assert gallery.classes() == {}


def test_the_media_types_cover_the_suffixes_the_dataset_reads() -> None:
    from ctloop.media import SUFFIXES

    assert set(MEDIA_TYPES) == {suffix for known in SUFFIXES.values() for suffix in known}


def test_without_samples_the_listing_is_empty(built: CoreSettings, tmp_path: Path) -> None:
    core = copy_workspace(built, tmp_path)
    for folder in sorted(core.samples_dir.iterdir()):
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
    core.samples_dir.rmdir()
    with in_process_blocking(serving_settings(core, tmp_path / "secrets")) as http:
        assert http.get("/samples").json() == {"per_class": 3, "classes": []}
        error(http.get("/samples/3/digit-0003.png"), 404, "unknown_sample")

"""GET /samples, GET /samples/{label}/{name}: a few of the images `ctloop init` kept unseen
(data/samples/<class>/<file>), for a client to show and to try. Read-only and open, like /model.

Bounded whatever the folder holds: at most MAX_CLASSES class folders are looked at, and in each
at most SCANNED_PER_CLASS entries, of which the first MAX_PER_CLASS image files by name are kept.
The listing is kept until the folder changes (init writes it aside and renames it into place:
another inode), so a request costs one stat. Only a listed file is ever read: a name from a
request is looked up in the listing, never joined to a path.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from serving.errors import ApiError
from serving_client.contract import ErrorResponse, SampleClass, SampleFile, SampleListing

router = APIRouter(tags=["samples"])

# The suffixes `ctloop.dataset` reads inputs from (ctloop.media), and what each is.
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".mp3": "audio/mpeg",
}
MAX_CLASSES = 200
MAX_PER_CLASS = 8
SCANNED_PER_CLASS = 64
DEFAULT_PER_CLASS = 3
# A file is listed only if /predict can take it back: the multipart envelope around it fits here.
ENVELOPE_BYTES = 1024


@dataclass(frozen=True)
class Listed:
    """A listed file: where it is, and what the listing says of it."""

    path: Path
    file: SampleFile


class SampleGallery:
    """The bounded listing of a samples folder, rebuilt when the folder changes."""

    def __init__(self, samples_dir: Path, max_file_bytes: int) -> None:
        self.samples_dir = samples_dir
        self.max_file_bytes = max_file_bytes
        # (the folder's device, inode and mtime; its listing), replaced whole: one assignment,
        # so that a thread never sees one folder's key with another's listing.
        self._cached: tuple[tuple[int, int, int], dict[str, list[Listed]]] | None = None

    def classes(self) -> dict[str, list[Listed]]:
        """Class -> its first MAX_PER_CLASS image files by name (empty without a folder)."""
        try:
            status = os.stat(self.samples_dir)
        except OSError:
            self._cached = None
            return {}
        key = (status.st_dev, status.st_ino, status.st_mtime_ns)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        classes = self._scan()
        self._cached = (key, classes)
        return classes

    def find(self, label: str, name: str) -> Listed:
        """The listed file `name` of class `label`, or a 404 that says what exists."""
        classes = self.classes()
        files = classes.get(label)
        if files is None:
            known = ", ".join(list(classes)[:20]) or "none"
            raise ApiError(
                404,
                "unknown_sample",
                f"there is no sample class {_said(label)} (classes with samples: {known})",
            )
        for listed in files:
            if listed.file.name == name:
                return listed
        raise ApiError(
            404,
            "unknown_sample",
            f"there is no sample {_said(name)} in class {_said(label)}: GET /samples lists the "
            "ones this API serves",
        )

    def read(self, label: str, name: str) -> tuple[bytes, str]:
        """The bytes and media type of a listed file."""
        listed = self.find(label, name)
        try:  # not through a link put in its place since it was listed
            with open(os.open(listed.path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
                data = handle.read(self.max_file_bytes + 1)
        except OSError as exc:  # replaced or removed since it was listed
            raise ApiError(
                404, "unknown_sample", f"the sample {_said(name)} of class {_said(label)} is gone"
            ) from exc
        if len(data) > self.max_file_bytes:
            raise ApiError(
                404,
                "unknown_sample",
                f"the sample {_said(name)} of class {_said(label)} has changed",
            )
        return data, listed.file.media_type

    def _scan(self) -> dict[str, list[Listed]]:
        folders = []
        try:
            with os.scandir(self.samples_dir) as entries:
                for entry in itertools.islice(entries, 4 * MAX_CLASSES):
                    if _visible(entry.name) and entry.is_dir(follow_symlinks=False):
                        folders.append(entry)
        except OSError:  # removed or replaced since its stat: the next request lists again
            return {}
        folders.sort(key=lambda entry: entry.name)
        classes = {}
        for folder in folders[:MAX_CLASSES]:
            files = self._scan_class(folder.name, Path(folder.path))
            if files:
                classes[folder.name] = files
        return classes

    def _scan_class(self, label: str, folder: Path) -> list[Listed]:
        found = []
        try:
            with os.scandir(folder) as entries:
                for entry in itertools.islice(entries, SCANNED_PER_CLASS):
                    media_type = MEDIA_TYPES.get(os.path.splitext(entry.name)[1].lower())
                    if media_type is None or not _visible(entry.name):
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        size = entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
                    if 0 < size <= self.max_file_bytes:
                        found.append((entry.name, size, media_type))
        except OSError:
            return []
        return [
            Listed(
                folder / name,
                SampleFile(
                    name=name,
                    url=f"/samples/{quote(label, safe='')}/{quote(name, safe='')}",
                    media_type=media_type,
                    size_bytes=size,
                ),
            )
            for name, size, media_type in sorted(found)[:MAX_PER_CLASS]
        ]


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _said(text: str, limit: int = 60) -> str:
    """A name from a request, quoted in a message: at most `limit` characters of it."""
    return repr(text if len(text) <= limit else f"{text[:limit]}...")


async def get_gallery(request: Request) -> SampleGallery:
    """The app's gallery, made on first use from its settings."""
    state = request.app.state
    gallery = getattr(state, "sample_gallery", None)
    if gallery is None:
        settings = state.settings
        gallery = SampleGallery(settings.samples_dir, settings.max_body_bytes - ENVELOPE_BYTES)
        state.sample_gallery = gallery
    return gallery


GalleryDep = Annotated[SampleGallery, Depends(get_gallery)]


@router.get(
    "/samples",
    response_model=SampleListing,
    responses={
        422: {"model": ErrorResponse, "description": "per_class is not a whole number in range"}
    },
    summary="A few unseen images of each class, to show and to try",
)
async def list_samples(
    gallery: GalleryDep,
    per_class: Annotated[
        int, Query(ge=1, le=MAX_PER_CLASS, description="How many files of each class to list")
    ] = DEFAULT_PER_CLASS,
) -> SampleListing:
    """Images of `data/samples/<class>/` (written by `ctloop init`, never learnt from), the first
    by name of each class. Files too large for /predict are left out. Empty without samples."""
    classes = await run_in_threadpool(gallery.classes)
    return SampleListing(
        per_class=per_class,
        classes=[
            SampleClass(label=label, files=[listed.file for listed in files[:per_class]])
            for label, files in classes.items()
        ],
    )


@router.get(
    "/samples/{label}/{name}",
    response_class=Response,
    responses={
        200: {
            "description": "The image file, as it is on disk",
            "content": {media_type: {} for media_type in sorted(set(MEDIA_TYPES.values()))},
        },
        404: {"model": ErrorResponse, "description": "No such sample (GET /samples lists them)"},
    },
    summary="One sample image's bytes",
)
async def sample_image(gallery: GalleryDep, label: str, name: str) -> Response:
    """A file GET /samples lists (any of the first MAX_PER_CLASS of its class), with its media
    type; any other name is a 404."""
    data, media_type = await run_in_threadpool(gallery.read, label, name)
    return Response(data, media_type=media_type)

"""Inputs (images, sounds) out of a request (JSON base64 or multipart upload) and into rows of
the values the model reads (ctloop.media)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterator

import numpy as np
from fastapi import Request
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from ctloop.audio import AudioHeader, AudioSpec, preprocess_audio, read_header
from ctloop.media import Spec
from ctloop.preprocess import (
    PreprocessSpec,
    decoded_pixels,
    open_image,
    preprocess_image,
)
from ctloop.util import InputError
from serving.decode_budget import decode_budget, release_memory
from serving.errors import ApiError
from serving.middleware import BodyTooLargeError
from serving.settings import ServingSettings

DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")


def decode_base64(value: str, field: str) -> bytes:
    """Bytes of a base64 string (a data: URL prefix is accepted); 422 if it is not base64."""
    value = DATA_URL.sub("", value.strip(), count=1)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid_base64", f"{field} is not valid base64 ({exc})") from exc
    if not data:
        raise ApiError(422, "empty_image", f"{field} is empty")
    return data


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request, settings: ServingSettings) -> FormData:
    """The multipart form; more files than the batch limit is a 422."""
    try:
        return await request.form(max_files=settings.max_batch, max_fields=20)
    except (ApiError, BodyTooLargeError):  # the body limit is a 413, not a parse error
        raise
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise ApiError(
            422, "invalid_form", f"the multipart body could not be read ({exc})"
        ) from exc


async def uploaded_files(form: FormData, field: str = "file") -> list[bytes]:
    files = [item for item in form.getlist(field) if isinstance(item, UploadFile)]
    if not files:
        raise ApiError(422, "missing_file", f"the multipart body has no '{field}' file field")
    contents = []
    for index, upload in enumerate(files):
        data = await upload.read()
        if not data:
            name = upload.filename or f"{field}[{index}]"
            raise ApiError(422, "empty_image", f"the uploaded file {name!r} is empty")
        contents.append(data)
    return contents


async def to_pixels(inputs: list[bytes], spec: Spec, settings: ServingSettings) -> np.ndarray:
    """The rows of `inputs`, preprocessed as `spec` says (a picture's or a sound's)."""
    if isinstance(spec, AudioSpec):
        return await _sounds_to_rows(inputs, spec, settings)
    return await _images_to_rows(inputs, spec, settings)


async def _sounds_to_rows(
    sounds: list[bytes], spec: AudioSpec, settings: ServingSettings
) -> np.ndarray:
    """Every header read and checked (length, rate, channels; the batch's samples together)
    before any sound is decoded, in a thread (an MP3's length is counted over its frames: 9 ms
    for 1 MB); each sound then decoded in a thread (2 to 3 ms for a second of sound, more for
    30 s) within the worker's decode budget, where a sample counts as a pixel."""
    headers = await run_in_threadpool(_read_headers, sounds, settings.max_audio_seconds)
    _check_batch(sum(header.samples for header in headers), "sounds", "samples", settings)
    rows = np.empty((len(sounds), spec.n_pixels), dtype=np.float32)
    budget = decode_budget(settings.decode_budget_pixels, settings.decode_wait_seconds)
    for index, (data, header) in enumerate(zip(sounds, headers, strict=True)):
        with _numbered(index, len(sounds)):
            async with budget.reserve(header.samples):
                rows[index] = await run_in_threadpool(
                    _preprocess_sound, data, spec, settings.max_audio_seconds
                )
    return rows


def _read_headers(sounds: list[bytes], max_seconds: float) -> list[AudioHeader]:
    headers = []
    for index, data in enumerate(sounds):
        with _numbered(index, len(sounds)):
            headers.append(read_header(data, max_seconds))
    return headers


def _preprocess_sound(data: bytes, spec: AudioSpec, max_seconds: float) -> np.ndarray:
    """preprocess_audio in a worker thread, the decoded samples handed back to the system."""
    try:
        return preprocess_audio(data, spec, max_seconds)
    finally:
        release_memory()


def _check_batch(total: int, inputs: str, unit: str, settings: ServingSettings) -> None:
    """413 when a request's inputs hold more than SERVING_MAX_BATCH_PIXELS together (a sound's
    samples count as pixels), checked on their headers before any is decoded."""
    if total > settings.max_batch_pixels:
        raise ApiError(
            413,
            "batch_too_large",
            f"the {inputs} hold {total:,} {unit} together; the limit is "
            f"{settings.max_batch_pixels:,} per request",
        )


@contextlib.contextmanager
def _numbered(index: int, count: int) -> Iterator[None]:
    """A refusal of one input of a batch names it: 'images[3]: ...'."""
    try:
        yield
    except InputError as exc:
        if count == 1:
            raise
        raise type(exc)(f"images[{index}]: {exc}") from exc


async def _images_to_rows(
    images: list[bytes], spec: PreprocessSpec, settings: ServingSettings
) -> np.ndarray:
    """Preprocess each image; small ones on the event loop (tens of microseconds;
    SERVING_INLINE_PIXELS in all per request), the others in a thread so that a 12-megapixel photo
    never stalls the other requests, within the worker's SERVING_DECODE_BUDGET_PIXELS
    (serving.decode_budget). Every header is read and checked (size, shape, the batch's total
    pixels) before any image is decoded, and each decoded image is let go before the next one is
    decoded."""
    opened = []
    for index, data in enumerate(images):
        with _numbered(index, len(images)):
            opened.append(
                open_image(
                    data,
                    settings.max_image_pixels,
                    settings.max_image_side,
                    settings.max_image_aspect,
                )
            )
    _check_batch(sum(image.width * image.height for image in opened), "images", "pixels", settings)
    rows = np.empty((len(images), spec.n_pixels), dtype=np.float32)
    budget = decode_budget(settings.decode_budget_pixels, settings.decode_wait_seconds)
    inline_left = settings.inline_pixels  # per request: 64 images of 512 x 512 take 1 s inline
    opened.reverse()  # popped in order: the list lets go of each image as it is decoded
    for index in range(len(images)):
        image = opened.pop()
        try:
            with _numbered(index, len(images)):
                pixels = image.width * image.height
                if pixels <= inline_left:
                    inline_left -= pixels
                    rows[index] = preprocess_image(image, spec)
                else:
                    async with budget.reserve(decoded_pixels(image, spec)):
                        rows[index] = await run_in_threadpool(_preprocess_large, image, spec)
        finally:
            image.close()
    return rows


def _preprocess_large(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """preprocess_image in a worker thread, the decoded pixels freed and handed back to the
    system before the thread gives its share of the budget back."""
    try:
        return preprocess_image(image, spec)
    finally:
        image.close()
        release_memory()

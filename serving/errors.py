"""Every client error is a 4xx with a JSON body: {"detail": what is wrong, "error": a code}."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ctloop.util import InputError
from serving.middleware import BodyTooLargeError
from serving_client.records import FieldError

log = logging.getLogger("serving.errors")


class ApiError(Exception):
    """An error with its HTTP status, a code and a message a person can act on."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict | None = None, **extra: object
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra
        self.headers = headers


# FastAPI's `responses=`: the statuses a route may answer besides its own, documented.
Responses = dict[int | str, dict[str, Any]]

# A request may hold thousands of invalid items (a 2.6 MB list of 1.3 million numbers): the reply
# names the first few and counts the rest, so that an error body stays a few KB whatever was sent.
SHOWN_ERRORS = 10
MAX_DETAIL_CHARS = 1000
MAX_LOCATION_CHARS = 80  # a location holds keys the client chose (a 1 MB key, say)
MAX_MESSAGE_CHARS = 300


def describe_validation(errors: Sequence[Mapping[str, Any]], total: int | None = None) -> str:
    """'image: Field required; target: ...' from pydantic's errors (the first SHOWN_ERRORS of
    `total`, said when there are more), at most MAX_DETAIL_CHARS long."""
    total = len(errors) if total is None else total
    parts = []
    for error in errors[:SHOWN_ERRORS]:
        location = _location(error)
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            message = f"the body is not valid JSON ({error.get('ctx', {}).get('error', message)})"
        parts.append(f"{location}: {message}" if location else message)
    detail = "; ".join(parts) or "the request is not valid"
    if total > len(parts):
        detail = f"{total:,} errors, the first {len(parts)}: {detail}"
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 3] + "..."
    return detail


def _location(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
    if len(location) > MAX_LOCATION_CHARS:
        location = location[: MAX_LOCATION_CHARS - 3] + "..."
    return location


def _clean(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """The first SHOWN_ERRORS of pydantic's errors, without the (possibly huge) input and
    non-JSON context, their locations cut to MAX_LOCATION_CHARS."""
    return [
        {
            "loc": [_short(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg"))[:MAX_MESSAGE_CHARS],
            "type": str(error.get("type")),
        }
        for error in errors[:SHOWN_ERRORS]
    ]


def _short(part: str | int) -> str | int:
    if isinstance(part, str) and len(part) > MAX_LOCATION_CHARS:
        return part[: MAX_LOCATION_CHARS - 3] + "..."
    return part


def _invalid(request: Request, errors: Sequence[Mapping[str, Any]], total: int) -> JSONResponse:
    return _response(
        request,
        422,
        "invalid_request",
        describe_validation(errors, total),
        errors=_clean(errors),
        error_count=total,
    )


def _response(
    request: Request, status: int, code: str, detail: str, **extra: object
) -> JSONResponse:
    body = {"detail": detail, "error": code, **extra}
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = _response(request, exc.status, exc.code, exc.detail, **exc.extra)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        status = 413 if exc.too_large else 422
        return _response(request, status, exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return _invalid(request, list(errors[:SHOWN_ERRORS]), len(errors))

    @app.exception_handler(ValidationError)
    async def body_invalid(request: Request, exc: ValidationError) -> JSONResponse:
        # Only the errors shown are turned into dicts (with their inputs left out).
        errors = exc.errors(include_url=False, include_input=False)[:SHOWN_ERRORS]
        return _invalid(request, errors, exc.error_count())

    @app.exception_handler(BodyTooLargeError)
    async def too_large(request: Request, exc: BodyTooLargeError) -> JSONResponse:
        return _response(request, 413, "body_too_large", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """A bug or a fault the routes did not foresee: still the JSON error body, never a
        plain-text page; the traceback goes to the log with the request id."""
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"request_id": getattr(request.state, "request_id", None)},
        )
        response = _response(
            request,
            500,
            "internal_error",
            "the server failed on this request; the operator can look it up in the logs by its "
            "request id",
        )
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            response.headers["x-request-id"] = request_id
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response = _response(
            request, exc.status_code, codes.get(exc.status_code, "http_error"), detail
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

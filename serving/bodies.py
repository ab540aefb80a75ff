"""JSON request bodies: their size of structure checked before they are parsed, their shape before
any field is validated.

Every JSON body of this API is one flat object: a few fields holding strings, and on /predict one
list of strings (`images`). A body within SERVING_MAX_BODY_BYTES can still hold 1.3 million list
items, 400,000 keys or a million nested brackets; validated as it comes, each item or key is one
pydantic error, and such a body used to cost a worker 20 s of its event loop and 2 GB. So, in
order, each step bounded by the one before:

1. the raw bytes (C-speed counts): at most MAX_CONTAINERS brackets and braces, at most
   `max_items` + MAX_STRINGS strings (half the quotes): a flat body needs 2 and a few;
2. the parse (pydantic's JSON parser, which refuses nesting deeper than 200 levels);
3. the shape: an object with no more keys than the model has fields (plus a few, so that a
   misspelt field is named by pydantic), lists of at most `max_items`;
4. the model's own validation, whose errors are now few (and summarised, serving.errors).

Brackets and quotes inside strings count too: the strings of this API are base64, class labels
and short reasons, which no real body brings near the limits.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel
from pydantic_core import from_json

from serving.errors import ApiError

M = TypeVar("M", bound=BaseModel)

MAX_CONTAINERS = 64
MAX_STRINGS = 256  # beyond the list items: the keys, the labels, escaped quotes in a reason
SPARE_KEYS = 8


def parse_json(body: bytes, model: type[M], max_items: int = 0) -> M:
    """The body as `model`, or a 422 that says what is wrong with its shape (see the module)."""
    containers = body.count(b"[") + body.count(b"{")
    if containers > MAX_CONTAINERS:
        raise _invalid(
            f"the JSON body holds {containers:,} arrays or objects (counting '[' and '{{'); a "
            f"body of this route is one object of strings, {MAX_CONTAINERS} brackets at most"
        )
    strings = body.count(b'"') // 2
    if strings > max_items + MAX_STRINGS:
        raise _invalid(
            f"the JSON body holds {strings:,} strings; a body of this route holds "
            f"{max_items + MAX_STRINGS:,} at most"
        )
    try:
        data = from_json(body)
    except ValueError as exc:
        raise _invalid(f"the body is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _invalid(f"the body must be a JSON object, not {_json_type(data)}")
    fields = model.model_fields
    if len(data) > len(fields) + SPARE_KEYS:
        raise _invalid(f"the body has {len(data):,} fields; this route takes {', '.join(fields)}")
    for name, value in data.items():
        if isinstance(value, list) and len(value) > max_items:
            raise ApiError(
                422,
                "batch_too_large",
                f"at most {max_items} {name[:40]} per request; the body holds {len(value):,}",
            )
    return model.model_validate(data)


def json_request_body(model: type[BaseModel]) -> dict:
    """The OpenAPI `requestBody` of an optional JSON body read with `parse_json` (by a dependency,
    serving.deps.json_body, which FastAPI does not see as a body)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


def _invalid(detail: str) -> ApiError:
    return ApiError(422, "invalid_request", detail)


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")

"""DirectRoute: a route class for an endpoint that reads the Request and builds its Response.

FastAPI's documented extension point (`APIRouter(route_class=...)`, "Custom Request and
APIRoute class"). The decorator still documents the route (`response_model`, `responses` and
`openapi_extra` all reach /docs), but per request FastAPI neither resolves parameters nor
validates and re-serialises the returned value: the endpoint validates its body with the
pydantic model itself and returns the JSON it built from the response model. On /predict that
machinery cost about 6 % of the worker's CPU per request (docs/studies/performance.md).

Only for endpoints with a `request` parameter and nothing else: a route-level dependency (an auth
check, say) would silently never run, so one is refused when the route is declared.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

JSON = "application/json"


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        parameters = list(inspect.signature(endpoint).parameters)
        if not inspect.iscoroutinefunction(endpoint) or parameters != ["request"]:
            raise TypeError(
                f"DirectRoute {path}: the endpoint must be `async def {endpoint.__name__}"
                f"(request)`, not ({', '.join(parameters)})"
            )
        if self.dependant.dependencies:
            raise TypeError(
                f"DirectRoute {path}: dependencies are not run on a DirectRoute; "
                "check them in the endpoint or use a plain APIRoute"
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def json_response(model: BaseModel) -> Response:
    """A pydantic model's JSON, as FastAPI would have sent it (without validating it again)."""
    return Response(model.__pydantic_serializer__.to_json(model), media_type=JSON)

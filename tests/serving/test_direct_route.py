"""DirectRoute (the /predict route class) refuses what it would silently not run."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, Request, Response

from serving.routes.direct import DirectRoute


async def check() -> None:
    raise AssertionError("never reached")


def test_a_route_dependency_is_refused_when_declared() -> None:
    router = APIRouter(route_class=DirectRoute)
    with pytest.raises(TypeError, match="dependencies are not run"):

        @router.post("/x", dependencies=[Depends(check)])
        async def endpoint(request: Request) -> Response:
            return Response()


def test_parameters_other_than_the_request_are_refused() -> None:
    router = APIRouter(route_class=DirectRoute)
    with pytest.raises(TypeError, match=r"async def endpoint\(request\)"):

        @router.post("/x")
        async def endpoint(request: Request, limit: int = 3) -> Response:
            return Response()


def test_a_plain_def_endpoint_is_refused() -> None:
    router = APIRouter(route_class=DirectRoute)
    with pytest.raises(TypeError, match="must be `async def"):

        @router.post("/x")
        def endpoint(request: Request) -> Response:
            return Response()

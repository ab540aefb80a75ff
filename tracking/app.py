"""The MLflow server's app as the stack runs it (`mlflow server --app-name ctloop`): MLflow's
basic authentication, plus a record of who moves an alias.

MLflow keeps no author for an alias. After every alias set through the API or the UI that
succeeded, this app writes a tag of the registered model, `ctloop.alias.<alias>`, holding the
signed-in user, the version the alias was set to and the time (JSON): the mirror names that user in
the reason of a promotion taken from MLflow. The tag is written by the server itself, in the same
request, so it cannot be forged by a client that only sets the alias.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from flask import Response, request

ALIAS_TAG = "ctloop.alias."  # + the alias: {"user", "version", "at"}
_ALIAS_ROUTES = ("/mlflow/registered-models/alias",)  # /api/2.0/... and the UI's /ajax-api/2.0/...

log = logging.getLogger("tracking.app")


def create_app() -> Any:
    """MLflow's Flask app with basic authentication (what `--app-name basic-auth` serves) and
    the alias record; under uvicorn, basic-auth's factory returns the FastAPI app around it."""
    from mlflow.server import app
    from mlflow.server.auth import create_app as with_basic_auth

    app.after_request(_record_alias_move)
    return with_basic_auth(app)


def _record_alias_move(response: Response) -> Response:
    if (
        request.method != "POST"
        or response.status_code != 200
        or not request.path.endswith(_ALIAS_ROUTES)
    ):
        return response
    try:
        body = request.get_json(silent=True) or {}
        name, alias, version = body["name"], body["alias"], str(body["version"])
        who = request.authorization.username if request.authorization else None
    except (KeyError, TypeError):
        return response
    record = {
        "user": who or "anonymous",
        "version": version,
        "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    from mlflow.entities.model_registry import RegisteredModelTag
    from mlflow.server.handlers import _get_model_registry_store

    try:
        tag = RegisteredModelTag(ALIAS_TAG + alias, json.dumps(record))  # type: ignore[no-untyped-call]
        _get_model_registry_store().set_registered_model_tag(name, tag)  # type: ignore[no-untyped-call]
    except Exception:  # the alias moved; only its author goes unrecorded
        log.exception("could not record who moved alias %s of %s", alias, name)
    return response

"""Typed calls to the serving API. Every failure becomes an `ApiError` a person can act on."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

IMAGE_KINDS = "PNG, JPEG, BMP, GIF or WebP"


class Prediction(BaseModel):
    """The answer of POST /predict."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    label: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    request_id: str
    grid: list[list[float]] | None = None  # what the model saw, when asked for (?grid=true)

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        """The `count` most probable classes, most probable first."""
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[:count]


class FeedbackReceipt(BaseModel):
    """The answer of POST /feedback: the row is on disk."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    rows: int
    retrain_triggered: bool
    rows_until_retrain: int
    retrain_every: int
    target: str
    prediction: str
    model_version: str
    request_id: str


class RetrainOutcome(BaseModel):
    """One retrain decision, as GET /model reports the last one."""

    model_config = ConfigDict(extra="ignore")

    trigger_rows: int
    decision: str
    version: str | None = None
    reason: str | None = None


class ModelSummary(BaseModel):
    """What the page needs from GET /model."""

    model_config = ConfigDict(extra="ignore")

    version: str
    classes: list[str]
    metrics: dict[str, Any]
    retrain_every: int
    production_rows: int
    rows_until_retrain: int
    last_retrain: RetrainOutcome | None = None

    @property
    def holdout_accuracy(self) -> float | None:
        value = (self.metrics.get("holdout") or {}).get("accuracy")
        return float(value) if isinstance(value, (int, float)) else None


class ApiError(Exception):
    """A call that did not succeed, told in plain words: what happened and what to do."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message
        self.status, self.code, self.request_id = status, code, request_id

    @property
    def about_the_image(self) -> bool:
        """The API refused the input itself (another image may work), not a service failure."""
        return self.kind == "refused" and self.code != "unknown_class"


class ApiClient:
    """A small client of the serving API with timeouts, one connection pool per process."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        headers = {"User-Agent": "ctloop-webapp"}
        if token:  # the API asks for it on /feedback; sent on every call, it costs nothing
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def model_info(self, timeout: float | None = None) -> ModelSummary:
        """GET /model: served version, classes, held-out metrics, retrain state."""
        reply = self._call("GET", "/model", "reading the model's status", timeout=timeout)
        return self._parse(reply, ModelSummary)

    def predict(
        self, image: bytes, filename: str, media_type: str, grid: bool = False
    ) -> Prediction:
        """POST /predict with the image as a multipart upload (`grid`: also what the model saw)."""
        reply = self._call(
            "POST",
            "/predict",
            "asking for a prediction",
            files={"file": (filename, image, media_type)},
            params={"grid": "true"} if grid else None,
        )
        return self._parse(reply, Prediction)

    def feedback(
        self, image: bytes, filename: str, media_type: str, target: str, prediction: str
    ) -> FeedbackReceipt:
        """POST /feedback: the image, its true class and the prediction the page showed."""
        reply = self._call(
            "POST",
            "/feedback",
            "sending your feedback",
            files={"file": (filename, image, media_type)},
            data={"target": target, "prediction": prediction},
            writes=True,
        )
        return self._parse(reply, FeedbackReceipt)

    def wait_for_retrain(
        self, trigger_rows: int, wait_seconds: float, interval: float = 0.5
    ) -> tuple[RetrainOutcome | None, ModelSummary | None]:
        """Poll GET /model until the retrain started at `trigger_rows` rows is decided."""
        deadline = time.monotonic() + wait_seconds
        summary = None
        while True:
            try:
                summary = self.model_info()
            except ApiError:
                summary = None  # a blip while polling is not the retrain's outcome
            last = summary.last_retrain if summary else None
            decided = last is not None and last.trigger_rows >= trigger_rows
            # A promotion is logged before the API's workers swap models: wait for the swap too.
            if decided and (last.decision != "promoted" or summary.version == last.version):
                return last, summary
            if time.monotonic() >= deadline:
                return (last if decided else None), summary
            time.sleep(interval)

    # -- plumbing -----------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, action: str, *, writes: bool = False, **kwargs: Any
    ) -> httpx.Response:
        request_id = uuid.uuid4().hex
        timeout = kwargs.pop("timeout", None) or self.timeout
        maybe_done = " It may or may not have been recorded." if writes else ""
        try:
            reply = self._http.request(
                method, path, headers={"X-Request-ID": request_id}, timeout=timeout, **kwargs
            )
        except httpx.ConnectTimeout as exc:
            raise self._unreachable(action, f"no connection within {timeout:g} s") from exc
        except httpx.TimeoutException as exc:
            raise ApiError(
                "timeout",
                f"The prediction service did not reply within {timeout:g} s while {action}: it "
                f"may be overloaded or stuck.{maybe_done} Wait a moment and try again.",
                request_id=request_id,
            ) from exc
        except httpx.ConnectError as exc:
            raise self._unreachable(action, _reason(exc)) from exc
        except httpx.TransportError as exc:
            raise ApiError(
                "unreachable",
                f"The connection to the prediction service broke while {action} "
                f"({_reason(exc)}).{maybe_done} Try again in a moment.",
                request_id=request_id,
            ) from exc
        if reply.is_success:
            return reply
        raise self._refusal(reply, path, action, reply.headers.get("x-request-id") or request_id)

    def _unreachable(self, action: str, reason: str) -> ApiError:
        return ApiError(
            "unreachable",
            f"The prediction service at {self.base_url} cannot be reached ({reason}) while "
            f"{action}. It may be starting or stopped: wait a moment and try again. If it "
            "lasts, check that the serving API is running and that the webapp's API_URL "
            "points to it.",
        )

    def _refusal(self, reply: httpx.Response, path: str, action: str, request_id: str) -> ApiError:
        status = reply.status_code
        body = _json_or_none(reply)
        detail = str(body.get("detail") or "").strip() if isinstance(body, dict) else ""
        code = body.get("error") if isinstance(body, dict) else None
        said = f": {detail.rstrip('.')}." if detail else "."

        def problem(kind: str, message: str) -> ApiError:
            return ApiError(kind, message, status=status, code=code, request_id=request_id)

        if status == 401:
            if self.token:
                todo = "Check that the webapp's API_TOKEN is the same as the API's."
            else:
                todo = "Set the webapp's API_TOKEN to the API's token and restart the page."
            return problem(
                "unauthorized", f"The prediction service refused this page's request{said} {todo}"
            )
        if status == 413:
            return problem(
                "refused",
                f"The image is too large for the prediction service{said} "
                "Use a smaller image: a few hundred pixels a side is plenty.",
            )
        if status == 422 and code == "unknown_class":
            return problem("refused", f"The prediction service refused the request{said}")
        if status in (415, 422):
            return problem(
                "refused",
                f"The prediction service could not use this image{said} "
                f"Upload a {IMAGE_KINDS} picture of a digit, or draw one.",
            )
        if status == 503 and code == "model_not_ready":
            return problem(
                "not_ready",
                "The prediction service has no model loaded yet (it is probably training its "
                "first one). Try again in a minute.",
            )
        if status in (404, 405):
            return problem(
                "invalid_answer",
                f"The server at {self.base_url} has no {path} route (HTTP {status}). Check that "
                "the webapp's API_URL is the serving API's base address.",
            )
        if 400 <= status < 500:
            return problem(
                "refused",
                f"The prediction service refused the request while {action} (HTTP {status}){said}",
            )
        return problem(
            "server",
            f"The prediction service failed while {action} (HTTP {status}). Try again "
            "in a moment; if it keeps failing, the operator can look for request id "
            f"{request_id} in the API's logs.",
        )

    def _parse(self, reply: httpx.Response, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate_json(reply.content)
        except ValidationError as exc:
            raise ApiError(
                "invalid_answer",
                f"The server at {self.base_url} answered, but not like the prediction service "
                f"does (HTTP {reply.status_code}, {reply.headers.get('content-type', 'no type')})."
                " Check that the webapp's API_URL points to the serving API.",
                status=reply.status_code,
            ) from exc


def _json_or_none(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None


def _reason(exc: Exception) -> str:
    """The OS's words for a network failure, without the exception class names."""
    text = str(exc).strip() or type(exc).__name__
    return re.sub(r"\[Errno -?\d+\]\s*", "", text)

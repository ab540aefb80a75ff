"""A typed client of the serving API: one method per route a client calls, each reply parsed into
the contract's model, each failure an `ApiError` that says what was asked and what came back.

    with ApiClient("http://localhost:8080", token) as api:
        answer = api.predict(png_bytes)              # PredictResponse
        api.feedback(png_bytes, "3", answer.label)   # FeedbackResponse

The words a person reads about a failure belong to each client (the page says what to check in
its settings); the error carries the facts they are made of.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from serving_client.contract import (
    BatchPredictResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    PredictResponseWithGrid,
    RetrainOutcome,
    SampleFile,
    SampleListing,
    VersionSummary,
)

Reply = TypeVar("Reply", bound=BaseModel)
Parsed = TypeVar("Parsed")
VERSIONS = TypeAdapter(list[VersionSummary])


class ApiError(Exception):
    """A call that did not succeed.

    `kind` says how: "unreachable" (no connection was made: nothing was received), "timeout"
    (no reply in time) and "disconnected" (the connection broke) (the request may have been
    received), "refused" (a 4xx), "server" (a 5xx), "invalid_answer" (a reply that is not the
    API's). A reply's status, the API's error code and message (`code`, `detail`: its
    ErrorResponse) and the request id to look for in its logs are kept when there are some.
    """

    def __init__(
        self,
        kind: str,
        method: str,
        base_url: str,
        path: str,
        *,
        status: int | None = None,
        body: ErrorResponse | None = None,
        request_id: str | None = None,
        reason: str = "",
        timeout: float | None = None,
        content_type: str | None = None,
        token_sent: bool = False,
    ) -> None:
        self.kind, self.method, self.base_url, self.path = kind, method, base_url, path
        self.status, self.body, self.request_id = status, body, request_id
        self.reason, self.timeout, self.content_type = reason, timeout, content_type
        self.token_sent = token_sent
        super().__init__(self._summary())

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    @property
    def code(self) -> str | None:
        """The API's short machine-readable error code ('unknown_class', ...), if it said one."""
        return self.body.error if self.body is not None else None

    @property
    def detail(self) -> str:
        """The API's own message ('' when the reply had none)."""
        return self.body.detail.strip() if self.body is not None else ""

    def _summary(self) -> str:
        call = f"{self.method} {self.url}"
        if self.kind == "unreachable":
            return f"{call}: cannot connect ({self.reason})"
        if self.kind == "timeout":
            return f"{call}: no reply within {self.timeout:g} s"
        if self.kind == "disconnected":
            return f"{call}: the connection broke ({self.reason})"
        if self.kind == "invalid_answer" and self.status is not None and self.status < 400:
            return (
                f"{call}: HTTP {self.status} ({self.content_type or 'no content type'}) is not "
                "an answer of the serving API"
            )
        said = f" {self.code}: {self.detail}" if self.body is not None else ""
        where = f" (request id {self.request_id})" if self.request_id else ""
        return f"{call}: HTTP {self.status}{said}{where}"


class ApiClient:
    """A client of the serving API with timeouts and one connection pool.

    `token` is sent on every call (the write routes need it). `patience`: how long to wait out
    429 replies, as their Retry-After says, before giving up (0: at once). `client_id`, where a
    method takes it, is sent as X-Client-ID (the key of a canary split).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 10.0,
        *,
        user_agent: str = "ctloop-client",
        patience: float = 0.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.patience = patience
        headers = {"User-Agent": user_agent}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def model(self, timeout: float | None = None) -> ModelInfo:
        """GET /model: the served version, its classes and metrics, the retrain state."""
        return self._parse(self._call("GET", "/model", timeout=timeout), ModelInfo)

    def versions(self) -> list[VersionSummary]:
        """GET /model/versions: every registered version, its gate and its stages."""
        return self._parse(self._call("GET", "/model/versions"), VERSIONS)

    def samples(self, per_class: int = 3, timeout: float | None = None) -> SampleListing:
        """GET /samples: a few unseen files (images or sounds) of each class, by name and URL."""
        reply = self._call("GET", "/samples", params={"per_class": per_class}, timeout=timeout)
        return self._parse(reply, SampleListing)

    def sample(self, file: SampleFile) -> tuple[bytes, str]:
        """GET one file of `samples()`: its bytes and media type. Only a path under /samples/ of
        this API is followed (the token goes with every call: never to another host)."""
        if not file.url.startswith("/samples/"):
            raise ApiError(
                "invalid_answer", "GET", self.base_url, file.url, token_sent=bool(self.token)
            )
        reply = self._call("GET", file.url)
        media_type = reply.headers.get("content-type", "").split(";")[0].strip()
        if not media_type.startswith(("image/", "audio/")):
            raise ApiError(
                "invalid_answer",
                "GET",
                self.base_url,
                file.url,
                status=reply.status_code,
                request_id=reply.headers.get("x-request-id"),
                content_type=reply.headers.get("content-type"),
                token_sent=bool(self.token),
            )
        return reply.content, media_type

    def metrics(self) -> str:
        """GET /metrics: the Prometheus text."""
        return self._call("GET", "/metrics").text

    # -- predictions and feedback ---------------------------------------------------------------

    @overload
    def predict(
        self,
        image: bytes,
        filename: str = ...,
        media_type: str = ...,
        *,
        grid: Literal[False] = False,
        client_id: str | None = None,
    ) -> PredictResponse: ...

    @overload
    def predict(
        self,
        image: bytes,
        filename: str = ...,
        media_type: str = ...,
        *,
        grid: Literal[True],
        client_id: str | None = None,
    ) -> PredictResponseWithGrid: ...

    def predict(
        self,
        image: bytes,
        filename: str = "image.png",
        media_type: str = "image/png",
        *,
        grid: bool = False,
        client_id: str | None = None,
    ) -> PredictResponse:
        """POST /predict with the image as a file upload; `grid`: also the cells the model saw."""
        reply = self._call(
            "POST",
            "/predict",
            files={"file": (filename, image, media_type)},
            params={"grid": "true"} if grid else None,
            client_id=client_id,
        )
        return self._parse(reply, PredictResponseWithGrid if grid else PredictResponse)

    def predict_base64(self, image: bytes, *, client_id: str | None = None) -> PredictResponse:
        """POST /predict with the image in JSON, base64-encoded (the workshop's form)."""
        body = PredictRequest(image=_b64(image)).model_dump(exclude_none=True)
        reply = self._call("POST", "/predict", json=body, client_id=client_id)
        return self._parse(reply, PredictResponse)

    def predict_batch(
        self, images: Sequence[bytes], *, client_id: str | None = None
    ) -> BatchPredictResponse:
        """POST /predict with several images in JSON (at most the API's SERVING_MAX_BATCH)."""
        body = PredictRequest(images=[_b64(i) for i in images]).model_dump(exclude_none=True)
        reply = self._call("POST", "/predict", json=body, client_id=client_id)
        return self._parse(reply, BatchPredictResponse)

    def feedback(
        self,
        image: bytes,
        target: str,
        prediction: str | None = None,
        *,
        filename: str = "image.png",
        media_type: str = "image/png",
        client_id: str | None = None,
    ) -> FeedbackResponse:
        """POST /feedback with the image as a file upload: its true class, and the prediction
        the client showed if it says."""
        fields = {"target": target} | ({"prediction": prediction} if prediction else {})
        reply = self._call(
            "POST",
            "/feedback",
            files={"file": (filename, image, media_type)},
            data=fields,
            client_id=client_id,
        )
        return self._parse(reply, FeedbackResponse)

    def feedback_base64(
        self,
        image: bytes,
        target: str,
        prediction: str | None = None,
        *,
        client_id: str | None = None,
    ) -> FeedbackResponse:
        """POST /feedback with the image in JSON, base64-encoded."""
        body = FeedbackRequest(image=_b64(image), target=target, prediction=prediction)
        reply = self._call(
            "POST", "/feedback", json=body.model_dump(exclude_none=True), client_id=client_id
        )
        return self._parse(reply, FeedbackResponse)

    def wait_for_retrain(
        self, trigger_rows: int, wait_seconds: float, interval: float = 0.5
    ) -> tuple[RetrainOutcome | None, ModelInfo | None]:
        """Poll GET /model until the retrain started at `trigger_rows` rows (or a later one) is
        decided and, if it was promoted, served: (that decision, the last /model), or (None, the
        last /model) when `wait_seconds` pass first. A failed poll is not an outcome: it polls on.
        """
        deadline = time.monotonic() + wait_seconds
        summary = None
        while True:
            try:
                summary = self.model()
            except ApiError:
                summary = None
            last = summary.retrain_outcome if summary is not None else None
            if last is not None and last.trigger_rows < trigger_rows:
                last = None  # an earlier retrain's decision
            # A promotion is logged before the API's workers swap models: wait for the swap too.
            if (
                last is not None
                and summary is not None
                and (last.decision != "promoted" or summary.version == last.version)
            ):
                return last, summary
            if time.monotonic() >= deadline:
                return last, summary
            time.sleep(interval)

    # -- plumbing -----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        timeout: float | None = None,
        client_id: str | None = None,
        **request: Any,
    ) -> httpx.Response:
        timeout = timeout or self.timeout
        request_id = uuid.uuid4().hex
        headers = {"X-Request-ID": request_id}
        if client_id is not None:
            headers["X-Client-ID"] = client_id

        def failure(kind: str, **facts: Any) -> ApiError:
            facts.setdefault("request_id", request_id)
            return ApiError(kind, method, self.base_url, path, token_sent=bool(self.token), **facts)

        deadline = time.monotonic() + self.patience
        while True:
            try:
                reply = self._http.request(
                    method, path, headers=headers, timeout=timeout, **request
                )
            except httpx.ConnectTimeout as exc:
                reason = f"no connection within {timeout:g} s"
                raise failure("unreachable", reason=reason, request_id=None) from exc
            except httpx.TimeoutException as exc:
                raise failure("timeout", timeout=timeout) from exc
            except httpx.ConnectError as exc:
                raise failure("unreachable", reason=_reason(exc), request_id=None) from exc
            except httpx.TransportError as exc:
                raise failure("disconnected", reason=_reason(exc)) from exc
            if reply.status_code != 429 or time.monotonic() >= deadline:
                break
            time.sleep(_retry_after(reply))
        if reply.is_success:
            return reply
        kind = "server" if reply.status_code >= 500 else "refused"
        if reply.status_code < 400:  # a redirect: the API sends none
            kind = "invalid_answer"
        raise failure(
            kind,
            status=reply.status_code,
            body=_error_body(reply),
            request_id=reply.headers.get("x-request-id") or request_id,
            content_type=reply.headers.get("content-type"),
        )

    @overload
    def _parse(self, reply: httpx.Response, model: type[Reply]) -> Reply: ...

    @overload
    def _parse(self, reply: httpx.Response, model: TypeAdapter[Parsed]) -> Parsed: ...

    def _parse(self, reply: httpx.Response, model: Any) -> Any:
        """The reply as the contract's `model`, or an ApiError when it is not what the API sends."""
        try:
            if isinstance(model, TypeAdapter):
                return model.validate_json(reply.content)
            return model.model_validate_json(reply.content)
        except ValidationError as exc:
            request = reply.request
            raise ApiError(
                "invalid_answer",
                request.method,
                self.base_url,
                request.url.path.removeprefix(httpx.URL(self.base_url).path.rstrip("/")),
                status=reply.status_code,
                request_id=reply.headers.get("x-request-id"),  # none from a server not the API
                content_type=reply.headers.get("content-type"),
                token_sent=bool(self.token),
            ) from exc


def _b64(image: bytes) -> str:
    return base64.b64encode(image).decode()


def _error_body(reply: httpx.Response) -> ErrorResponse | None:
    """The API's error body (detail, error code...), or None from anything else."""
    try:
        return ErrorResponse.model_validate_json(reply.content)
    except ValidationError:
        return None


def _retry_after(reply: httpx.Response) -> float:
    try:
        return max(0.0, float(reply.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _reason(exc: Exception) -> str:
    """The OS's words for a network failure, without the exception class names."""
    text = str(exc).strip() or type(exc).__name__
    return re.sub(r"\[Errno -?\d+\]\s*", "", text)

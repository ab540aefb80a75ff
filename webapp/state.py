"""What the page remembers between reruns (st.session_state), and the send-once rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from serving_client.client import ApiError
from serving_client.contract import FeedbackResponse, ModelInfo, PredictResponse, RetrainOutcome
from webapp.images import ImageInput
from webapp.subject import Subject

if TYPE_CHECKING:
    from streamlit.runtime.uploaded_file_manager import UploadedFile


class Session(Protocol):
    """st.session_state as this module uses it (a dict in the tests)."""

    def __contains__(self, key: str, /) -> bool: ...
    def __getitem__(self, key: str, /) -> Any: ...
    def __setitem__(self, key: str, value: Any, /) -> None: ...


PENDING = "pending"
KEPT_PREDICTIONS = 32

DEFAULTS: dict[str, Callable[[], Any]] = {
    "subject": Subject,  # what the served model reads, as GET /model last said
    "image": lambda: None,  # the ImageInput in use (a picture or a sound), whichever its source
    "upload_id": lambda: None,  # file_id of the upload last taken
    "recording_id": lambda: None,  # file_id of the recording last taken
    "drawing_digest": lambda: None,  # digest of the drawing last taken
    "predictions": dict,  # image digest -> PredictResponseWithGrid
    "predict_problems": dict,  # image digest -> ApiError of its last attempt
    "sent": dict,  # feedback_key -> SentFeedback, or PENDING while the request is in flight
    "feedback_problems": dict,  # feedback_key -> ApiError of its last attempt
}


@dataclass
class SentFeedback:
    """A feedback the API acknowledged, and what became of the retrain it started, if any."""

    receipt: FeedbackResponse
    retrain: RetrainOutcome | None = None
    served_after: ModelInfo | None = None


def init(state: Session) -> None:
    for key, make in DEFAULTS.items():
        if key not in state:
            state[key] = make()


def follow(
    state: Session,
    mark: str,
    file: UploadedFile | None,
    source: str,
    make: Callable[[UploadedFile], ImageInput],
) -> None:
    """The newest input wins: a new file in an input widget (an upload, a recording) becomes the
    input in use; the widget emptied forgets its input, if that one is in use. `mark` is the
    session key of the file_id last taken from this widget."""
    if file is not None:
        if file.file_id != state[mark]:
            state[mark] = file.file_id
            state["image"] = make(file)
    elif state[mark] is not None:
        state[mark] = None
        if state["image"] is not None and state["image"].source == source:
            state["image"] = None


def feedback_key(image: ImageInput, shown: PredictResponse) -> str:
    """One feedback per image and prediction shown."""
    return f"{image.digest}:{shown.label}"


def remember_prediction(state: Session, image: ImageInput, answer: Any) -> None:
    """Keep a prediction (or the ApiError of the attempt) for this image; forget the oldest."""
    predictions, problems = state["predictions"], state["predict_problems"]
    if isinstance(answer, ApiError):
        problems[image.digest] = answer
        return
    problems.pop(image.digest, None)
    predictions[image.digest] = answer
    while len(predictions) > KEPT_PREDICTIONS:
        predictions.pop(next(iter(predictions)))


def send_once(
    state: Session,
    key: str,
    send: Callable[[], FeedbackResponse],
) -> SentFeedback | ApiError | None:
    """Call `send` unless this feedback was already sent or is in flight (then return None).

    The mark is set before the request and the receipt stored right after it, with no Streamlit
    call in between: a click that interrupts this run cannot slip a second request through.
    """
    sent = state["sent"]
    if key in sent:
        return None
    sent[key] = PENDING
    try:
        receipt = send()
    except ApiError as problem:
        del sent[key]
        state["feedback_problems"][key] = problem
        return problem
    except Exception:
        del sent[key]
        raise
    record = SentFeedback(receipt)
    sent[key] = record
    state["feedback_problems"].pop(key, None)
    return record

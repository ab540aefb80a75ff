"""What the page tells a person when a call to the API fails: what happened and what to do."""

from __future__ import annotations

from serving_client.client import ApiError
from webapp.subject import Subject

# What the page was doing, by route (or a route's prefix), in the person's words.
ACTIONS = {
    "/model": "reading the model's status",
    "/predict": "asking for a prediction",
    "/feedback": "sending your feedback",
    "/samples": "reading the samples",
}
# The sidebar's headline when GET /model fails.
HEADLINES = {
    "unreachable": "The API cannot be reached.",
    "disconnected": "The API cannot be reached.",
    "timeout": "The API is not answering.",
}
OTHER_HEADLINE = "The API is not working as expected."


def headline(problem: ApiError) -> str:
    return HEADLINES.get(problem.kind, OTHER_HEADLINE)


def explain(problem: ApiError, subject: Subject | None = None) -> str:
    """The plain words for a failed call: what happened, and what the person can do (with the
    served model's `subject`, in the words of its data)."""
    action = _action(problem.path)
    maybe_done = " It may or may not have been recorded." if problem.path == "/feedback" else ""
    if problem.kind == "unreachable":
        return (
            f"The prediction service at {problem.base_url} cannot be reached ({problem.reason}) "
            f"while {action}. It may be starting or stopped: wait a moment and try again. If it "
            "lasts, check that the serving API is running and that the webapp's WEBAPP_API_URL "
            "points to it."
        )
    if problem.kind == "timeout":
        return (
            f"The prediction service did not reply within {problem.timeout:g} s while {action}: "
            f"it may be overloaded or stuck.{maybe_done} Wait a moment and try again."
        )
    if problem.kind == "disconnected":
        return (
            f"The connection to the prediction service broke while {action} "
            f"({problem.reason}).{maybe_done} Try again in a moment."
        )
    if problem.kind == "invalid_answer":
        return (
            f"The server at {problem.base_url} answered, but not like the prediction service "
            f"does (HTTP {problem.status}, {problem.content_type or 'no type'}). Check that the "
            "webapp's WEBAPP_API_URL points to the serving API."
        )
    return _refusal(problem, action, subject or Subject())


def _action(path: str) -> str:
    for route, action in ACTIONS.items():
        if path == route or path.startswith(f"{route}/"):
            return action
    return f"calling {path}"


def _refusal(problem: ApiError, action: str, subject: Subject) -> str:
    """An error status, by what it means for the person."""
    status, code = problem.status, problem.code
    said = f": {problem.detail.rstrip('.')}." if problem.detail else "."
    if status == 401:
        todo = (
            "Check that the webapp's API_TOKEN is the same as the API's."
            if problem.token_sent
            else "Set the webapp's API_TOKEN to the API's token and restart the page."
        )
        return f"The prediction service refused this page's request{said} {todo}"
    if status == 413:
        smaller = (
            "Use a shorter sound: a second or two is plenty."
            if subject.audio
            else "Use a smaller image: a few hundred pixels a side is plenty."
        )
        return f"The {subject.noun} is too large for the prediction service{said} {smaller}"
    if status == 422 and code == "unknown_class":
        return f"The prediction service refused the request{said}"
    if status in (415, 422):
        return f"The prediction service could not use this {subject.noun}{said} {subject.retry()}"
    if status == 503 and code == "model_not_ready":
        return (
            "The prediction service has no model loaded yet (it is probably training its first "
            "one). Try again in a minute."
        )
    if status in (404, 405):
        return (
            f"The server at {problem.base_url} has no {problem.path} route (HTTP {status}). Check "
            "that the webapp's WEBAPP_API_URL is the serving API's base address."
        )
    if status is not None and 400 <= status < 500:
        return f"The prediction service refused the request while {action} (HTTP {status}){said}"
    return (
        f"The prediction service failed while {action} (HTTP {status}). Try again in a moment; if "
        f"it keeps failing, the operator can look for request id {problem.request_id} in the "
        "API's logs."
    )

"""The Streamlit page on :8081: give an image (upload, pick a sample, or draw one where the model
reads strokes) or, to a model of sounds, a sound (upload, pick a sample, or record one), predict
it, send its true class.

A script read top to bottom, one section per step. It talks only to the serving API
(WEBAPP_API_URL), and words itself after the data the served model reads (webapp.subject).
"""

from __future__ import annotations

import logging
from functools import partial

import streamlit as st
from pydantic import ValidationError
from streamlit_drawable_canvas import st_canvas

from serving_client.client import ApiClient, ApiError
from serving_client.contract import ModelInfo, PredictResponseWithGrid, SampleListing
from webapp import state
from webapp.gallery import gallery, sample_listing
from webapp.images import (
    UPLOAD_TYPES,
    ImageInput,
    drawing_has_ink,
    from_drawing,
    from_upload,
    grid_picture,
    preview,
)
from webapp.problems import explain, headline
from webapp.settings import WebappSettings
from webapp.sounds import (
    SOUND_TYPES,
    from_recording,
    looks_like_sound,
    playable_type,
    recording_rate,
    spectrogram_picture,
)
from webapp.subject import Subject

log = logging.getLogger("webapp")


@st.cache_resource(show_spinner=False)
def api_client(base_url: str, token: str | None, timeout: float) -> ApiClient:
    """One HTTP connection pool per server process and settings."""
    return ApiClient(base_url, token, timeout, user_agent="ctloop-webapp")


def show_problem(problem: ApiError, subject: Subject) -> None:
    st.error(explain(problem, subject), icon=":material/error:")
    if problem.request_id:
        st.caption(f"Request id: `{problem.request_id}`")


def retrain_report(record: state.SentFeedback, waited: float) -> str:
    """What became of the retrain a feedback started, in one sentence or two."""
    retrain, served = record.retrain, record.served_after
    if retrain is None:
        return (
            f"Your feedback started a retrain (at {record.receipt.rows} rows). It was still "
            f"running after {waited:g} s; the sidebar shows the served model once it is done."
        )
    serving = served.version if served is not None else "the previous model"
    if retrain.decision == "failed":
        return (
            f"The retrain at {retrain.trigger_rows} rows failed: {serving} keeps answering "
            "(the API's logs say why)."
        )
    verdict = {
        "promoted": f"was promoted: {serving} now answers predictions."
        if serving == retrain.version
        else "was promoted; the API is switching to it (the sidebar shows the served one).",
        "rejected": f"was rejected by the quality gate: {serving} keeps answering.",
    }.get(retrain.decision, f"ended as '{retrain.decision}'.")
    return f"Retrain at {retrain.trigger_rows} rows: new version **{retrain.version}** {verdict}"


# -- Settings and state ---------------------------------------------------------------------------

st.set_page_config(page_title="Classifier", page_icon=":material/image:", layout="centered")
# An unexpected error shows a short notice, not a traceback; the traceback goes to the logs.
st.set_option("client.showErrorDetails", "none")
st.set_option("client.toolbarMode", "viewer")
try:
    settings = WebappSettings()
except ValidationError as exc:
    wrong = "; ".join(
        f"{'.'.join(map(str, error['loc'])).upper()}: {error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors()
    )
    st.error(f"The page is misconfigured ({wrong}). Fix its environment and restart it.")
    st.stop()
client = api_client(settings.api_url, settings.api_token, settings.request_timeout_seconds)
session = st.session_state
state.init(session)

# -- Sidebar: is the API there, which model answers -----------------------------------------------

try:
    model: ModelInfo | None = client.model(timeout=settings.status_timeout_seconds)
    status_problem = None
except ApiError as problem:
    model, status_problem = None, problem

# What the page is about follows the served model; kept while the API is away.
if model is not None:
    session.subject = Subject.of(model)
subject: Subject = session.subject
st.set_page_config(page_title=subject.title)

with st.sidebar:
    st.header("Prediction service")
    if model is not None:
        st.success("The API is reachable.", icon=":material/check_circle:")
        st.metric("Model version", model.version)
        accuracy = model.holdout_accuracy
        st.metric("Held-out accuracy", "n/a" if accuracy is None else f"{accuracy:.1%}")
        st.caption(
            f"{model.production_rows} feedback rows collected; "
            f"the next retrain comes in {model.rows_until_retrain} rows."
        )
        last = model.retrain_outcome
        if last is not None:
            decided = f"{last.version} {last.decision}" if last.version else last.decision
            st.caption(f"Last retrain, at {last.trigger_rows} rows: {decided}.")
    elif status_problem is not None:
        st.error(headline(status_problem), icon=":material/cloud_off:")
        st.caption(explain(status_problem, subject))
    st.caption(f"API: `{settings.api_url}`")
    st.markdown(
        f"[API documentation]({settings.public_api_url}/docs)  \n"
        f"[Monitoring dashboard]({settings.dashboard_url})"
    )

# -- 1. The input: upload one, pick a sample, or draw an image or record a sound ------------------

listing: SampleListing | None = None  # None: no gallery (no samples, or an API without them)
if model is not None:
    try:
        fetched = sample_listing(
            client, settings.api_url, model.version, settings.status_timeout_seconds
        )
        listing = fetched if fetched.classes else None
    except ApiError as problem:
        log.warning("no sample gallery: %s", problem)

st.title(subject.title)
st.write(subject.intro)
st.subheader(f"1. Your {subject.noun}")
tab_names = [subject.upload_tab]
tab_names += ["Pick a sample"] if listing is not None else []
tab_names += [subject.draw_tab] if subject.drawing else []
tab_names += [subject.record_tab] if subject.audio else []
tabs = dict(zip(tab_names, st.tabs(tab_names), strict=True))
with tabs[subject.upload_tab]:
    uploaded = st.file_uploader(
        subject.upload_label,
        type=SOUND_TYPES if subject.audio else UPLOAD_TYPES,
        max_upload_size=settings.max_upload_bytes // (1024 * 1024),  # Streamlit counts MB
        key="upload",
    )
picked = None
if listing is not None and model is not None:
    with tabs["Pick a sample"]:
        picked = gallery(client, listing, model.classes, subject)
canvas = None
if subject.drawing:
    with tabs[subject.draw_tab]:
        canvas = st_canvas(
            stroke_width=22,
            stroke_color="#000000",
            background_color="#FFFFFF",
            height=280,
            width=280,
            drawing_mode="freedraw",
            return_image_data=True,
            key="canvas",
        )
        st.caption(subject.draw_hint)
recorded = None
if subject.audio:
    with tabs[subject.record_tab]:
        recorded = st.audio_input(
            subject.record_label, sample_rate=recording_rate(subject.sample_rate), key="recording"
        )
        st.caption(subject.record_hint)

# The newest input wins: a sample picked, a new upload or recording, or a changed drawing.
# Removing one forgets it.
if picked is not None:
    session.image = picked
state.follow(
    session,
    "upload_id",
    uploaded,
    "upload",
    lambda file: from_upload(file.name, file.type, file.getvalue()),
)
state.follow(
    session, "recording_id", recorded, "recording", lambda file: from_recording(file.getvalue())
)
drawn = canvas.image_bytes if canvas is not None and drawing_has_ink(canvas.json_data) else None
if drawn is not None:
    drawing = from_drawing(drawn)
    if drawing.digest != session.drawing_digest:
        session.drawing_digest = drawing.digest
        session.image = drawing
elif session.drawing_digest is not None:
    session.drawing_digest = None
    if session.image is not None and session.image.source == "drawing":
        session.image = None

image: ImageInput | None = session.image
if image is None:
    st.info(subject.begin(listing is not None), icon=":material/arrow_upward:")
    st.stop()

where = {
    "upload": f"uploaded file {image.name}",
    "sample": f"sample {image.name} of class {image.sample_class}",
    "recording": "your recording",
}.get(image.source, "your drawing")
if subject.audio and looks_like_sound(image.data):
    with st.container(key="playback"):
        st.caption(f"In use: {where}. Listen to what will be sent:")
        st.audio(image.data, format=playable_type(image.media_type))
elif subject.audio:
    st.warning(
        f"In use: {where}. This file cannot be played here (it does not look like a sound); "
        "the prediction service will say whether it can hear it.",
        icon=":material/music_off:",
    )
elif (shown := preview(image.data)) is not None:
    st.image(shown, caption=f"In use: {where}", width=140)
else:
    st.warning(
        f"In use: {where}. This file cannot be shown here (it does not look like an image); "
        "the prediction service will say whether it can read it.",
        icon=":material/image_not_supported:",
    )

# -- 2. Predict ---------------------------------------------------------------------------------

st.subheader("2. Prediction")
if st.button("Predict", type="primary", key="predict"):
    with st.spinner("Asking the model…"):
        try:
            answer: PredictResponseWithGrid | ApiError = client.predict(
                image.data, image.name, image.media_type, grid=True
            )
        except ApiError as problem:
            log.warning("predict failed: %s (request id %s)", problem.kind, problem.request_id)
            answer = problem
    state.remember_prediction(session, image, answer)

predict_problem = session.predict_problems.get(image.digest)
prediction: PredictResponseWithGrid | None = session.predictions.get(image.digest)
if predict_problem is not None:
    show_problem(predict_problem, subject)
if prediction is None:
    if predict_problem is None:
        st.caption("Click **Predict** to see what the model reads.")
    st.stop()

with st.container(key="prediction"):
    class_column, confidence_column = st.columns(2)
    class_column.metric("Predicted class", prediction.label)
    confidence_column.metric("Confidence", f"{prediction.confidence:.1%}")
    seen_column, top_column = st.columns(2)
    side = len(prediction.grid)
    if subject.audio:
        spectrogram = spectrogram_picture(prediction.grid)
        seen_column.image(
            spectrogram, caption=subject.spectrogram_caption(side), width=spectrogram.width
        )
    else:
        seen_column.image(
            grid_picture(prediction.grid, subject.framing or "strokes"),
            caption=f"What the model saw: your image reduced to {side} × {side} cells",
            width=140,
        )
    with top_column.container(key="top3"):
        st.markdown("**Most likely classes**")
        st.markdown(
            "\n".join(
                f"{rank}. **{label}**: {probability:.1%}"
                for rank, (label, probability) in enumerate(prediction.top(3), start=1)
            )
        )
    classes = model.classes if model is not None else list(prediction.probabilities)
    ordered = [c for c in classes if c in prediction.probabilities] or list(
        prediction.probabilities
    )
    st.bar_chart(
        {"class": ordered, "probability": [prediction.probabilities[c] for c in ordered]},
        x="class",
        y="probability",
        height=220,
    )
    st.caption(f"Answered by model **{prediction.model_version}**.")

# -- 3. Feedback: the true class ---------------------------------------------------------------

st.subheader("3. Feedback")
key = state.feedback_key(image, prediction)
record = session.sent.get(key)
with st.container(key="feedback"):
    target = st.selectbox(
        "The true class",
        classes,
        index=classes.index(prediction.label) if prediction.label in classes else 0,
        key=f"target:{key}",
        disabled=record is not None,
    )
    clicked = st.button("Send feedback", key="send_feedback", disabled=record is not None)

if clicked:
    with st.spinner("Sending your feedback…"):
        outcome = state.send_once(
            session,
            key,
            partial(
                client.feedback,
                image.data,
                target,
                prediction.label,
                filename=image.name,
                media_type=image.media_type,
            ),
        )
    if isinstance(outcome, ApiError):
        log.warning("feedback failed: %s (request id %s)", outcome.kind, outcome.request_id)
    elif outcome is None:
        st.info("This feedback was already sent: it is counted once.", icon=":material/info:")
    elif isinstance(outcome, state.SentFeedback) and outcome.receipt.retrain_triggered:
        with st.spinner("Your feedback started a retrain; waiting for its outcome…"):
            outcome.retrain, outcome.served_after = client.wait_for_retrain(
                outcome.receipt.rows, settings.retrain_wait_seconds
            )
    if isinstance(outcome, state.SentFeedback):
        st.rerun()  # so that the sidebar counts this row and shows the model now served

record = session.sent.get(key)
feedback_problem = session.feedback_problems.get(key)
if isinstance(record, state.SentFeedback):
    receipt = record.receipt
    st.success(
        f"Thank you: recorded **{receipt.target}** as the true class "
        f"(the model said {prediction.label}). "
        f"Rows collected: **{receipt.rows}**. "
        f"Rows until the next retrain: **{receipt.rows_until_retrain}**.",
        icon=":material/check_circle:",
    )
    if receipt.retrain_triggered:
        st.info(retrain_report(record, settings.retrain_wait_seconds), icon=":material/autorenew:")
    st.caption(f"Give another {subject.noun} to send more feedback.")
elif feedback_problem is not None:
    show_problem(feedback_problem, subject)

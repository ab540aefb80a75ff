"""The page's sample gallery: a few images (or sounds) of each class that the model never learnt
from, from the API (GET /samples), any of which a person can pick as the input to predict."""

from __future__ import annotations

import logging

import streamlit as st

from serving_client.client import ApiClient, ApiError
from serving_client.contract import SampleFile, SampleListing
from webapp.images import ImageInput, from_sample, preview
from webapp.problems import headline
from webapp.sounds import playable_type
from webapp.subject import Subject

log = logging.getLogger("webapp")

PER_CLASS = 4
THUMBNAIL_SIDE = 96


# Kept as they are, not pickled (st.cache_data would). The samples change only when `ctloop init`
# runs again; a failed call is not kept.
@st.cache_resource(show_spinner=False, ttl=60, max_entries=8)
def sample_listing(
    _client: ApiClient, base_url: str, version: str, timeout: float
) -> SampleListing:
    """GET /samples, once a minute at most per API and served version."""
    return _client.samples(PER_CLASS, timeout=timeout)


@st.cache_resource(show_spinner=False, ttl=600, max_entries=256)
def sample_image(
    _client: ApiClient, base_url: str, url: str, _file: SampleFile
) -> tuple[bytes, str]:
    """One sample's bytes and media type."""
    return _client.sample(_file)


def gallery(
    client: ApiClient, listing: SampleListing, classes: list[str], subject: Subject
) -> ImageInput | None:
    """A class to choose, a few of its samples to see (or hear); the sample picked on this run,
    if any. Only the model's classes are offered (feedback on another would be refused)."""
    files = {entry.label: entry.files for entry in listing.classes}
    label = st.selectbox("Class", [c for c in classes if c in files], key="sample_class")
    if label is None:
        return None
    picked = None
    for column, file in zip(st.columns(PER_CLASS), files[label], strict=False):
        with column:
            try:
                data, media_type = sample_image(client, client.base_url, file.url, file)
            except ApiError as problem:
                log.warning("sample %s: %s", file.url, problem)
                st.caption(f"{file.name}: cannot be read ({headline(problem)})")
                continue
            if subject.audio:
                st.audio(data, format=playable_type(media_type))
                st.caption(file.name)
            elif (shown := preview(data, side=THUMBNAIL_SIDE)) is not None:
                st.image(shown, caption=file.name, width=THUMBNAIL_SIDE)
            else:
                st.caption(file.name)
            if st.button("Use this one", key=f"sample:{label}/{file.name}"):
                picked = from_sample(label, file.name, media_type, data)
    kind = "Sounds" if subject.audio else "Images"
    st.caption(f"{kind} of the dataset that the model never learnt from (`data/samples/`).")
    return picked

"""The page follows the data the served model reads: its title and words, the drawing tab only
for strokes, a gallery of samples that go through Predict and Feedback like an upload, and the
grid the model saw drawn as the API defines its cells (ink, brightness or colour).

The page under AppTest against real APIs: the digits, and faces (scikit-image's LFW subset, read
whole in grey: a model of photographs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from ctloop.candidate import train_candidate
from ctloop.reference import build_reference
from ctloop.registry import ModelRegistry
from harness import loopback
from harness.data import copy_workspace, make_settings, prod_rows
from harness.datasets import write_images
from harness.processes import LiveServer
from serving_client.client import ApiClient, ApiError
from serving_client.contract import SampleFile
from tests.webapp.models import model_info, stroke_grid
from webapp import images
from webapp.subject import Subject

FACES = ["face", "not-face"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A model of photographs: 100 faces and 100 other pictures (25 x 25, grey) in a folder
    named 'faces', read whole on an 8 x 8 grid; a real API serving it."""
    from skimage.data import lfw_subset

    root = tmp_path_factory.mktemp("faces")
    pictures = (lfw_subset() * 255).round().astype(np.uint8)
    source = write_images(
        root / "datasets" / "faces", pictures, FACES[:1] * 100 + FACES[1:] * 100, "lfw"
    )
    settings = make_settings(
        root,
        dataset=str(source),
        image_framing="whole",
        image_size=8,
        image_channels=1,
        pca_components=32,
    )
    build_reference(settings)
    train_candidate(settings, ModelRegistry(settings.artifacts_dir))
    with LiveServer(settings, root / "server.log", RETRAIN_EVERY="1000") as server:
        yield server


@dataclass
class Drawn:
    grid: list
    framing: str
    picture: Image.Image


@pytest.fixture
def drawn_grids(monkeypatch: pytest.MonkeyPatch) -> list[Drawn]:
    """Every grid the page draws (the page imports `grid_picture` from webapp.images each run)."""
    calls: list[Drawn] = []
    real = images.grid_picture

    def spy(grid, framing="strokes", side=140):
        picture = real(grid, framing, side)
        calls.append(Drawn(grid, framing, picture))
        return picture

    monkeypatch.setattr(images, "grid_picture", spy)
    return calls


def texts(at: AppTest) -> str:
    """Every word the page's main area and tabs show."""
    parts = [e.value for e in (*at.title, *at.markdown, *at.caption, *at.info, *at.subheader)]
    parts += [tab.label for tab in at.tabs]
    parts += [uploader.proto.label for uploader in at.get("file_uploader")]
    return "\n".join(str(part) for part in parts)


def tab_labels(at: AppTest) -> list[str]:
    return [tab.label for tab in at.tabs]


def shown_samples(at: AppTest) -> list[str]:
    return [
        image.proto.imgs[0].caption
        for image in at.image
        if not image.proto.imgs[0].caption.startswith(("In use", "What the model saw"))
    ]


def pick(at: AppTest, label: str) -> tuple[AppTest, str]:
    """Choose a class in the gallery and use its first sample; the sample's name."""
    at.selectbox(key="sample_class").select(label).run()
    first = shown_samples(at)[0]
    return at.button(key=f"sample:{label}/{first}").click().run(), first


def cell(picture: Image.Image, row: int, column: int, side: int) -> tuple[int, ...]:
    size = picture.width // side
    return picture.getpixel((column * size + size // 2, row * size + size // 2))


# -- Words, tabs and title -----------------------------------------------------------------------


def test_a_digit_model_keeps_digit_words_and_the_drawing_tab(api, page) -> None:
    at = page(api.url).run()
    assert not at.exception
    assert [title.value for title in at.title] == ["Digits classifier"]
    assert tab_labels(at) == ["Upload an image", "Pick a sample", "Draw a digit"]
    assert [info.value for info in at.info] == [
        "Upload an image, pick a sample or draw a digit to begin."
    ]
    assert at.file_uploader(key="upload").proto.label == (
        "A PNG, JPEG, BMP, GIF or WebP image of one digit"
    )
    assert "handwritten digit" in texts(at)
    assert at.get("bidi_component"), "the drawing canvas"


def test_a_model_of_photographs_has_its_own_words_and_no_drawing(faces, page) -> None:
    at = page(faces.url).run()
    assert not at.exception
    assert [title.value for title in at.title] == ["Faces classifier"]
    assert tab_labels(at) == ["Upload an image", "Pick a sample"], "no drawing of a photograph"
    words = texts(at)
    assert "digit" not in words.lower(), words
    assert "Its classes: face, not-face." in words
    assert [info.value for info in at.info] == ["Upload an image or pick a sample to begin."]
    assert at.file_uploader(key="upload").proto.label == "A PNG, JPEG, BMP, GIF or WebP picture"
    assert at.selectbox(key="sample_class").options == FACES, "class names from the model"


def test_without_samples_there_is_no_gallery(built, tmp_path, page) -> None:
    settings = copy_workspace(built, tmp_path)
    settings.samples_dir.rename(tmp_path / "elsewhere")
    with LiveServer(settings, tmp_path / "server.log") as server:
        at = page(server.url).run()
    assert not at.exception and not at.error
    assert tab_labels(at) == ["Upload an image", "Draw a digit"]
    assert [info.value for info in at.info] == ["Upload an image or draw a digit to begin."]


# -- The gallery: a sample goes through Predict and Feedback like an upload -----------------------


def test_a_sample_picked_is_predicted_and_its_feedback_recorded(faces, page, drawn_grids) -> None:
    listing = loopback.get(f"{faces.url}/samples", params={"per_class": 4}).json()
    not_faces = next(entry for entry in listing["classes"] if entry["label"] == "not-face")
    at = page(faces.url).run()
    assert shown_samples(at) == [f["name"] for f in listing["classes"][0]["files"]]
    at, name = pick(at, "not-face")
    assert shown_samples(at) == [f["name"] for f in not_faces["files"]]
    in_use = [i.proto.imgs[0].caption for i in at.image if i.proto.imgs[0].caption.startswith("In")]
    assert in_use == [f"In use: sample {name} of class not-face"]

    at.button(key="predict").click().run()
    assert not at.exception and not at.error
    data = loopback.get(f"{faces.url}{not_faces['files'][0]['url']}").content
    direct = loopback.post(f"{faces.url}/predict", files={"file": (name, data)}).json()
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["Predicted class"] == direct["label"]
    assert shown["Confidence"] == f"{direct['confidence']:.1%}"

    true_class = next(box for box in at.selectbox if box.label == "The true class")
    assert true_class.options == FACES
    true_class.select("not-face").run()
    at.button(key="send_feedback").click().run()
    assert not at.exception and not at.error
    rows = prod_rows(faces.settings)
    assert [(row["target"], row["prediction"]) for row in rows] == [("not-face", direct["label"])]

    # What the model saw: brightness, shown as it is (a photograph is not ink).
    grid = np.array(drawn_grids[-1].grid)
    assert drawn_grids[-1].framing == "whole" and grid.shape == (8, 8)
    darkest = np.unravel_index(grid.argmin(), grid.shape)
    brightest = np.unravel_index(grid.argmax(), grid.shape)
    assert grid.max() - grid.min() > 0.3, "a picture with contrast, or the check proves nothing"
    picture = drawn_grids[-1].picture
    for where in (darkest, brightest):
        assert cell(picture, *where, 8) == (round(grid[where] * 255),) * 3


def test_a_digit_is_shown_as_dark_ink_on_white(api, page, samples, drawn_grids) -> None:
    at = page(api.url).run()
    at.file_uploader(key="upload").set_value(("3.png", samples["3"], "image/png")).run()
    at.button(key="predict").click().run()
    assert not at.exception
    grid = np.array(drawn_grids[-1].grid)
    assert drawn_grids[-1].framing == "strokes" and grid.max() > 0.8
    most_ink = np.unravel_index(grid.argmax(), grid.shape)
    assert cell(drawn_grids[-1].picture, *most_ink, 8) == (round(255 - grid[most_ink] * 255),) * 3


# -- The pieces ----------------------------------------------------------------------------------


def test_grid_pictures_follow_the_definition_of_the_cells() -> None:
    grey = [[0.0, 1.0], [0.25, 0.5]]
    ink = images.grid_picture(grey, "strokes", side=2)
    brightness = images.grid_picture(grey, "whole", side=2)
    assert [ink.getpixel((x, y)) for y in (0, 1) for x in (0, 1)] == [
        (255,) * 3,
        (0,) * 3,
        (191,) * 3,
        (128,) * 3,
    ]
    assert [brightness.getpixel((x, y)) for y in (0, 1) for x in (0, 1)] == [
        (0,) * 3,
        (255,) * 3,
        (64,) * 3,
        (128,) * 3,
    ]
    colour = [[[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]]]
    for framing in ("whole", "strokes"):
        picture = images.grid_picture(colour, framing, side=2)
        assert picture.getpixel((0, 0)) == (255, 0, 0)
        assert picture.getpixel((1, 0)) == (0, 128, 255)


def test_the_words_follow_the_model() -> None:
    letters = Subject.of(model_info(["a", "b", "c"], "letters", stroke_grid("strokes")))
    assert letters.drawing and not letters.digits
    assert letters.title == "Letters classifier" and letters.draw_tab == "Draw"
    assert "digit" not in " ".join([letters.intro, letters.upload_label, letters.begin(True)])
    assert letters.begin(True) == "Upload an image, pick a sample or draw one to begin."

    textures = Subject.of(
        model_info(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], "t", stroke_grid("whole"))
    )
    assert not textures.drawing and not textures.digits, "ten digit classes of photographs"
    assert "digit" not in textures.intro and textures.begin(False) == "Upload an image to begin."

    older = Subject.of(model_info([str(d) for d in range(10)], None, None))
    assert older.title == "Image classifier" and older.drawing and older.digits, (
        "an API from before `preprocessing` served strokes"
    )
    many = Subject.of(model_info([f"c{i}" for i in range(30)], "many", stroke_grid("whole")))
    assert many.intro.endswith("c11 and 18 more.")
    assert not Subject().drawing and Subject().title == "Image classifier"


# -- The client's two calls ------------------------------------------------------------------------


def test_the_client_lists_and_fetches_samples(faces) -> None:
    with ApiClient(faces.url, timeout=10) as client:  # no token: reads are open
        listing = client.samples(2)
        assert [entry.label for entry in listing.classes] == FACES
        file = listing.classes[1].files[1]
        data, media_type = client.sample(file)
    assert media_type == "image/png"
    assert data == (faces.settings.samples_dir / "not-face" / file.name).read_bytes()


def test_the_client_follows_no_sample_url_off_the_api() -> None:
    calls = []

    def transport(request: httpx.Request) -> httpx.Response:
        calls.append(request.url)
        if request.url.path.startswith("/samples/"):
            return httpx.Response(200, text="<html>", headers={"content-type": "text/html"})
        return httpx.Response(404)

    client = ApiClient("http://api.test", token="t", transport=httpx.MockTransport(transport))
    for url in ("http://elsewhere.test/samples/a/b.png", "//elsewhere.test/x", "/model"):
        with pytest.raises(ApiError) as refused:
            client.sample(SampleFile(name="b.png", url=url, media_type="image/png", size_bytes=1))
        assert refused.value.kind == "invalid_answer"
    assert calls == [], "the token never leaves for another host or route"
    with pytest.raises(ApiError) as refused:
        client.sample(SampleFile(name="b.png", url="/samples/a/b.png", media_type="", size_bytes=1))
    assert refused.value.kind == "invalid_answer" and refused.value.content_type == "text/html"

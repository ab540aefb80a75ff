"""The API on a model of sounds: the same routes, fields and refusals as for pictures.

The model is `built_audio`'s (spoken digits, harness.speech); the sounds sent are spoken by
voices and at speeds the model never heard.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from ctloop.audio import AudioSpec, preprocess_audio
from ctloop.config import CoreSettings
from ctloop.delivery import routed_to_challenger
from ctloop.prod_data import open_production
from ctloop.registry import ModelRegistry
from harness.asgi import BlockingClient, in_process_blocking, serving_settings
from harness.data import copy_workspace, embedding_size
from harness.delivery import register_challenger
from harness.images import b64
from harness.processes import LiveServer, wait_for
from harness.speech import HELD_OUT_SPEEDS, HELD_OUT_VOICES, WORDS, speak

soundfile = pytest.importorskip("soundfile")


def spoken(digit: int, voice: str = HELD_OUT_VOICES[0], speed: int = HELD_OUT_SPEEDS[0]) -> bytes:
    return speak(WORDS[digit], voice, speed, 50)


def recoded(wav: bytes, fmt: str, subtype: str | None = None) -> bytes:
    samples, rate = soundfile.read(io.BytesIO(wav))
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


@pytest.fixture(scope="module")
def settings(built_audio: CoreSettings, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("audio-api")
    return serving_settings(
        copy_workspace(built_audio, root),
        root / "secrets",
        max_batch=8,
        retrain_every=1000,
        max_audio_seconds=5.0,
    )


@pytest.fixture(scope="module")
def client(settings) -> Iterator[BlockingClient]:
    with in_process_blocking(settings) as http:
        yield http


def rows_on_disk(settings) -> int:
    return open_production(settings, embedding_size(settings)).count_rows_on_disk()


def test_the_model_says_it_reads_sounds(client: BlockingClient) -> None:
    body = client.get("/model").json()
    assert body["preprocessing"] == {
        "medium": "audio",
        "framing": "log-mel",
        "size": 32,
        "columns": 32,
        "channels": 1,
        "sample_rate": 16000,
        "seconds": 1.0,
    }
    assert body["classes"] == [str(digit) for digit in range(10)]


@pytest.mark.parametrize("digit", [0, 3, 7])
def test_a_sound_upload_and_its_base64_give_one_answer(client: BlockingClient, digit: int) -> None:
    wav = spoken(digit)
    upload = client.post("/predict", files={"file": ("digit.wav", wav, "audio/wav")})
    assert upload.status_code == 200, upload.text
    as_json = client.post("/predict", json={"image": b64(wav)}).json()
    assert upload.json()["label"] == as_json["label"] == str(digit)
    assert upload.json()["probabilities"] == as_json["probabilities"]


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", None), ("OGG", "VORBIS"), ("MP3", None)])
def test_other_formats_are_heard_alike(client: BlockingClient, fmt: str, subtype) -> None:
    wav = spoken(5, HELD_OUT_VOICES[1], HELD_OUT_SPEEDS[1])
    reply = client.post(
        "/predict", files={"file": (f"five.{fmt.lower()}", recoded(wav, fmt, subtype))}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["label"] == "5"


def test_the_grid_is_the_spectrogram_the_model_saw(client: BlockingClient) -> None:
    wav = spoken(9)
    body = client.post("/predict?grid=true", json={"image": b64(wav)}).json()
    grid = np.array(body["grid"])
    assert grid.shape == (32, 32)
    assert np.abs(grid.reshape(-1) - preprocess_audio(wav, AudioSpec())).max() <= 1e-4


def test_a_batch_of_sounds(client: BlockingClient) -> None:
    digits = [1, 2, 8]
    reply = client.post("/predict", json={"images": [b64(spoken(d)) for d in digits]})
    assert reply.status_code == 200, reply.text
    assert [p["label"] for p in reply.json()["predictions"]] == [str(d) for d in digits]


def test_feedback_on_a_sound_is_a_row(client: BlockingClient, settings) -> None:
    before = rows_on_disk(settings)
    wav = spoken(4, HELD_OUT_VOICES[1])
    reply = client.post(
        "/feedback", files={"file": ("four.wav", wav)}, data={"target": "4", "prediction": "4"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["rows"] == before + 1
    assert reply.json()["prediction"] == "4"
    reply = client.post("/feedback", json={"image": b64(spoken(6)), "target": "6"})
    assert reply.status_code == 200, reply.text
    assert rows_on_disk(settings) == before + 2


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return recoded_samples(np.zeros(int(rate * seconds), np.float32), rate)


def recoded_samples(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def bad_inputs() -> list[tuple[str, bytes, int, str]]:
    wav = spoken(2)
    tone = 0.3 * np.sin(np.arange(16_000 * 6) / 16_000 * 2 * np.pi * 440)
    return [
        ("truncated", wav[:30], 422, "corrupt_audio"),
        ("not a sound", b"hello, this is text and no sound at all" * 10, 422, "not_audio"),
        ("silence", silence(1.0), 422, "silent_audio"),
        ("too long", recoded_samples(tone.astype(np.float32), 16_000), 413, "audio_too_long"),
    ]


@pytest.mark.parametrize(("case", "data", "status", "code"), bad_inputs())
def test_bad_sounds_get_a_clear_refusal_and_nothing_is_written(
    client: BlockingClient, settings, case: str, data: bytes, status: int, code: str
) -> None:
    before = rows_on_disk(settings)
    for route, kwargs in (
        ("/predict", {"files": {"file": ("x.wav", data)}}),
        ("/feedback", {"files": {"file": ("x.wav", data)}, "data": {"target": "2"}}),
        ("/feedback", {"json": {"image": b64(data), "target": "2"}}),
    ):
        reply = client.post(route, **kwargs)
        assert reply.status_code == status, (case, route, reply.text)
        assert reply.json()["error"] == code, (case, reply.text)
        assert reply.json()["detail"]
    assert rows_on_disk(settings) == before


def test_a_bad_sound_in_a_batch_is_named(client: BlockingClient) -> None:
    reply = client.post("/predict", json={"images": [b64(spoken(1)), b64(spoken(2)[:40])]})
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("images[1]: ")


def test_a_picture_sent_to_a_model_of_sounds_is_refused(
    client: BlockingClient, samples: dict[str, bytes]
) -> None:
    reply = client.post("/predict", json={"image": b64(samples["3"])})
    assert reply.status_code == 422
    assert reply.json()["error"] == "not_audio"


@pytest.mark.slow
def test_sound_feedback_retrains_and_the_new_version_is_served(
    built_audio: CoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The loop on sound, through a real uvicorn: k feedback rows start a retrain in another
    process; its decision is logged, and a promoted version answers."""
    root = tmp_path_factory.mktemp("audio-loop")
    core = copy_workspace(built_audio, root)
    with (
        LiveServer(core, root / "server.log", RETRAIN_EVERY="12") as live,
        httpx.Client(base_url=live.url, timeout=60, headers=live.auth) as http,
    ):
        for index in range(12):
            digit = index % 10
            voice = HELD_OUT_VOICES[index % 2]
            sound = spoken(digit, voice, HELD_OUT_SPEEDS[index % 2])
            reply = http.post("/feedback", json={"image": b64(sound), "target": str(digit)})
            assert reply.status_code == 200, reply.text
        assert reply.json()["retrain_triggered"]
        registry = ModelRegistry(core.artifacts_dir)
        wait_for(lambda: len(registry.list_versions()) >= 2, timeout=120)
        current = registry.current_version()
        wait_for(
            lambda: (
                http.post("/predict", json={"image": b64(spoken(3))}).json()["model_version"]
                == current
            ),
            timeout=30,
        )
        assert http.post("/predict", json={"image": b64(spoken(3))}).json()["label"] == "3"


def test_a_canary_of_a_sound_model_answers_its_share_of_clients(
    built_audio: CoreSettings, tmp_path
) -> None:
    """Shadow and canary act on embeddings and versions, whatever the medium: a canary on the
    sound model answers the clients the split gives it, and records their feedback."""
    settings = serving_settings(copy_workspace(built_audio, tmp_path), tmp_path / "secrets")
    challenger = register_challenger(settings, flip=True)
    ModelRegistry(settings.artifacts_dir).start_stage(challenger, "canary", 50.0, "test", 0)
    clients = [f"listener-{i}" for i in range(12)]
    expected = {
        c: challenger if routed_to_challenger(f"client:{c}", 50.0) else "v0001" for c in clients
    }
    assert set(expected.values()) == {challenger, "v0001"}
    with in_process_blocking(settings) as http:
        wait_for(lambda: http.get("/model").json()["delivery"]["stage"], timeout=10)
        sound = {"image": b64(spoken(7))}
        for client in clients:
            headers = {"X-Client-ID": client}
            answered = http.post("/predict", json=sound, headers=headers).json()
            assert answered["model_version"] == expected[client], client
        reply = http.post(
            "/feedback", json={**sound, "target": "7"}, headers={"X-Client-ID": clients[0]}
        ).json()
        assert reply["model_version"] == expected[clients[0]]


def test_no_sound_is_read_on_the_event_loop(client: BlockingClient, monkeypatch) -> None:
    """Headers (an MP3's length is counted over its frames) and decoding run in threads: a big
    upload never stalls the worker's other requests."""
    import asyncio

    from serving import images

    on_loop = []

    def spied(function):
        def call(*args, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop.append(function.__name__)
            except RuntimeError:  # no loop in this thread: a worker thread
                pass
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(images, "read_header", spied(images.read_header))
    monkeypatch.setattr(images, "preprocess_audio", spied(images.preprocess_audio))
    mp3 = recoded(spoken(8), "MP3")
    reply = client.post("/predict", json={"images": [b64(mp3), b64(spoken(2))]})
    assert reply.status_code == 200, reply.text
    assert [p["label"] for p in reply.json()["predictions"]] == ["8", "2"]
    assert on_loop == []

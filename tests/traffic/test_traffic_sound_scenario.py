"""The drift scenario on a model of sounds (built_audio: spoken digits): the API in process for a
short scenario, then, in a slow test, a live server that retrains on the drifted feedback. Before
any request, a drift of the wrong medium and a model of the other medium are refused."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from ctloop.config import CoreSettings
from ctloop.prod_data import open_production
from harness.asgi import BlockingClient, in_process_blocking, serving_settings
from harness.data import copy_workspace, embedding_size
from harness.processes import LiveServer, ReportingServer
from traffic.__main__ import main
from traffic.scenario import Scenario, TrafficError, run


class AppTransport(httpx.BaseTransport):
    """httpx's synchronous transport over the app in this process (harness.asgi), so that the
    simulator's own client (serving_client.ApiClient) calls it as it would call a server."""

    def __init__(self, http: BlockingClient) -> None:
        self._http = http

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        reply = self._http.request(
            request.method, request.url.raw_path.decode(), headers=headers, content=request.read()
        )
        dropped = ("content-encoding", "content-length", "transfer-encoding")  # decoded already
        kept = [(k, v) for k, v in reply.headers.items() if k not in dropped]
        return httpx.Response(reply.status_code, headers=kept, content=reply.content)


@pytest.fixture(scope="module")
def sound_api(
    built_audio: CoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CoreSettings, AppTransport]]:
    root = tmp_path_factory.mktemp("sound-traffic")
    core = copy_workspace(built_audio, root)
    settings = serving_settings(core, root / "secrets", retrain_every=1000)
    with in_process_blocking(settings) as http:
        yield core, AppTransport(http)


def test_a_sound_scenario_plays_clean_then_drifted_sounds(sound_api) -> None:
    core, transport = sound_api
    scenario = Scenario(
        url="http://serving.test",
        samples_dir=core.samples_dir,
        transform="speed",
        window=10,
        clean_windows=1,
        drift_windows=2,
        evaluation_size=30,
        transport=transport,
    )
    records = run(scenario)
    assert [r.phase for r in records] == ["clean", "speed", "speed"]
    assert [r.rows for r in records] == [10, 20, 30]
    assert open_production(core, embedding_size(core)).count_rows_on_disk() == 30
    assert all(r.version_after == "v0001" and r.retrains == 0 for r in records)  # k = 1000
    # Sounds played 25 to 40 % faster or slower: the first model hears many of them wrong.
    first = records[0]
    assert first.clean_accuracy >= 0.9 and first.served_accuracy >= 0.8
    assert first.drifted_accuracy <= first.clean_accuracy - 0.3
    assert np.mean([r.served_accuracy for r in records[1:]]) <= first.served_accuracy - 0.3


def a_sound(rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, 0.3 * np.sin(np.arange(rate // 2) / rate * 2 * np.pi * 440), rate,
                    format="WAV")  # fmt: skip
    return out.getvalue()


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    for label in ("0", "1"):
        (tmp_path / "sounds" / label).mkdir(parents=True)
        (tmp_path / "sounds" / label / "a.wav").write_bytes(a_sound())
    return tmp_path / "sounds"


def test_a_picture_drift_on_sounds_is_refused_before_any_request(sounds: Path) -> None:
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: calls.append(request) or httpx.Response(500))
    scenario = Scenario(samples_dir=sounds, transform="slant", transport=transport)
    with pytest.raises(TrafficError, match="'slant' is no drift of sounds; one of background,"):
        run(scenario)
    assert calls == []


def test_sounds_against_a_model_of_pictures_are_refused(sounds: Path) -> None:
    model = {
        "version": "v0001", "created_at": "2026-01-01T00:00:00Z", "parent": None,
        "classes": ["0", "1"], "metrics": {}, "training": {}, "retrain_every": 20,
        "promotion_policy": "gate", "gate_rule": "...", "production_rows": 0,
        "rows_since_last_retrain": 0, "rows_until_retrain": 20, "retrain_backlog": 0,
        "last_retrain": None,
        "preprocessing": {"medium": "image", "framing": "strokes", "size": 8, "channels": 1},
    }  # fmt: skip
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200 if request.url.path == "/model" else 500, json=model)

    transport = httpx.MockTransport(answer)
    scenario = Scenario(samples_dir=sounds, transform="speed", transport=transport)
    with pytest.raises(TrafficError, match="are sounds, and the served model reads pictures"):
        run(scenario)
    assert paths == ["/model"]  # nothing was predicted nor sent as feedback


def test_the_command_line_names_the_drifts_of_sounds(
    sounds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before the URL is called (nothing listens on port 9).
    argv = ["--url", "http://127.0.0.1:9", "--samples-dir", str(sounds), "--transform", "blur"]
    assert main(argv) == 1
    said = capsys.readouterr().err
    assert "'blur' is no drift of sounds; one of background, speed, pitch, quiet, loud, " in said
    assert "microphone" in said


@pytest.mark.slow
def test_retraining_on_sounds_from_a_new_microphone_wins_accuracy_back(
    built_audio: CoreSettings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A real server (k = 12) and the dashboard: sounds through a band-limited microphone in a
    small room cost the first model much of its accuracy; the drift shows in the dashboard, and
    three retrains on the drifted feedback win a good part of it back, clean sounds kept."""
    root = tmp_path_factory.mktemp("sound-traffic-live")
    core = copy_workspace(built_audio, root)
    dashboard_env = {"REPORTING_REFRESH_SECONDS": "1", "MONITORING_MIN_ROWS": "12"}
    with (
        LiveServer(core, root / "server.log", RETRAIN_EVERY="12") as server,
        ReportingServer(core.data_dir, root / "reporting.log", **dashboard_env) as dashboard,
    ):
        scenario = Scenario(
            url=server.url,
            samples_dir=core.samples_dir,
            transform="microphone",
            clean_windows=1,
            drift_windows=3,
            evaluation_size=24,  # of the 72 unseen sounds: 48 are traffic, 4 windows of k
            metrics_url=dashboard.metrics_url,
            token=server.token,
        )
        records = run(scenario)
    assert [r.rows for r in records] == [12, 24, 36, 48]
    first, last = records[0], records[-1]  # first: scored after the clean window's retrain
    assert first.drifted_accuracy <= first.clean_accuracy - 0.3  # measured: 1.00 and 0.50
    assert last.retrains == 4 and last.promoted >= 2
    assert last.drifted_accuracy >= first.drifted_accuracy + 0.15  # measured: 0.79
    assert min(r.clean_accuracy for r in records) >= 0.9
    assert first.drift_share is not None
    assert max(r.drift_share or 0.0 for r in records[1:]) >= first.drift_share + 0.25

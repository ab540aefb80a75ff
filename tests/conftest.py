"""Shared fixtures: a reference build and a first model in a temporary folder, built once.

The suite trains at a size for tests (TEST_SIZED: one network instead of the product's five,
fewer epochs, two transformed copies of each picture instead of eight), set in the environment
before anything reads its settings, so that the servers and command lines the tests start train
the same way: every reference build, retrain and first model costs a fraction. The product's own
sizes are `built_full`'s, which the tests of the model's quality (tests/model) and the browser's
drawn digits use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from ctloop.candidate import train_candidate
from ctloop.config import CoreSettings
from ctloop.reference import build_reference
from ctloop.registry import ModelRegistry
from harness.data import make_settings, plain_settings, typical_samples
from harness.processes import postgres_database
from harness.speech import write_spoken_digits

TEST_SIZED = {
    "HEAD_MEMBERS": "1",
    "HEAD_EPOCHS": "30",
    "AUGMENT_EMBEDDING_COPIES": "2",
    "AUGMENT_REFERENCE_COPIES": "2",
    "AUGMENT_FEEDBACK_COPIES": "2",
}


# One BLAS / OpenMP thread per process: make test runs two pytest workers on two cores, each
# starting servers and trainers, and numpy's OpenBLAS would otherwise give every process two
# threads that spin while they wait for each other (the trainers the API starts already run so:
# serving.retraining.SINGLE_THREAD). Set before xdist starts its workers, so they and every
# process they start read it when numpy loads.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pytest_configure(config: pytest.Config) -> None:
    for name, value in {**TEST_SIZED, **ONE_THREAD}.items():
        os.environ.setdefault(name, value)


# The files that take longest (pytest --durations), run first: make test's two workers take a file
# at a time in this order, and a long file taken last would leave the other worker idle at the
# end. The first two build the session's two largest fixtures, one each.
LONGEST_FIRST = (
    "model/test_model.py",  # built_full
    "traffic/test_traffic_scenario.py",  # plain_built
    "traffic/test_traffic_sound_scenario.py",  # built_audio, and a 48 s live scenario
    "bench/test_bench_smoke.py",
    "webapp/test_webapp_browser.py",
    "serving/test_api_poisoning.py",
    "tracking/test_mirror.py",  # three MLflow server start-ups
    "webapp/test_webapp_page.py",
    "serving/test_api_delivery.py",
    "reporting/test_reporting_ui.py",
    "code/test_stage.py",
    "code/test_trainer.py",
    "serving/test_api_retrain.py",
    "reporting/test_reporting_drift.py",
    "reporting/test_reporting_quality.py",
    "model/test_drawn.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    tests = Path(__file__).parent

    def place(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(tests).as_posix(), len(rank))

    items.sort(key=place)  # stable: each file's own order, and the others', is kept


def product_sizes() -> dict[str, object]:
    """TEST_SIZED's settings at their declared defaults (field name -> default)."""
    fields = CoreSettings.model_fields.items()
    return {name: field.default for name, field in fields if field.validation_alias in TEST_SIZED}


def built_once(
    factory: pytest.TempPathFactory, name: str, settings: Callable[[Path], CoreSettings]
) -> CoreSettings:
    """Reference data and v0001 under `name`, built once per run: under pytest-xdist the first
    worker that needs them builds them (a file lock), the others wait and read the same files."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    root = base / name
    built = settings(root)
    with FileLock(f"{root}.lock"):
        if not (root / ".built").exists():
            shutil.rmtree(root, ignore_errors=True)  # what a worker that died left half done
            build_reference(built)
            train_candidate(built, ModelRegistry(built.artifacts_dir))
            (root / ".built").touch()
    return built


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> CoreSettings:
    """Reference data and v0001 at the test sizes for the digits dataset. Tests must not
    modify it."""
    return built_once(tmp_path_factory, "built", make_settings)


@pytest.fixture(scope="session")
def built_full(tmp_path_factory: pytest.TempPathFactory) -> CoreSettings:
    """Reference data and v0001 built at the product's sizes (TEST_SIZED's declared defaults),
    for the tests of what the served model does. Tests must not modify it."""
    return built_once(
        tmp_path_factory, "built_full", lambda root: make_settings(root, **product_sizes())
    )


@pytest.fixture(scope="session")
def plain_built(tmp_path_factory: pytest.TempPathFactory) -> CoreSettings:
    """Reference data and v0001 built with harness.data.PLAIN_ENV (no augmentation, an
    SVC): serve it with those variables too. Tests must not modify it."""
    return built_once(tmp_path_factory, "plain", plain_settings)


@pytest.fixture(scope="session")
def built_audio(tmp_path_factory: pytest.TempPathFactory) -> CoreSettings:
    """Reference data and v0001 for a spoken-digit dataset (harness.speech: 6 voices, 3
    pitches, with and without noise: 360 sounds), at the test sizes. Tests must not modify it."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: apt-get install espeak-ng (.ci/run does it)")

    def audio_settings(root: Path) -> CoreSettings:
        folder = root.with_name(f"{root.name}-sounds")
        with FileLock(f"{folder}.lock"):
            if not (folder / ".written").exists():
                shutil.rmtree(folder, ignore_errors=True)
                write_spoken_digits(folder, speeds=(160,))
                (folder / ".written").touch()
        return make_settings(root, dataset=str(folder))

    return built_once(tmp_path_factory, "built_audio", audio_settings)


@pytest.fixture(scope="session")
def samples(built: CoreSettings) -> dict[str, bytes]:
    """One typical image of each class from the built dataset's unseen samples (PNG bytes)."""
    return typical_samples(built.samples_dir)


@pytest.fixture
def workspace(tmp_path: Path, built: CoreSettings) -> CoreSettings:
    """A private copy of the built data and artifacts that a test may change."""
    shutil.copytree(built.data_dir, tmp_path / "data")
    shutil.copytree(built.artifacts_dir, tmp_path / "artifacts")
    return make_settings(tmp_path)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """With CTLOOP_FAIL_ON_SKIP=1 (set by .ci/run) a skipped test counts as a failed one."""
    report = yield
    if (
        os.environ.get("CTLOOP_FAIL_ON_SKIP") == "1"
        and report.skipped
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, and CTLOOP_FAIL_ON_SKIP=1 forbids skips: {report.longrepr}"
    return report


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server from Debian's packages for the session (started on first use, in a
    temporary folder on a free loopback port): its URL, as DATABASE_URL takes it."""
    stack = contextlib.ExitStack()
    log = tmp_path_factory.mktemp("postgres") / "postgres.log"
    try:
        url = stack.enter_context(postgres_database(log))
    except FileNotFoundError as exc:
        pytest.skip(f"PostgreSQL is not installed ({exc}); .ci/run installs it")
    with stack:
        yield url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def database_url(postgres_server: str) -> str:
    """A new, empty database on the session's server, for one test."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server.rsplit('/', 1)[0]}/{name}"

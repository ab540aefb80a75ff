"""One lock: every image's requirements file names packages, constraints.txt pins each once.

The FastAPI full-stack template keeps one uv.lock; here it is constraints.txt (`make lock`), which
every install reads (`make venv`, each Dockerfile: `pip install -r <image>/requirements.txt -c
constraints.txt`). bench/ and k8s/ have environments of their own with their own pins.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
IMAGES = (
    "scripts/requirements.txt",
    "serving/requirements.txt",
    "reporting/requirements.txt",
    "webapp/requirements.txt",
    "scripts/traffic/requirements.txt",
    "monitoring/requirements.txt",
    "tracking/requirements.txt",
    "tests/requirements.txt",
)


def requirements(path: str) -> list[Requirement]:
    found = []
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r "):
            found.append(Requirement(line))
    return found


def lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            assert canonicalize_name(name) not in pins, f"{name} is pinned twice in the lock"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_requirements_name_packages_and_the_lock_pins_each_once() -> None:
    pins = lock()
    for path in IMAGES:
        for requirement in requirements(path):
            name = canonicalize_name(requirement.name)
            assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), (
                f"{path}: {requirement} pins a version: constraints.txt holds the versions"
            )
            assert name in pins, f"{path}: {requirement.name} is not in constraints.txt"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{path}: {requirement} excludes the locked {pins[name]}"
            )


def test_the_images_install_from_the_lock() -> None:
    for dockerfile in ("serving", "webapp", "reporting"):
        lines = (REPO / dockerfile / "Dockerfile").read_text().splitlines()
        installs = [line for line in lines if re.search(r"pip install .*-r ", line)]
        assert installs, dockerfile
        for line in installs:
            assert "-c /build/constraints.txt" in line, f"{dockerfile}/Dockerfile: {line}"

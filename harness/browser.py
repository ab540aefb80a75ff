"""Headless Chromium for the browser tests: Debian's, driven by Playwright (never its download)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Chromium's flags for headless runs on a closed network (see ENVIRONMENT.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fake_microphone_args(wav: Path) -> list[str]:
    """Chromium's flags for a microphone that hears `wav` once (silence after it), granted
    without asking: Chromium converts any plain PCM WAV to its capture format."""
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
    ]


def find_chromium() -> str | None:
    """CHROMIUM_PATH if set, else Debian's chromium."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if Path(configured).exists() else None
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@contextlib.contextmanager
def launched_chromium(*extra_args: str) -> Iterator[Any]:
    """Debian's Chromium launched headless through Playwright (a playwright Browser), with
    CHROMIUM_ARGS and `extra_args`; the test skips, saying why, where either is missing."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("Chromium is not installed: `apt-get install chromium` (/usr/bin/chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            browser.close()

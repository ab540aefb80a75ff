"""Headless Chromium for the browser tests: Debian's, driven by Playwright (never its download)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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

"""The rendered overlays, once per session (skipped, saying why, without kubectl)."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import OVERLAYS, render, tool


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, tuple]:
    if tool("kubectl") is None:
        pytest.skip("no kubectl to render the overlays (apt-get install kubectl, or KUBECTL=...)")
    return {overlay: render(overlay, tmp_path_factory.mktemp(overlay)) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def local(rendered) -> list[dict]:
    return rendered["local"][1]


@pytest.fixture(scope="session")
def production(rendered) -> list[dict]:
    return rendered["production"][1]

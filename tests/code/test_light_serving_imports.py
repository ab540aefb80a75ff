"""The serving workers load ONNX graphs with onnxruntime and never import the training stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_serving_worker_does_not_import_scikit_learn_or_skl2onnx(tmp_path: Path) -> None:
    code = (
        "import sys, serving.api\n"
        "heavy = ('sklearn', 'skl2onnx', 'scipy', 'onnx', 'pandas')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # importable from anywhere: the packages are installed
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported by serving.api: {result.stdout.strip()}"

"""`--smoke DIR`, the same for every standing benchmark: the benchmark's own code end to end in
seconds (tiny sizes, one-second load runs) on a scratch folder DIR, whose data/ and artifacts/ it
may change (`ctloop init` builds them there when missing); its figures go under DIR, never into
docs/. `make test` runs each benchmark so (tests/bench), so that none rots unseen.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from harness.processes import child_environment


def parse(
    parser: argparse.ArgumentParser, workspace: bool = True, **sizes: object
) -> argparse.Namespace:
    """The benchmark's arguments with `--smoke DIR` added. With it, `sizes` replace the parsed
    values of the arguments they name, whatever the command line said, and DIR holds a built
    workspace (unless the benchmark needs none)."""
    parser.add_argument(
        "--smoke",
        type=Path,
        metavar="DIR",
        help="a smoke run: tiny sizes, figures written under DIR"
        + (", on DIR's data/ and artifacts/ (built there if missing)" if workspace else ""),
    )
    args = parser.parse_args()
    if args.smoke is not None:
        unknown = sorted(set(sizes) - set(vars(args)))
        if unknown:
            raise ValueError(f"smoke sizes for arguments that do not exist: {unknown}")
        for name, value in sizes.items():
            setattr(args, name, value)
        args.smoke = args.smoke.resolve()
        args.smoke.mkdir(parents=True, exist_ok=True)
        if workspace:
            build(args.smoke)
    return args


def build(root: Path) -> None:
    """Reference data and a first model in root/data and root/artifacts, unless already there."""
    if (root / "artifacts" / "current.json").exists():
        return
    subprocess.run(
        [sys.executable, "-m", "ctloop", "init"],
        env=child_environment(DATA_DIR=str(root / "data"), ARTIFACTS_DIR=str(root / "artifacts")),
        check=True,
        capture_output=True,
    )


def copy(source: Path, root: Path) -> None:
    """A copy of `source`'s data/ and artifacts/ under `root`, for a second server's workspace."""
    for name in ("data", "artifacts"):
        shutil.copytree(source / name, root / name)

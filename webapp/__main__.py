"""`python -m webapp [streamlit options]`: the page, through `streamlit run` on its own file.

The same command works from a checkout and from an installed package (the Docker image), since
the page's file is found next to this one, wherever the package lives.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.web import cli


def main() -> None:
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()

"""`python -m drawn`: regenerate the drawn evaluation set (scripts/drawn/drawn-digits.json).

.venv/bin/python -m drawn [--per-class 40] [--seed 16] [--preview preview.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from drawn import SET_PATH, SET_PER_CLASS, SET_SEED, load_set, render, write_set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drawn", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=SET_PATH)
    parser.add_argument("--per-class", type=int, default=SET_PER_CLASS)
    parser.add_argument("--seed", type=int, default=SET_SEED)
    parser.add_argument("--preview", type=Path, help="also write a contact sheet PNG here")
    args = parser.parse_args(argv)
    size = write_set(args.output, args.per_class, args.seed)
    digits = load_set(args.output)
    print(f"{len(digits)} digits ({args.per_class} per class), {size / 1024:.0f} kB: {args.output}")
    if args.preview:
        columns, side = 20, 70
        rows = -(-len(digits) // columns)
        sheet = Image.new("L", (columns * side, rows * side), 255)
        for index, digit in enumerate(digits):
            tile = render(digit).resize((side - 2, side - 2), Image.Resampling.BOX)
            sheet.paste(tile, ((index % columns) * side + 1, (index // columns) * side + 1))
        sheet.save(args.preview)
        print(f"preview: {args.preview}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

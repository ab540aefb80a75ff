"""What the page is about, after what the served model reads (GET /model): its title, its words,
and whether drawing makes sense. Digits are named only for a stroke model of the ten digits."""

from __future__ import annotations

from dataclasses import dataclass

from serving_client.contract import ModelInfo

IMAGE_KINDS = "PNG, JPEG, BMP, GIF or WebP"
DIGITS = [str(digit) for digit in range(10)]
SHOWN_CLASSES = 12  # the intro names a model's classes up to this many


@dataclass(frozen=True)
class Subject:
    """The served model's dataset, what it reads, and its classes."""

    dataset: str | None = None
    framing: str | None = None  # "strokes", "whole"; None: unknown (no API reached yet)
    classes: tuple[str, ...] = ()

    @classmethod
    def of(cls, model: ModelInfo) -> Subject:
        """The subject of a model; one from an API older than `preprocessing` reads strokes
        (every model before the field was made so)."""
        reads = model.preprocessing
        return cls(
            dataset=model.dataset,
            framing=reads.framing if reads is not None else "strokes",
            classes=tuple(model.classes),
        )

    @property
    def drawing(self) -> bool:
        """Drawing makes sense for ink on paper, never for a photograph."""
        return self.framing == "strokes"

    @property
    def digits(self) -> bool:
        return self.drawing and sorted(self.classes) == DIGITS

    @property
    def thing(self) -> str:
        """What one input is, in a few words: 'a handwritten digit', 'a picture'..."""
        if self.digits:
            return "a handwritten digit"
        if self.drawing:
            return "a drawing in dark ink on a light background"
        return "a picture"

    @property
    def title(self) -> str:
        if not self.dataset:
            return "Image classifier"
        return f"{self.dataset[:1].upper()}{self.dataset[1:]} classifier"

    @property
    def intro(self) -> str:
        said = f"Give the model {self.thing}, see what it reads, and tell it the truth."
        if self.classes and not self.digits:
            shown = ", ".join(self.classes[:SHOWN_CLASSES])
            more = f" and {len(self.classes) - SHOWN_CLASSES} more" if self.more_classes else ""
            said += f" Its classes: {shown}{more}."
        return said

    @property
    def more_classes(self) -> bool:
        return len(self.classes) > SHOWN_CLASSES

    @property
    def upload_label(self) -> str:
        if self.digits:
            return f"A {IMAGE_KINDS} image of one digit"
        if self.drawing:
            return f"A {IMAGE_KINDS} image of one drawing"
        return f"A {IMAGE_KINDS} picture"

    @property
    def draw_tab(self) -> str:
        return "Draw a digit" if self.digits else "Draw"

    @property
    def draw_hint(self) -> str:
        one = "one digit" if self.digits else "one shape"
        return (
            f"Draw {one}, large, in the middle of the square. "
            "Hover over the square for undo and clear."
        )

    def begin(self, samples: bool) -> str:
        """What to do first, with the inputs the page offers."""
        ways = ["upload an image"]
        if samples:
            ways.append("pick a sample")
        if self.drawing:
            ways.append("draw a digit" if self.digits else "draw one")
        said = ways[0] if len(ways) == 1 else f"{', '.join(ways[:-1])} or {ways[-1]}"
        return f"{said[:1].upper()}{said[1:]} to begin."

    def retry(self) -> str:
        """What to do after the API could not use an image."""
        if self.drawing:
            return f"Upload a {IMAGE_KINDS} image of {self.thing}, or draw one."
        return f"Upload another {IMAGE_KINDS} picture."

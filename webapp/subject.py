"""What the page is about, after what the served model reads (GET /model): its title, its words,
whether drawing makes sense, and whether it takes pictures or sounds. Digits are named only for a
stroke model of the ten digits."""

from __future__ import annotations

from dataclasses import dataclass

from serving_client.contract import ModelInfo

IMAGE_KINDS = "PNG, JPEG, BMP, GIF or WebP"
SOUND_KINDS = "WAV, FLAC, OGG or MP3"
DIGITS = [str(digit) for digit in range(10)]
SHOWN_CLASSES = 12  # the intro names a model's classes up to this many


@dataclass(frozen=True)
class Subject:
    """The served model's dataset, what it reads, and its classes."""

    dataset: str | None = None
    framing: str | None = None  # "strokes", "whole", "log-mel"; None: unknown (no API reached yet)
    classes: tuple[str, ...] = ()
    medium: str = "image"  # "image" or "audio"
    sample_rate: int | None = None  # sounds: the rate the model hears them at (Hz)
    seconds: float | None = None  # sounds: how much of one the model hears

    @classmethod
    def of(cls, model: ModelInfo) -> Subject:
        """The subject of a model; one from an API older than `preprocessing` reads strokes
        (every model before the field was made so)."""
        reads = model.preprocessing
        if reads is None:
            return cls(dataset=model.dataset, framing="strokes", classes=tuple(model.classes))
        return cls(
            dataset=model.dataset,
            framing=reads.framing,
            classes=tuple(model.classes),
            medium=reads.medium,
            sample_rate=reads.sample_rate,
            seconds=reads.seconds,
        )

    @property
    def audio(self) -> bool:
        """The model hears sounds: upload or record one, no drawing, no picture words."""
        return self.medium == "audio"

    @property
    def noun(self) -> str:
        """One input: 'image' or 'sound'."""
        return "sound" if self.audio else "image"

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
        if self.audio:
            return "a short sound"
        return "a picture"

    @property
    def title(self) -> str:
        if not self.dataset:
            return "Sound classifier" if self.audio else "Image classifier"
        return f"{self.dataset[:1].upper()}{self.dataset[1:]} classifier"

    @property
    def intro(self) -> str:
        reads = "hears" if self.audio else "reads"
        said = f"Give the model {self.thing}, see what it {reads}, and tell it the truth."
        if self.audio and self.seconds:
            said += f" It hears {self.seconds:g} s of it, the silence around trimmed."
        if self.classes and not self.digits:
            shown = ", ".join(self.classes[:SHOWN_CLASSES])
            more = f" and {len(self.classes) - SHOWN_CLASSES} more" if self.more_classes else ""
            said += f" Its classes: {shown}{more}."
        return said

    @property
    def more_classes(self) -> bool:
        return len(self.classes) > SHOWN_CLASSES

    @property
    def upload_tab(self) -> str:
        return f"Upload {self.a_noun}"

    @property
    def a_noun(self) -> str:
        return "a sound" if self.audio else "an image"

    @property
    def upload_label(self) -> str:
        if self.audio:
            return f"A {SOUND_KINDS} sound"
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

    record_tab = "Record"
    record_label = "Record a sound with your microphone"

    record_hint = "Click the microphone to start, and again to stop: one word, or one sound."

    def spectrogram_caption(self, bands: int) -> str:
        """Words under the spectrogram the model saw, its axes said."""
        over = f"{self.seconds:g} s" if self.seconds else "the sound"
        return (
            f"What the model saw: the spectrogram of your sound, time → over {over}, "
            f"pitch ↑ in {bands} bands (low at the bottom); lighter is louder."
        )

    def begin(self, samples: bool) -> str:
        """What to do first, with the inputs the page offers."""
        ways = [f"upload {self.a_noun}"]
        if samples:
            ways.append("pick a sample")
        if self.drawing:
            ways.append("draw a digit" if self.digits else "draw one")
        if self.audio:
            ways.append("record one")
        said = ways[0] if len(ways) == 1 else f"{', '.join(ways[:-1])} or {ways[-1]}"
        return f"{said[:1].upper()}{said[1:]} to begin."

    def retry(self) -> str:
        """What to do after the API could not use an input."""
        if self.audio:
            return f"Upload another {SOUND_KINDS} sound, or record one."
        if self.drawing:
            return f"Upload a {IMAGE_KINDS} image of {self.thing}, or draw one."
        return f"Upload another {IMAGE_KINDS} picture."

"""Judge prompts: the template files, and rendering them into interleaved text and image parts.

Templates are data (``templates/<dimension>.txt``), written in our own words: a role, the scale, four
reasoning steps, the labelled inputs and the JSON reply format. Inside a template, ``{{original_image}}``
and ``{{edited_image}}`` mark where an image goes and ``{{instruction}}`` / ``{{referring_expression}}``
are replaced by the sample's text. Images are split out *before* text is substituted, so an instruction
that happens to contain a marker cannot inject an image. Provider clients turn the parts into their own
message format.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from PIL import Image

from replan_eval.judge.dimensions import Dimension

__all__ = [
    "ImagePart",
    "JudgeImage",
    "JudgeInputs",
    "PromptPart",
    "PromptTemplates",
    "TextPart",
]

_IMAGE_SLOT = re.compile(r"\{\{(original_image|edited_image)\}\}")
_TEXT_SLOTS = ("instruction", "referring_expression")
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


@dataclass(frozen=True)
class JudgeImage:
    """Encoded image bytes and their MIME type, encoded once and sent to every dimension."""

    data: bytes
    mime: str = "image/png"

    @classmethod
    def from_bytes(cls, data: bytes) -> JudgeImage:
        """Wrap PNG, JPEG or WebP bytes, detecting the type from the file signature."""
        for magic, mime in _MAGIC:
            if data.startswith(magic):
                return cls(data, mime)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return cls(data, "image/webp")
        raise ValueError("judge images must be PNG, JPEG or WebP bytes")

    @classmethod
    def from_pil(cls, image: Image.Image) -> JudgeImage:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return cls(buffer.getvalue(), "image/png")

    @classmethod
    def from_path(cls, path: Path) -> JudgeImage:
        return cls.from_bytes(path.read_bytes())

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{self.b64}"


@dataclass(frozen=True)
class JudgeInputs:
    """What the judge sees for one sample. ``original`` may be None only for Quality."""

    instruction: str
    referring_expression: str
    edited: JudgeImage
    original: JudgeImage | None = None


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    image: JudgeImage


PromptPart = TextPart | ImagePart


@dataclass(frozen=True)
class PromptTemplates:
    """The four templates, keyed by dimension."""

    texts: dict[Dimension, str]

    @classmethod
    def builtin(cls) -> PromptTemplates:
        """Our templates, shipped as package data."""
        root = resources.files("replan_eval.judge").joinpath("templates")
        return cls({d: root.joinpath(f"{d.value}.txt").read_text(encoding="utf-8") for d in Dimension})

    @classmethod
    def from_dir(cls, directory: Path) -> PromptTemplates:
        """Templates from ``<directory>/<dimension>.txt``; every dimension must be present."""
        missing = [f"{d.value}.txt" for d in Dimension if not (directory / f"{d.value}.txt").is_file()]
        if missing:
            raise FileNotFoundError(f"judge template directory {directory} lacks {', '.join(missing)}")
        return cls({d: (directory / f"{d.value}.txt").read_text(encoding="utf-8") for d in Dimension})

    def version(self, dimension: Dimension) -> str:
        """A short hash of the template: cached verdicts from another wording are not reused."""
        return hashlib.sha256(self.texts[dimension].encode("utf-8")).hexdigest()[:12]

    def render(self, dimension: Dimension, inputs: JudgeInputs) -> list[PromptPart]:
        """Interleave the template's text with the sample's images, in template order."""
        template = self.texts[dimension]
        values = {"instruction": inputs.instruction, "referring_expression": inputs.referring_expression}
        parts: list[PromptPart] = []
        position = 0
        for match in _IMAGE_SLOT.finditer(template):
            parts.append(TextPart(_fill(template[position : match.start()], values)))
            slot = match.group(1)
            image = inputs.original if slot == "original_image" else inputs.edited
            if image is None:
                raise ValueError(f"the {dimension.value} prompt shows the original image, but none was given")
            parts.append(ImagePart(image))
            position = match.end()
        parts.append(TextPart(_fill(template[position:], values)))
        return [p for p in parts if not (isinstance(p, TextPart) and not p.text)]


def _fill(text: str, values: dict[str, str]) -> str:
    for name in _TEXT_SLOTS:
        text = text.replace("{{" + name + "}}", values[name])
    return text

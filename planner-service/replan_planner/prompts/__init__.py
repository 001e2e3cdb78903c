"""Planner prompt templates (versioned data files in this folder) and the chat message layout.

Owns which text the planner model sees and in what order: one user turn, no system message, the image
first, then one text part made of the template, a newline and the raw instruction, which is the layout
of the original RePlan inference (replan-facts §1), so the released checkpoint sees what it was tuned on.
Templates are `<mode>.<version>.txt` files shipped with the package; a released version is never edited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from replan_common.plan import KEEP_UNCHANGED_PROMPT
from replan_common.protocol import PlanMode

__all__ = [
    "PromptTemplate",
    "available_versions",
    "load_template",
    "openai_user_message",
    "transformers_user_message",
]

_FILE = re.compile(r"^(?P<mode>[a-z]+)\.(?P<version>v[0-9]+)\.txt$")


@dataclass(frozen=True)
class PromptTemplate:
    """One template: the text that precedes the instruction in the user turn."""

    mode: PlanMode
    version: str
    text: str

    def render(self, instruction: str) -> str:
        """The user turn's text part: template, newline, instruction (as the original inference)."""
        return f"{self.text}\n{instruction}"


@cache
def available_versions() -> tuple[str, ...]:
    """Versions that have a template for every mode, oldest first."""
    by_version: dict[str, set[str]] = {}
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            by_version.setdefault(match["version"], set()).add(match["mode"])
    modes = {m.value for m in PlanMode}
    return tuple(sorted((v for v, m in by_version.items() if modes <= m), key=lambda v: int(v[1:])))


@cache
def load_template(mode: PlanMode, version: str) -> PromptTemplate:
    """The template of `mode` at `version`; raises ValueError naming the versions there are."""
    if version not in available_versions():
        raise ValueError(f"no planner prompt version {version!r}; available: {', '.join(available_versions())}")
    raw = resources.files(__name__).joinpath(f"{mode.value}.{version}.txt").read_text(encoding="utf-8")
    text = Template(raw.rstrip("\n")).substitute(keep_unchanged=KEEP_UNCHANGED_PROMPT)
    return PromptTemplate(mode=mode, version=version, text=text)


def openai_user_message(image_url: str, text: str) -> dict[str, Any]:
    """The single user turn for an OpenAI-compatible chat endpoint: image part first, then the text part."""
    return {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}],
    }


def transformers_user_message(text: str) -> dict[str, Any]:
    """The same turn for a transformers chat template; the image itself goes to the processor."""
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}

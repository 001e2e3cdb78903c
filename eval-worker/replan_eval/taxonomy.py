"""IV-Edit's categories: 7 referring types, 16 task types in 3 groups, with the test-split counts (facts §5).

Names in datasets vary in case and separators (``text_content``, ``Text-Content``); `canonical_*` map
them onto the names below and return None for names we do not know, which reports show as given.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "REFERRING_TYPES",
    "TASK_TYPES",
    "TaskGroup",
    "canonical_referring_type",
    "canonical_task_type",
    "task_group",
]


class TaskGroup(str, Enum):
    COMMON = "Common Editing"
    REASONING = "Reasoning Editing"
    TEXT = "Text Editing"


#: Referring type → number of test samples.
REFERRING_TYPES: dict[str, int] = {
    "Spatial": 152,
    "Feature": 135,
    "Understanding": 136,
    "Knowledge": 111,
    "Text-Content": 92,
    "Text-Visual": 90,
    "Text-Structural": 87,
}

#: Task type → (group, number of test samples); groups total 257 / 277 / 269.
TASK_TYPES: dict[str, tuple[TaskGroup, int]] = {
    "Attribute Modification": (TaskGroup.COMMON, 59),
    "Replacement": (TaskGroup.COMMON, 41),
    "Parts Modification": (TaskGroup.COMMON, 38),
    "Interaction": (TaskGroup.COMMON, 32),
    "State Modification": (TaskGroup.COMMON, 32),
    "Deletion": (TaskGroup.COMMON, 27),
    "Human Editing": (TaskGroup.COMMON, 18),
    "Addition": (TaskGroup.COMMON, 10),
    "Prediction": (TaskGroup.REASONING, 120),
    "Scenario Reasoning": (TaskGroup.REASONING, 54),
    "Physics Reasoning": (TaskGroup.REASONING, 53),
    "Knowledge Reasoning": (TaskGroup.REASONING, 44),
    "Open-ended Reasoning": (TaskGroup.REASONING, 6),
    "Text Content": (TaskGroup.TEXT, 122),
    "Text Reasoning": (TaskGroup.TEXT, 77),
    "Text Style": (TaskGroup.TEXT, 70),
}


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split()).casefold()


_REFERRING_BY_KEY = {_key(name): name for name in REFERRING_TYPES}
_TASK_BY_KEY = {_key(name): name for name in TASK_TYPES}


def canonical_referring_type(name: str | None) -> str | None:
    return _REFERRING_BY_KEY.get(_key(name)) if name else None


def canonical_task_type(name: str | None) -> str | None:
    return _TASK_BY_KEY.get(_key(name)) if name else None


def task_group(task_type: str | None) -> TaskGroup | None:
    canonical = canonical_task_type(task_type)
    return TASK_TYPES[canonical][0] if canonical else None

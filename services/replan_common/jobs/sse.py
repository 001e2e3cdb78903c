"""Server-sent events framing: writing `event:`/`id:`/`data:` blocks and reading them back from a stream.

Used by the gateway to stream job events and by the job runner to read the editor's progress stream.
Only the framing lives here; what the events mean belongs to their producers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseMessage:
    event: str
    data: str
    id: str | None = None


def format_sse(data: str, *, event: str | None = None, id: str | None = None) -> str:
    """One SSE block; multi-line data becomes several `data:` lines as the spec requires."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return "\n".join(lines) + "\n\n"


def sse_comment(text: str) -> str:
    """A comment line: keeps proxies from closing an idle stream."""
    return f": {text}\n\n"


def parse_sse(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Messages from the text lines of an event stream (without line terminators)."""
    event = "message"
    data: list[str] = []
    last_id: str | None = None
    for line in lines:
        if line == "":
            if data:
                yield SseMessage(event=event, data="\n".join(data), id=last_id)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value
    if data:
        yield SseMessage(event=event, data="\n".join(data), id=last_id)

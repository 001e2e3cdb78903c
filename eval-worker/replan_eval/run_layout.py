"""The on-disk layout of a benchmark run, and crash-safe writes into it.

::

    <run>/
      run.yaml                     the run's config, as started
      <image_id>/final_result.png  the edited image (the original evaluator's path)
      <image_id>/plan.json         the plan the editor applied (RePlan methods), or the prompt used
      <image_id>/metrics.json      judge-free metrics
      <image_id>/judge/<dim>.json  one cached verdict per dimension
      <image_id>/attempts.jsonl    one line per generation attempt started, finished or failed (who, when)
      scores.json, report.md, report.html

A sample is *generated* when its ``final_result.png`` exists; every file is written to a temporary
name and renamed into place, so a worker killed mid-write leaves either no file or a whole one, and
"file exists" is a safe "done" marker for resumable, idempotent tasks. ``attempts.jsonl`` is the one
file appended to (single short ``O_APPEND`` writes): it shows how often a sample was tried, by which
process, which matters after a worker died mid-run.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout", "append_line", "atomic_write_bytes", "atomic_write_text", "check_sample_key"]

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


def check_sample_key(key: str) -> str:
    """Sample keys become directory names: letters, digits, ``._-``, not starting with ``.`` or ``-``."""
    if not _SAFE_KEY.match(key):
        raise ValueError(
            f"sample key {key!r} cannot be a directory name: use letters, digits, '.', '_' or '-' "
            "(at most 200, not starting with '.' or '-')"
        )
    return key


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path: Path, line: str) -> None:
    """Append one line with a single ``O_APPEND`` write, so concurrent writers never interleave within it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunLayout:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "run.yaml"

    @property
    def scores(self) -> Path:
        return self.root / "scores.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    def sample_dir(self, image_id: str) -> Path:
        return self.root / check_sample_key(image_id)

    def final_image(self, image_id: str) -> Path:
        return self.sample_dir(image_id) / "final_result.png"

    def plan(self, image_id: str) -> Path:
        return self.sample_dir(image_id) / "plan.json"

    def metrics(self, image_id: str) -> Path:
        return self.sample_dir(image_id) / "metrics.json"

    def attempts(self, image_id: str) -> Path:
        return self.sample_dir(image_id) / "attempts.jsonl"

    def judge_file(self, image_id: str, dimension: str) -> Path:
        return self.sample_dir(image_id) / "judge" / f"{dimension}.json"

    def is_generated(self, image_id: str) -> bool:
        return self.final_image(image_id).is_file()

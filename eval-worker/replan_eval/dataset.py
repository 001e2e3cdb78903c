"""Loading IV-Edit-format datasets into typed `Sample`s, from local files only.

Rows have ``image``, ``prompt`` (the instruction), ``answer`` (a reference plan), ``extra_info`` (a JSON
string or object with ``image_id``, ``referring_expression``, the task and referring types and an
optional ``status``) and possibly a top-level ``image_id``. Sources:

* **JSONL**: ``image`` is a path relative to the JSONL file, a base64 string or data URI, or
  ``{"path": ..., "bytes": ...}``;
* **parquet** (a file, or a directory of them such as a hub snapshot's ``data/test-*.parquet``; needs
  ``pyarrow``): ``image`` is the HF ``Image`` struct ``{bytes, path}``;
* **a ``datasets`` save directory** (``save_to_disk``; needs ``datasets``).

Rows whose status is ``"filtered"`` are skipped, as the original evaluator does. Every other problem
(no image, no instruction, no image id, malformed ``extra_info``, duplicate ids) is a `DatasetError`
naming the file, the row and what to fix: we do not skip bad rows silently, because a benchmark that
quietly loses samples reports the wrong numbers.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from replan_common.errors import BadRequest
from replan_eval.run_layout import check_sample_key
from replan_eval.taxonomy import TaskGroup, canonical_referring_type, canonical_task_type, task_group

logger = logging.getLogger(__name__)

__all__ = ["DatasetError", "Sample", "load_samples"]

_TASK_KEYS = ("task_type", "task", "edit_type", "editing_type", "task_category")
_REFERRING_KEYS = ("referring_type", "ref_type", "reference_type", "referring_category")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class DatasetError(BadRequest):
    """A dataset file or row that cannot be read as IV-Edit; ``param`` is ``<file>:<row>``."""

    default_code = "invalid_dataset"


class Sample(BaseModel):
    """One benchmark sample. The image is kept encoded (bytes) or as a path, and decoded on demand."""

    model_config = ConfigDict(frozen=True)

    image_id: str = Field(description="Unique within the dataset; names the sample's output directory.")
    instruction: str
    referring_expression: str = ""
    task_type: str | None = Field(default=None, description="Canonical name when known, else as given.")
    referring_type: str | None = None
    answer: str | None = Field(default=None, description="The dataset's reference plan, if any.")
    extra_info: dict[str, JsonValue] = Field(default_factory=dict)
    image_path: Path | None = None
    image_bytes: bytes | None = Field(default=None, repr=False)

    @property
    def task_group(self) -> TaskGroup | None:
        return task_group(self.task_type)

    def image_data(self) -> bytes:
        """The encoded image (PNG/JPEG/WebP bytes)."""
        if self.image_bytes is not None:
            return self.image_bytes
        assert self.image_path is not None  # the loader guarantees one of the two
        return self.image_path.read_bytes()

    def load_image(self) -> Image.Image:
        """The image as RGB."""
        with Image.open(io.BytesIO(self.image_data())) as image:
            return image.convert("RGB")


def load_samples(path: Path, *, split: str | None = None, include_filtered: bool = False) -> list[Sample]:
    """Read every sample from a JSONL file, a parquet file or directory, or a ``datasets`` save directory.

    Args:
        split: for directories holding several splits (``test``, ``train``, ``dev``): which one. Required
            when there is more than one and no ``test``.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist", code="dataset_not_found", param=str(path))
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            rows = _hf_rows(path, split)
        else:
            rows = _parquet_dir_rows(path, split)
    elif path.suffix == ".jsonl":
        rows = _jsonl_rows(path)
    elif path.suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        raise DatasetError(
            f"cannot read {path}: expected a .jsonl or .parquet file, or a directory of parquet files or a "
            "`datasets` save_to_disk directory",
            code="unsupported_dataset_format",
            param=str(path),
        )
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    skipped = 0
    for where, base_dir, row in rows:
        sample = _to_sample(row, where=where, base_dir=base_dir, include_filtered=include_filtered)
        if sample is None:
            skipped += 1
            continue
        if sample.image_id in seen:
            raise DatasetError(
                f"image_id {sample.image_id!r} appears twice (first at {seen[sample.image_id]}); ids name output "
                "directories and must be unique",
                code="duplicate_image_id",
                param=where,
            )
        seen[sample.image_id] = where
        samples.append(sample)
    if skipped:
        logger.info("skipped %s rows with status 'filtered' in %s", skipped, path)
    if not samples:
        raise DatasetError(f"dataset {path} has no samples", code="empty_dataset", param=str(path))
    return samples


Row = Mapping[str, object]


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Path, Row]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"line is not JSON: {exc.msg} at column {exc.colno}", param=where) from exc
            if not isinstance(row, dict):
                raise DatasetError("line is not a JSON object", param=where)
            yield where, path.parent, row


def _require_pyarrow(path: Path) -> object:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetError(
            f"reading {path} needs pyarrow: pip install 'replan-suite[eval]' (or pip install pyarrow)",
            code="missing_dependency",
            param=str(path),
        ) from exc
    return pq


def _parquet_rows(path: Path) -> Iterator[tuple[str, Path, Row]]:
    pq = _require_pyarrow(path)
    table = pq.read_table(path)  # type: ignore[attr-defined]
    for number, row in enumerate(table.to_pylist()):
        yield f"{path}:row {number}", path.parent, row


def _pick_split(available: Iterable[str], split: str | None, where: Path) -> str | None:
    names = sorted(set(available))
    if split is not None:
        if split not in names:
            raise DatasetError(
                f"split {split!r} not found in {where}; available: {', '.join(names) or 'none'}",
                code="unknown_split",
                param=str(where),
            )
        return split
    if len(names) <= 1:
        return names[0] if names else None
    if "test" in names:
        return "test"
    raise DatasetError(
        f"{where} holds several splits ({', '.join(names)}); choose one with split=...",
        code="ambiguous_split",
        param=str(where),
    )


def _parquet_dir_rows(path: Path, split: str | None) -> Iterator[tuple[str, Path, Row]]:
    files = sorted(path.rglob("*.parquet"))
    if not files:
        raise DatasetError(
            f"directory {path} holds no parquet files and is not a `datasets` save directory",
            code="unsupported_dataset_format",
            param=str(path),
        )
    # Hub layout: data/<split>-00000-of-00001.parquet
    by_split: dict[str, list[Path]] = {}
    for file in files:
        by_split.setdefault(file.name.split("-", 1)[0], []).append(file)
    chosen = _pick_split(by_split, split, path) if len(by_split) > 1 or split else None
    for file in by_split[chosen] if chosen else files:
        yield from _parquet_rows(file)


def _hf_rows(path: Path, split: str | None) -> Iterator[tuple[str, Path, Row]]:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(
            f"{path} is a `datasets` save directory; reading it needs `pip install datasets` "
            "(or export it to parquet/JSONL)",
            code="missing_dependency",
            param=str(path),
        ) from exc
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        chosen = _pick_split(loaded.keys(), split, path)
        dataset = loaded[chosen]
    else:
        dataset = loaded
    if "image" in dataset.features:
        dataset = dataset.cast_column("image", datasets.Image(decode=False))
    for number, row in enumerate(dataset):
        yield f"{path}:row {number}", path, row


def _parse_extra_info(value: object, where: str) -> dict[str, JsonValue]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"extra_info is not valid JSON: {exc.msg}", param=f"{where}.extra_info") from exc
    if not isinstance(value, dict):
        raise DatasetError(f"extra_info must be a JSON object, got {type(value).__name__}", param=f"{where}.extra_info")
    return value


def _first_str(sources: Iterable[Mapping[str, object]], keys: Iterable[str]) -> str | None:
    keys = tuple(keys)
    for source in sources:
        for key in keys:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _image(value: object, *, base_dir: Path, where: str) -> tuple[Path | None, bytes | None]:
    param = f"{where}.image"
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.convert("RGB").save(buffer, format="PNG")
        return None, buffer.getvalue()
    if isinstance(value, (bytes, bytearray)):
        return None, bytes(value)
    if isinstance(value, Mapping):
        data, rel = value.get("bytes"), value.get("path")
        if isinstance(data, (bytes, bytearray)) and data:
            return None, bytes(data)
        if isinstance(data, str) and data:
            return _image(data, base_dir=base_dir, where=where)
        if isinstance(rel, str) and rel:
            value = rel
        else:
            raise DatasetError("image struct has neither bytes nor path", code="missing_image", param=param)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError("row has no image", code="missing_image", param=param)
    text = value.strip()
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    elif len(text) < 1024 and "\n" not in text:
        candidate = Path(text) if Path(text).is_absolute() else base_dir / text
        if candidate.is_file():
            return candidate, None
        if text.lower().endswith(_IMAGE_SUFFIXES):
            raise DatasetError(
                f"image file {candidate} not found (paths are relative to the dataset file)",
                code="missing_image",
                param=param,
            )
    try:
        return None, base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DatasetError(
            "image is neither an existing file path nor base64 data", code="invalid_image", param=param
        ) from exc


def _to_sample(row: Row, *, where: str, base_dir: Path, include_filtered: bool) -> Sample | None:
    extra = _parse_extra_info(row.get("extra_info"), where)
    status = extra.get("status", row.get("status"))
    if status == "filtered" and not include_filtered:
        return None
    details = extra.get("instruction_details")
    details = details if isinstance(details, dict) else {}

    raw_id = extra.get("image_id", row.get("image_id"))
    if raw_id is None or raw_id == "":
        raise DatasetError("row has no image_id (in extra_info or at top level)", code="missing_image_id", param=where)
    image_id = str(raw_id)
    try:
        check_sample_key(image_id)
    except ValueError as exc:
        raise DatasetError(str(exc), code="invalid_image_id", param=f"{where}.image_id") from exc

    prompt = row.get("prompt")
    instruction = prompt.strip() if isinstance(prompt, str) else _first_str([details], ["editing_instruction"])
    if not instruction:
        raise DatasetError(
            f"sample {image_id} has no instruction (`prompt`, or extra_info.instruction_details.editing_instruction)",
            code="missing_instruction",
            param=f"{where}.prompt",
        )
    referring = _first_str([extra, details], ["referring_expression"]) or ""
    task_raw = _first_str([extra, row], _TASK_KEYS)
    referring_raw = _first_str([extra, row], _REFERRING_KEYS)
    answer = row.get("answer")
    image_path, image_bytes = _image(row.get("image"), base_dir=base_dir, where=where)
    return Sample(
        image_id=image_id,
        instruction=instruction,
        referring_expression=referring,
        task_type=canonical_task_type(task_raw) or task_raw,
        referring_type=canonical_referring_type(referring_raw) or referring_raw,
        answer=answer if isinstance(answer, str) else None,
        extra_info=extra,
        image_path=image_path,
        image_bytes=image_bytes,
    )

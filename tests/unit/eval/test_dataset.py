"""Loading IV-Edit-format datasets from JSONL and parquet; row errors name the row."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from replan_eval.dataset import DatasetError, load_samples
from replan_eval.taxonomy import TaskGroup


def png(color: tuple[int, int, int], size: tuple[int, int] = (20, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def extra(image_id: object, **more: object) -> str:
    return json.dumps(
        {
            "image_id": image_id,
            "referring_expression": f"the object of sample {image_id}",
            "task_type": "attribute_modification",
            "referring_type": "Spatial",
            **more,
        }
    )


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_with_relative_paths_base64_and_data_uris(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png((255, 0, 0)))
    b64 = base64.b64encode(png((0, 255, 0))).decode()
    rows = [
        {"image": "images/a.png", "prompt": "make it blue", "answer": "<think>x</think>", "extra_info": extra(1)},
        {"image": b64, "prompt": "add a hat", "extra_info": extra(2, task_type="Addition")},
        {"image": "data:image/png;base64," + b64, "prompt": "fix the sign", "extra_info": {"image_id": "3"}},
    ]
    samples = load_samples(write_jsonl(tmp_path / "ivedit.jsonl", rows))

    assert [s.image_id for s in samples] == ["1", "2", "3"]
    first = samples[0]
    assert first.image_path == tmp_path / "images" / "a.png" and first.image_bytes is None
    assert first.load_image().getpixel((0, 0)) == (255, 0, 0)
    assert first.instruction == "make it blue"
    assert first.referring_expression == "the object of sample 1"
    assert (first.task_type, first.referring_type, first.task_group) == (
        "Attribute Modification",
        "Spatial",
        TaskGroup.COMMON,
    )
    assert first.answer == "<think>x</think>"
    assert samples[1].load_image().getpixel((0, 0)) == (0, 255, 0)
    assert samples[1].task_group is TaskGroup.COMMON
    assert samples[2].image_data() == base64.b64decode(b64)
    assert (samples[2].task_type, samples[2].referring_expression) == (None, "")


def test_filtered_rows_are_skipped(tmp_path: Path) -> None:
    b64 = base64.b64encode(png((1, 2, 3))).decode()
    rows = [
        {"image": b64, "prompt": "a", "extra_info": extra(1)},
        {"image": b64, "prompt": "b", "extra_info": extra(2, status="filtered")},
        {"image": b64, "prompt": "c", "extra_info": extra(3), "status": "filtered"},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert [s.image_id for s in load_samples(path)] == ["1"]
    assert len(load_samples(path, include_filtered=True)) == 3


def test_instruction_falls_back_to_instruction_details(tmp_path: Path) -> None:
    b64 = base64.b64encode(png((1, 2, 3))).decode()
    info = {"image_id": 5, "instruction_details": {"editing_instruction": "turn it red", "referring_expression": "it"}}
    (sample,) = load_samples(write_jsonl(tmp_path / "d.jsonl", [{"image": b64, "extra_info": info}]))
    assert (sample.instruction, sample.referring_expression) == ("turn it red", "it")


@pytest.mark.parametrize(
    ("row", "code", "param_suffix"),
    [
        ({"image": "x.png", "prompt": "a", "extra_info": "{oops"}, "invalid_dataset", ":2.extra_info"),
        ({"image": "x.png", "prompt": "a", "extra_info": "[1, 2]"}, "invalid_dataset", ":2.extra_info"),
        ({"image": "x.png", "prompt": "a", "extra_info": "{}"}, "missing_image_id", ":2"),
        ({"image": "x.png", "prompt": "a", "extra_info": '{"image_id": "../up"}'}, "invalid_image_id", ":2.image_id"),
        ({"image": "missing.png", "prompt": "a", "extra_info": '{"image_id": 9}'}, "missing_image", ":2.image"),
        ({"image": "not base64!", "prompt": "a", "extra_info": '{"image_id": 9}'}, "invalid_image", ":2.image"),
        ({"prompt": "a", "extra_info": '{"image_id": 9}'}, "missing_image", ":2.image"),
        ({"image": "x.png", "extra_info": '{"image_id": 9}'}, "missing_instruction", ":2.prompt"),
        ({"image": "x.png", "prompt": "a", "extra_info": '{"image_id": 1}'}, "duplicate_image_id", ":2"),
    ],
)
def test_bad_rows_raise_errors_naming_the_row(
    tmp_path: Path, row: dict[str, object], code: str, param_suffix: str
) -> None:
    (tmp_path / "x.png").write_bytes(png((0, 0, 0)))
    good = {"image": "x.png", "prompt": "fine", "extra_info": extra(1)}
    path = write_jsonl(tmp_path / "d.jsonl", [good, row])
    with pytest.raises(DatasetError) as caught:
        load_samples(path)
    assert caught.value.code == code
    assert caught.value.param == f"{path}{param_suffix}"


def test_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    b64 = base64.b64encode(png((1, 2, 3))).decode()
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"image": b64, "prompt": "a", "extra_info": extra(1)}) + "\nnot json\n")
    with pytest.raises(DatasetError) as caught:
        load_samples(path)
    assert caught.value.param == f"{path}:2"


def test_unknown_format_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"\.jsonl or \.parquet"):
        load_samples(tmp_path / "d.csv")
    with pytest.raises(DatasetError, match="does not exist"):
        load_samples(tmp_path / "nope.jsonl")


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no samples"):
        load_samples(write_jsonl(tmp_path / "d.jsonl", []))


pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def write_parquet(path: Path, ids: list[int]) -> Path:
    table = pa.table(
        {
            "image": [{"bytes": png((i, 0, 0)), "path": None} for i in ids],
            "prompt": [f"edit {i}" for i in ids],
            "answer": [f"<think>{i}</think>" for i in ids],
            "extra_info": [extra(i, referring_type="text_visual", task_type="Text Style") for i in ids],
            "image_id": ids,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_parquet_with_hf_image_structs(tmp_path: Path) -> None:
    samples = load_samples(write_parquet(tmp_path / "test.parquet", [7, 8]))
    assert [s.image_id for s in samples] == ["7", "8"]
    assert samples[1].load_image().getpixel((0, 0)) == (8, 0, 0)
    assert (samples[0].referring_type, samples[0].task_group) == ("Text-Visual", TaskGroup.TEXT)


def test_parquet_directory_picks_the_split(tmp_path: Path) -> None:
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [1, 2, 3])
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", [10, 11])
    assert [s.image_id for s in load_samples(tmp_path)] == ["1", "2", "3"]  # test by default
    assert [s.image_id for s in load_samples(tmp_path, split="train")] == ["10", "11"]
    with pytest.raises(DatasetError, match="available: test, train"):
        load_samples(tmp_path, split="dev")

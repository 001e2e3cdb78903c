"""The tiny Qwen2.5-VL builds from code, chats with an image, generates 16 tokens and reloads from disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from replan_common.tiny.qwen_vl import build_tiny_qwen_vl, load_qwen_vl, save_tiny_qwen_vl
from replan_common.tiny.tokenizers import build_qwen2_tokenizer


def _messages(image: Image.Image) -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "replace the cup"}],
        }
    ]


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.new("RGB", (224, 160), (120, 30, 200))


def test_tokenizer_round_trips_planner_output() -> None:
    tok = build_qwen2_tokenizer()
    text = '<think>x</think><gen_image>G</gen_image><region>[{"bbox_2d": [1, 2, 30, 40], "hint": "Z!"}]</region>'
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert tok.unk_token_id not in ids or tok.unk_token == tok.eos_token  # byte-level: never unknown


def test_builds_and_generates_with_an_image(image: Image.Image) -> None:
    model, processor = build_tiny_qwen_vl(seed=0)
    assert not model.training
    text = processor.apply_chat_template(_messages(image), add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    n_image_tokens = int((inputs.input_ids == model.config.image_token_id).sum())
    assert n_image_tokens == int(inputs.image_grid_thw.prod()) // 4
    out = model.generate(**inputs, max_new_tokens=16, min_new_tokens=16)
    assert out.shape[1] == inputs.input_ids.shape[1] + 16
    assert isinstance(processor.batch_decode(out[:, inputs.input_ids.shape[1] :])[0], str)


def test_same_seed_same_weights() -> None:
    a, _ = build_tiny_qwen_vl(seed=3)
    b, _ = build_tiny_qwen_vl(seed=3)
    c, _ = build_tiny_qwen_vl(seed=4)
    wa, wb, wc = (next(iter(m.parameters())) for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_reloads_from_a_saved_directory(tmp_path: Path, image: Image.Image) -> None:
    model, processor = build_tiny_qwen_vl(seed=0)
    save_tiny_qwen_vl(tmp_path, seed=0)
    loaded, loaded_processor = load_qwen_vl(tmp_path, local_files_only=True)
    inputs = []
    for proc in (processor, loaded_processor):
        inputs.append(
            proc.apply_chat_template(
                _messages(image),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
        )
    assert torch.equal(inputs[0].input_ids, inputs[1].input_ids)
    a = model.generate(**inputs[0], max_new_tokens=16, min_new_tokens=16)
    b = loaded.generate(**inputs[1], max_new_tokens=16, min_new_tokens=16)
    assert torch.equal(a, b)

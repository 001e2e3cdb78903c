"""A tiny random-weight Qwen2.5-VL (model + processor), and a processor loader that needs no torchvision.

Owns `build_tiny_qwen_vl` (the real `Qwen2_5_VLForConditionalGeneration` class from a tiny config, seeded
random weights, a locally trained tokenizer, the PIL image processor with Qwen2.5-VL's real pixel limits
and a minimal Qwen-style chat template), `save_tiny_qwen_vl`, and `load_qwen_vl` / `load_qwen_vl_processor`,
which load *any* Qwen2.5-VL checkpoint directory (tiny or real) the same way.

Why a processor subclass: transformers' Qwen2.5-VL processor class-checks its video processor, whose class
needs torchvision, which cannot be imported on the CPU machines (feasibility.md). `ImageOnlyQwenVLProcessor`
accepts `video_processor=None`; the tokenizer and image processor are loaded separately.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import ProcessorMixin, Qwen2_5_VLProcessor, Qwen2VLProcessor

from replan_common.tiny.modules import own_cpu_storage
from replan_common.tiny.tokenizers import build_qwen2_tokenizer

#: A minimal Qwen2.5-VL chat template: default system turn, images as vision start / pad / end.
QWEN_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CHAT_TEMPLATE_FILE = "chat_template.jinja"


class _NoVideoProcessorMixin:
    """Allow a missing video processor (its class needs torchvision); save/load without it."""

    def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
        if argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)  # type: ignore[misc]

    def save_pretrained(self, save_directory: str | os.PathLike[str], **kwargs: Any) -> list[str]:
        save_qwen_vl_processor(self, save_directory)
        return [str(save_directory)]


class ImageOnlyQwenVLProcessor(_NoVideoProcessorMixin, Qwen2_5_VLProcessor):  # type: ignore[misc]
    """Qwen2.5-VL processor (the planner's) with no video processor; `load_qwen_vl_processor` reads it back."""


class ImageOnlyQwen2VLProcessor(_NoVideoProcessorMixin, Qwen2VLProcessor):  # type: ignore[misc]
    """Qwen2-VL processor (what Qwen-Image-Edit's pipeline declares) with no video processor."""


def make_qwen_vl_processor(
    tokenizer: Any,
    image_processor: Any,
    chat_template: str | None = None,
    *,
    cls: type[ProcessorMixin] = ImageOnlyQwenVLProcessor,
) -> Any:
    """Wrap a tokenizer and an image processor into a Qwen-VL processor with no video processor."""
    template = chat_template or getattr(tokenizer, "chat_template", None)
    return cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=template)


def tiny_qwen_vl_config(tokenizer: Any, *, hidden_size: int = 64, num_layers: int = 2) -> Any:
    """A Qwen2.5-VL config small enough to build and generate in milliseconds; token ids match `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    head_dim = 16
    num_heads = hidden_size // head_dim
    half = head_dim // 2  # mrope sections (t, h, w) sum to head_dim / 2
    mrope_section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": max(1, num_heads // 2),
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def build_tiny_qwen_vl_processor(cls: type[ProcessorMixin] = ImageOnlyQwenVLProcessor) -> Any:
    """The tiny model's processor: local BPE tokenizer + chat template, PIL image processor, no video."""
    from transformers import Qwen2VLImageProcessorPil

    tokenizer = build_qwen2_tokenizer(chat_template=QWEN_VL_CHAT_TEMPLATE)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28)
    return make_qwen_vl_processor(tokenizer, image_processor, QWEN_VL_CHAT_TEMPLATE, cls=cls)


def build_tiny_qwen_vl(
    seed: int = 0,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    processor_cls: type[ProcessorMixin] = ImageOnlyQwenVLProcessor,
) -> tuple[Any, Any]:
    """`(Qwen2_5_VLForConditionalGeneration in eval mode, processor)`, random weights seeded by `seed`."""
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    processor = build_tiny_qwen_vl_processor(processor_cls)
    config = tiny_qwen_vl_config(processor.tokenizer, hidden_size=hidden_size, num_layers=num_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    ids = processor.tokenizer.convert_tokens_to_ids
    model.generation_config = GenerationConfig(
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        do_sample=False,
    )
    return model.eval(), processor


def save_qwen_vl_processor(processor: Any, directory: str | os.PathLike[str]) -> None:
    """Save tokenizer, image processor and chat template (the processor's own save wants a video one)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    processor.tokenizer.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    if processor.chat_template:
        (path / _CHAT_TEMPLATE_FILE).write_text(processor.chat_template, encoding="utf-8")


def save_tiny_qwen_vl(directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Build the tiny Qwen2.5-VL and save it as a checkpoint directory that `load_qwen_vl` reads."""
    model, processor = build_tiny_qwen_vl(seed)
    path = Path(directory)
    model.save_pretrained(path)
    save_qwen_vl_processor(processor, path)
    return path


def load_qwen_vl_processor(
    model: str | os.PathLike[str],
    *,
    subfolder: str = "",
    local_files_only: bool = False,
    cls: type[ProcessorMixin] = ImageOnlyQwenVLProcessor,
) -> Any:
    """Load a Qwen2.5-VL processor from a hub id or local directory without needing torchvision."""
    from transformers import AutoImageProcessor, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": local_files_only}
    if subfolder:
        kwargs["subfolder"] = subfolder
    tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
    image_processor = AutoImageProcessor.from_pretrained(model, **kwargs)
    template = getattr(tokenizer, "chat_template", None)
    local_template = Path(model) / subfolder / _CHAT_TEMPLATE_FILE
    if template is None and local_template.is_file():
        template = local_template.read_text(encoding="utf-8")
    return make_qwen_vl_processor(tokenizer, image_processor, template, cls=cls)


def load_qwen_vl(
    model: str | os.PathLike[str],
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """`(model in eval mode, processor)` from a hub id or local checkpoint directory, tiny or real."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": local_files_only}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    vlm = own_cpu_storage(Qwen2_5_VLForConditionalGeneration.from_pretrained(model, **kwargs).to(device))
    return vlm.eval(), load_qwen_vl_processor(model, local_files_only=local_files_only)

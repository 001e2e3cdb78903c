"""Tokenizers for the tiny test models, trained locally in well under a second (no hub access).

Owns the small training corpus and three builders that return real transformers tokenizer classes:
a byte-level BPE `Qwen2Tokenizer` (with Qwen's chat and vision special tokens), a byte-level BPE
`CLIPTokenizer` and a Unigram `T5TokenizerFast`. Byte-level BPE covers every byte, so any text (JSON,
tags, digits) round-trips through the Qwen and CLIP tokenizers. Trained vocabularies are cached per
process; each call still returns a fresh tokenizer object.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

#: Qwen2.5-VL's chat and vision special tokens, appended after the trained vocabulary (as in the real model).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: Same regex as Qwen2's pre-tokenizer: split letters, single digits, punctuation runs and whitespace.
_QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_CORPUS: tuple[str, ...] = (
    "replace the used cup on the desk with a small potted plant",
    "make the left apple blue and keep the right apple unchanged",
    "keep remaining part of image unchanged.",
    "keep remaining parts of this image unchanged",
    "change the colour of the car to red; remove the person on the right",
    "a photo of a cat sitting on a wooden table next to a window",
    "turn the sky into a sunset with warm orange light",
    "add a hat to the dog, make the text on the sign say OPEN",
    "You are a helpful assistant.",
    "Describe the key features of the input image (color, shape, size, texture, objects, background), "
    "then explain how the user's text instruction should alter or modify the image.",
    "<think>The user wants the cup replaced.</think><gen_image>keep remaining part of image unchanged."
    '</gen_image><region>[{"bbox_2d": [12, 40, 96, 120], "point_2d": [50, 80], '
    '"hint": "a small potted plant"}]</region>',
    '{"reasoning": "", "global_prompt": "make it snowy", '
    '"regions": [{"bbox": [0, 0, 64, 64], "hint": "snow"}]}',
    "0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 128 256 512 1024 [ ] { } < > : , . \" ' / \\ ( ) - _ = + * # ! ?",
    "the quick brown fox jumps over the lazy dog THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
)


def training_corpus() -> tuple[str, ...]:
    """The sentences every tiny tokenizer is trained on (edit instructions, planner output, punctuation)."""
    return _CORPUS


@cache
def _qwen_vocab_and_merges(vocab_size: int) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    model: dict[str, Any] = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    for special in QWEN_SPECIAL_TOKENS:
        vocab.setdefault(special, len(vocab))
    return vocab, tuple(tuple(m) for m in model["merges"])  # type: ignore[misc]


def build_qwen2_tokenizer(*, vocab_size: int = 400, chat_template: str | None = None) -> Any:
    """A byte-level BPE `Qwen2Tokenizer` with Qwen's special tokens; `len(tok)` is the model vocab size."""
    from transformers import Qwen2Tokenizer

    vocab, merges = _qwen_vocab_and_merges(vocab_size)
    tok = Qwen2Tokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        additional_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t != "<|endoftext|>"],
        model_max_length=32768,
    )
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


@cache
def _clip_vocab_and_merges(vocab_size: int) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    model: dict[str, Any] = json.loads(tok.to_str())["model"]
    return dict(model["vocab"]), tuple(tuple(m) for m in model["merges"])  # type: ignore[misc]


def build_clip_tokenizer(*, vocab_size: int = 400, model_max_length: int = 77) -> Any:
    """A byte-level BPE `CLIPTokenizer` (Flux pads the pooled prompt to 77 tokens)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges(vocab_size)
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)


@cache
def _t5_vocab(vocab_size: int) -> tuple[tuple[str, float], ...]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tuple((str(p), float(s)) for p, s in json.loads(tok.to_str())["model"]["vocab"])


def build_t5_tokenizer(*, vocab_size: int = 300, model_max_length: int = 512) -> Any:
    """A Unigram `T5TokenizerFast` with `<pad>`=0, `</s>`=1, `<unk>`=2 (as T5)."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=list(_t5_vocab(vocab_size)), extra_ids=0, model_max_length=model_max_length)

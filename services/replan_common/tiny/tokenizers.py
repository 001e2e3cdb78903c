"""Tokenizers for the tiny test models, trained locally in well under a second (no hub access).

Owns the small training corpus and three builders that return real transformers tokenizer classes:
a byte-level BPE `Qwen2Tokenizer` (with Qwen's chat and vision special tokens), a byte-level BPE
`CLIPTokenizer` and a Unigram `T5TokenizerFast`. Byte-level BPE covers every byte, so any text (JSON,
tags, digits) round-trips through the Qwen and CLIP tokenizers. Trained vocabularies are cached per
process; each call still returns a fresh tokenizer object.
"""

from __future__ import annotations

import itertools
import math
import string
from collections import Counter
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
    '{"reasoning": "", "global_prompt": "make it snowy", "regions": [{"bbox": [0, 0, 64, 64], "hint": "snow"}]}',
    "0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 128 256 512 1024 [ ] { } < > : , . \" ' / \\ ( ) - _ = + * # ! ?",
    "the quick brown fox jumps over the lazy dog THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
)


def training_corpus() -> tuple[str, ...]:
    """The sentences every tiny tokenizer is trained on (edit instructions, planner output, punctuation)."""
    return _CORPUS


def _learn_bpe(words: Counter[tuple[str, ...]], num_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE on pre-split words; ties are broken by the pair itself, so every process learns the same.

    (The `tokenizers` trainers break ties in hash-map order, which differs between processes.)
    """
    vocab = dict(words)
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        counts: Counter[tuple[str, str]] = Counter()
        for word, freq in vocab.items():
            for pair in itertools.pairwise(word):
                counts[pair] += freq
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for word, freq in vocab.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            key = tuple(out)
            merged[key] = merged.get(key, 0) + freq
        vocab = merged
    return merges


def _byte_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


@cache
def _qwen_vocab_and_merges(vocab_size: int) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    from tokenizers import Regex, pre_tokenizers

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    words: Counter[tuple[str, ...]] = Counter()
    for text in _CORPUS:
        for piece, _ in pre.pre_tokenize_str(text):
            words[tuple(piece)] += 1
    alphabet = _byte_alphabet()
    merges = _learn_bpe(words, vocab_size - len(alphabet))
    vocab = {token: i for i, token in enumerate(alphabet)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for special in QWEN_SPECIAL_TOKENS:
        vocab.setdefault(special, len(vocab))
    return vocab, tuple(merges)


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
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    base = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    vocab = {token: i for i, token in enumerate(base)}
    # Split the corpus exactly as CLIPTokenizer will (its own normalizer and pre-tokenizer).
    backend = CLIPTokenizer(vocab=dict(vocab), merges=[]).backend_tokenizer
    words: Counter[tuple[str, ...]] = Counter()
    for text in _CORPUS:
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized):
            word = (*piece[:-1], piece[-1] + "</w>")
            words[word] += 1
    merges = _learn_bpe(words, vocab_size - len(base))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, tuple(merges)


def build_clip_tokenizer(*, vocab_size: int = 800, model_max_length: int = 77) -> Any:
    """A byte-level BPE `CLIPTokenizer` (Flux pads the pooled prompt to 77 tokens)."""
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges(vocab_size)
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=model_max_length)


@cache
def _t5_vocab(vocab_size: int) -> tuple[tuple[str, float], ...]:
    """A Unigram vocabulary: T5's specials, then corpus words by frequency, then single characters."""
    words: Counter[str] = Counter()
    chars: set[str] = set(string.printable.strip()) | {"▁"}
    for text in _CORPUS:
        for word in text.split():
            words["▁" + word] += 1
            chars.update(word)
    total = sum(words.values())
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    char_pieces = sorted(chars)
    budget = max(0, vocab_size - len(pieces) - len(char_pieces))
    for word, freq in sorted(words.items(), key=lambda item: (-item[1], item[0]))[:budget]:
        pieces.append((word, math.log(freq / total)))
    pieces.extend((c, -20.0) for c in char_pieces)
    return tuple(pieces)


def build_t5_tokenizer(*, vocab_size: int = 300, model_max_length: int = 512) -> Any:
    """A Unigram `T5TokenizerFast` with `<pad>`=0, `</s>`=1, `<unk>`=2 (as T5)."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=list(_t5_vocab(vocab_size)), extra_ids=0, model_max_length=model_max_length)

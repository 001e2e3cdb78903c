"""`PlanGrammar`: the EBNF, the regex and the structural tag accept the same answers, reject broken ones,
and bound every answer so that any decoder, even one picking tokens at random, terminates."""

from __future__ import annotations

import json
import random
import re
from functools import cache
from typing import Any

import pytest
import xgrammar as xgr
from hypothesis import given, settings
from hypothesis import strategies as st

from replan_common.plan_parser import parse_planner_output
from replan_common.protocol import PlanMode
from replan_common.tiny.tokenizers import build_qwen2_tokenizer
from replan_planner.grammar import GrammarLimits, PlanGrammar
from replan_planner.output import read_model_output

GOOD = (
    "<think>The cup is on the left of the laptop.</think>\n"
    "<gen_image>keep remaining part of image unchanged.</gen_image>"
    '<region>[{"bbox_2d": [12, 40, 96, 120], "point_2d": [50, 80], "hint": "a small potted plant"}, '
    '{"bbox_2d":[0,0,5,5],"hint":"make the sign say \\"OPEN\\""}]</region>'
)
EMPTY_REGIONS = "<think></think><gen_image>make it snowy</gen_image><region>[]</region>"
REPHRASE = "<think>pear on the right</think><gen_image>Turn the pear on the right blue.</gen_image>"
BAD = [
    "<gen_image>no think</gen_image><region>[]</region>",
    '<think>x</think><gen_image>g</gen_image><region>[{"bbox_2d": [1, 2, 3], "hint": "three numbers"}]</region>',
    '<think>x</think><gen_image>g</gen_image><region>[{"bbox_2d": [1, 2, 3, 4], "hint": ""}]</region>',
    '<think>x</think><gen_image>g</gen_image><region>[{"bbox_2d": [1, 2, 3, 4.5], "hint": "float"}]</region>',
    '<think>x</think><gen_image>g</gen_image><region>[{"hint": "h", "bbox_2d": [1, 2, 3, 4]}]</region>',
    "<think>x</think><gen_image> </gen_image><region>[]</region>",
    "<think>x</think><gen_image>g</gen_image><region>[]</region> trailing text",
    "<think>a <tag> inside</think><gen_image>g</gen_image><region>[]</region>",
]


@cache
def tokenizer_info() -> Any:
    tok = build_qwen2_tokenizer()
    return xgr.TokenizerInfo.from_huggingface(
        tok, vocab_size=len(tok), stop_token_ids=[tok.convert_tokens_to_ids("<|im_end|>")]
    )


@cache
def compiler() -> Any:
    return xgr.GrammarCompiler(tokenizer_info())


def xgr_accepts(compiled: Any, text: str) -> bool:
    matcher = xgr.GrammarMatcher(compiled)
    return bool(matcher.accept_string(text)) and matcher.is_completed()


def forms(grammar: PlanGrammar) -> dict[str, Any]:
    return {
        "ebnf": compiler().compile_grammar(grammar.ebnf()),
        "regex": compiler().compile_grammar(xgr.Grammar.from_regex(grammar.regex())),
    }


@pytest.mark.parametrize("text", [GOOD, EMPTY_REGIONS])
def test_every_form_accepts_a_good_answer(text: str) -> None:
    grammar = PlanGrammar(GrammarLimits())
    assert re.fullmatch(grammar.regex(), text)
    for name, compiled in forms(grammar).items():
        assert xgr_accepts(compiled, text), name
    parse_planner_output(text)  # and the parser reads it


@pytest.mark.parametrize("text", BAD)
def test_every_form_rejects_a_broken_answer(text: str) -> None:
    grammar = PlanGrammar(GrammarLimits())
    assert not re.fullmatch(grammar.regex(), text)
    for name, compiled in forms(grammar).items():
        assert not xgr_accepts(compiled, text), name


def test_rephrase_grammar_has_no_region_part() -> None:
    grammar = PlanGrammar(GrammarLimits(), PlanMode.REPHRASE)
    assert "region" not in grammar.ebnf() and re.fullmatch(grammar.regex(), REPHRASE)
    assert all(xgr_accepts(c, REPHRASE) for c in forms(grammar).values())
    assert not any(xgr_accepts(c, GOOD) for c in forms(grammar).values())


def test_limits_bound_regions_and_lengths() -> None:
    grammar = PlanGrammar(GrammarLimits(max_regions=1, max_hint_chars=8, max_think_chars=10, min_regions=1))
    compiled = forms(grammar)
    one = '<think>short</think><gen_image>g</gen_image><region>[{"bbox_2d": [1, 2, 3, 4], "hint": "eight ch"}]</region>'
    assert all(xgr_accepts(c, one) for c in compiled.values())
    too_long_hint = one.replace("eight ch", "nine char")
    two = GOOD
    long_think = one.replace("short", "far too long reasoning")
    none = EMPTY_REGIONS
    for text in (too_long_hint, two, long_think, none):
        assert not re.fullmatch(grammar.regex(), text)
        assert not any(xgr_accepts(c, text) for c in compiled.values())


def test_structural_tag_constrains_only_the_region_json() -> None:
    grammar = PlanGrammar(GrammarLimits(max_regions=2))
    tag = grammar.structural_tag()
    assert tag["triggers"] == ["<region>"]
    items = [
        xgr.StructuralTagItem(begin=s["begin"], schema=json.dumps(s["schema"]), end=s["end"]) for s in tag["structures"]
    ]
    compiled = compiler().compile_structural_tag(items, tag["triggers"])
    assert xgr_accepts(compiled, GOOD.replace('\\"OPEN\\"', "OPEN"))  # see region_json_schema: no escapes
    assert xgr_accepts(compiled, "free <b>text</b> is fine before the region tag")
    assert not xgr_accepts(compiled, '<think>x</think><region>[{"bbox_2d": [1, 2], "hint": "h"}]</region>')


@pytest.mark.parametrize("mode", list(PlanMode))
@pytest.mark.parametrize("seed", range(6))
def test_random_decoding_terminates_within_the_bound(mode: PlanMode, seed: int) -> None:
    """A decoder that picks any allowed token at random must finish: no unbounded part is left to repeat."""
    limits = GrammarLimits(
        max_regions=2, max_think_chars=24, max_global_chars=24, max_hint_chars=12, max_coord_digits=3
    )
    compiled = compiler().compile_grammar(PlanGrammar(limits, mode).ebnf())
    info = tokenizer_info()
    tok = build_qwen2_tokenizer()
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)
    rng = random.Random(seed)
    tokens: list[int] = []
    for _ in range(2000):
        matcher.fill_next_token_bitmask(bitmask)
        words = bitmask[0].tolist()
        allowed = [i for i in range(info.vocab_size) if (words[i // 32] >> (i % 32)) & 1]
        choice = rng.choice(allowed)
        assert matcher.accept_token(choice)
        if matcher.is_terminated():
            break
        tokens.append(choice)
    assert matcher.is_terminated(), "the grammar let a random decoder run for 2000 tokens"
    read = read_model_output(tok.decode(tokens), mode=mode)  # parses (boxes with no area are dropped)
    assert len(read.plan.regions) + len(read.adjustments) <= 2


# json.dumps escapes '"' and '\\' in hints, which the grammar allows; a hint may not start with either.
hint = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)


@settings(max_examples=40, deadline=None)
@given(
    think=st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cc", "Cs")), max_size=40),
    regions=st.lists(
        st.tuples(st.lists(st.integers(0, 99999), min_size=4, max_size=4), hint.filter(lambda h: h[0] not in ' "\\')),
        max_size=3,
    ),
)
def test_regex_and_ebnf_agree_on_generated_answers(think: str, regions: list[tuple[list[int], str]]) -> None:
    body = json.dumps([{"bbox_2d": box, "hint": h} for box, h in regions], ensure_ascii=False)
    text = f"<think>{think}</think><gen_image>keep it</gen_image><region>{body}</region>"
    grammar = PlanGrammar(GrammarLimits())
    in_regex = re.fullmatch(grammar.regex(), text) is not None
    assert in_regex == xgr_accepts(forms(grammar)["ebnf"], text)
    assert in_regex  # everything generated here is inside the language

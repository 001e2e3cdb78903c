"""The shape of a planner answer as a grammar, for constrained decoding in every backend.

One `PlanGrammar` describes the answer (`<think>` free prose, `<gen_image>` prose, `<region>` a JSON list of
`{"bbox_2d": [4 ints], "point_2d"?: [2 ints], "hint": "…"}`), and renders it in the three forms decoders
take: an EBNF grammar (xgrammar in-process, vLLM `structured_outputs.grammar`), a regular expression (vLLM
`structured_outputs.regex`) and a structural tag with a JSON schema for the `<region>` part only (vLLM
`response_format` `structural_tag`). The three are generated from the same pieces so they cannot drift.

Every part has a length bound (`GrammarLimits`) so that even a random-weight model must terminate: there is
nothing it can repeat forever. Prose excludes `<`, so a tag can only be closed by the grammar itself, and
hints exclude `"`, `\\` and control characters, so the region JSON is always valid. What a grammar cannot
say (x2 > x1, a box inside the image) is checked after decoding (`output`, `coordinates`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replan_common.protocol import PlanMode

__all__ = ["GrammarLimits", "PlanGrammar"]


@dataclass(frozen=True)
class GrammarLimits:
    """Length bounds of a planner answer. `None` for `max_think_chars` leaves the reasoning unbounded."""

    max_regions: int = 8
    min_regions: int = 0
    max_think_chars: int | None = None
    max_global_chars: int = 600
    max_hint_chars: int = 200
    max_coord_digits: int = 5
    allow_point: bool = True

    def __post_init__(self) -> None:
        for name in ("max_regions", "max_global_chars", "max_hint_chars", "max_coord_digits"):
            if getattr(self, name) < 1:
                raise ValueError(f"GrammarLimits.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_regions <= self.max_regions:
            raise ValueError(f"GrammarLimits.min_regions must be in [0, max_regions], got {self.min_regions}")
        if self.max_think_chars is not None and self.max_think_chars < 0:
            raise ValueError(f"GrammarLimits.max_think_chars must be >= 0 or None, got {self.max_think_chars}")


# Character classes shared by the EBNF and the regex (both accept this bracket syntax).
_THINK_CHAR = r"[^<\x00-\x08\x0b\x0c\x0e-\x1f]"  # prose: no tags, no control characters but \t \n \r
_LINE_CHAR = r"[^<\x00-\x1f]"
_FIRST_TEXT_CHAR = r"[^< \x00-\x1f]"  # the global prompt and hints must not be blank
# A hint character, or one of the escapes \" \\ \/ (quoted text in text-editing hints). Other escapes are
# left out on purpose: \uXXXX can spell lone surrogates, \n \t blank-looking hints.
_HINT_CHAR = {"regex": r'([^"\\<\x00-\x1f]|\\["\\/])', "ebnf": r'( [^"\\<\x00-\x1f] | "\\" ["\\/] )'}
_FIRST_HINT_CHAR = r'[^"\\< \x00-\x1f]'
_SEP = r"[ \n]{0,2}"  # between tags and around JSON punctuation: models differ in spacing
_WS = r"[ \n]{0,2}"


def _repeat(char_class: str, low: int, high: int | None) -> str:
    if high is None:
        return f"{char_class}*" if low == 0 else f"{char_class}+"
    return f"{char_class}{{{low},{high}}}"


class PlanGrammar:
    """The planner answer's grammar for one mode and one set of limits."""

    def __init__(self, limits: GrammarLimits, mode: PlanMode = PlanMode.REGIONS) -> None:
        self.limits = limits
        self.mode = mode

    # -- pieces --------------------------------------------------------------------------------------------

    def _think(self) -> str:
        return _repeat(_THINK_CHAR, 0, self.limits.max_think_chars)

    def _global(self, joiner: str = "") -> str:
        return _FIRST_TEXT_CHAR + joiner + _repeat(_LINE_CHAR, 0, self.limits.max_global_chars - 1)

    def _int(self) -> str:
        return f"(0|[1-9][0-9]{{0,{self.limits.max_coord_digits - 1}}})"

    def _hint_chars(self, dialect: str) -> str:
        joiner = " " if dialect == "ebnf" else ""
        return _FIRST_HINT_CHAR + joiner + _repeat(_HINT_CHAR[dialect], 0, self.limits.max_hint_chars - 1)

    # -- EBNF (xgrammar / GBNF dialect) ---------------------------------------------------------------------

    def ebnf(self) -> str:
        """The grammar in xgrammar's EBNF, as in-process decoding and vLLM `structured_outputs.grammar` take."""
        lim = self.limits
        rules = [
            f'think ::= "<think>" {self._think()} "</think>"',
            f'global ::= "<gen_image>" {self._global(" ")} "</gen_image>"',
            f"sep ::= {_SEP}",
        ]
        if self.mode is PlanMode.REGIONS:
            point = '( "," ws "\\"point_2d\\"" ws ":" ws "[" ws int ws "," ws int ws "]" ws )?'
            more = f'( ws "," ws region ){{{max(lim.min_regions - 1, 0)},{lim.max_regions - 1}}}'
            listed = ('"[" ws "]" | ' if lim.min_regions == 0 else "") + '"[" ws region ' + more + ' ws "]"'
            rules = [
                "root ::= think sep global sep regions",
                *rules,
                f'regions ::= "<region>" ( {listed} ) "</region>"',
                'region ::= "{" ws "\\"bbox_2d\\"" ws ":" ws box ws '
                + (point + " " if lim.allow_point else "")
                + '"," ws "\\"hint\\"" ws ":" ws hint ws "}"',
                'box ::= "[" ws int ws "," ws int ws "," ws int ws "," ws int ws "]"',
                f'int ::= "0" | [1-9] [0-9]{{0,{lim.max_coord_digits - 1}}}',
                f'hint ::= "\\"" {self._hint_chars("ebnf")} "\\""',
                f"ws ::= {_WS}",
            ]
        else:
            rules = ["root ::= think sep global", *rules]
        return "\n".join(rules) + "\n"

    # -- regex ----------------------------------------------------------------------------------------------

    def regex(self) -> str:
        """The same language as one regular expression (vLLM `structured_outputs.regex`; Python `re`)."""
        head = f"<think>{self._think()}</think>{_SEP}<gen_image>{self._global()}</gen_image>"
        if self.mode is PlanMode.REPHRASE:
            return head
        ws, num = _WS, self._int()
        box = rf"\[{ws}{num}{ws},{ws}{num}{ws},{ws}{num}{ws},{ws}{num}{ws}\]"
        point = rf'(,{ws}"point_2d"{ws}:{ws}\[{ws}{num}{ws},{ws}{num}{ws}\]{ws})?' if self.limits.allow_point else ""
        region = rf'\{{{ws}"bbox_2d"{ws}:{ws}{box}{ws}{point},{ws}"hint"{ws}:{ws}"{self._hint_chars("regex")}"{ws}\}}'
        lim = self.limits
        more = f"({ws},{ws}{region}){{{max(lim.min_regions - 1, 0)},{lim.max_regions - 1}}}"
        empty = rf"\[{ws}\]|" if lim.min_regions == 0 else ""
        regions = rf"<region>({empty}\[{ws}{region}{more}{ws}\])</region>"
        return f"{head}{_SEP}{regions}"

    # -- structural tag -------------------------------------------------------------------------------------

    def region_json_schema(self) -> dict[str, Any]:
        """JSON schema of the `<region>` list (bounded), for decoders that constrain JSON inside tags.

        Note: xgrammar (0.2) compiles a string with minLength/maxLength to a grammar without escapes, so a
        hint under this schema cannot contain an escaped quote; `ebnf()` and `regex()` allow one.
        """
        lim = self.limits
        coord = {"type": "integer", "minimum": 0, "maximum": 10**lim.max_coord_digits - 1}
        # Key order matters to schema-driven decoders (xgrammar emits properties in schema order): the
        # model's own order is bbox_2d, point_2d, hint.
        properties: dict[str, Any] = {"bbox_2d": {"type": "array", "items": coord, "minItems": 4, "maxItems": 4}}
        if lim.allow_point:
            properties["point_2d"] = {"type": "array", "items": coord, "minItems": 2, "maxItems": 2}
        properties["hint"] = {"type": "string", "minLength": 1, "maxLength": lim.max_hint_chars}
        return {
            "type": "array",
            "minItems": lim.min_regions,
            "maxItems": lim.max_regions,
            "items": {
                "type": "object",
                "properties": properties,
                "required": ["bbox_2d", "hint"],
                "additionalProperties": False,
            },
        }

    def structural_tag(self) -> dict[str, Any]:
        """A vLLM/xgrammar structural tag: free text until `<region>`, then schema-valid JSON, then `</region>`.

        Looser than `ebnf()`: it leaves `<think>` and `<gen_image>` entirely to the model and only makes the
        region list schema-valid; in rephrase mode there is nothing to constrain.
        """
        return {
            "type": "structural_tag",
            "structures": [{"begin": "<region>", "schema": self.region_json_schema(), "end": "</region>"}],
            "triggers": ["<region>"],
        }

"""The VLM judge of IV-Edit: prompts (our wording, as data files), provider clients, reply parsing, cache.

Public API::

    client = OpenAIChatJudgeClient(base_url=..., model=...)   # or GeminiJudgeClient(model=..., api_key=...)
    judge = Judge(client, cache=JudgeCache(run_dir))
    verdicts = judge.evaluate_many(JudgeInputs(...), [Dimension.TARGET, Dimension.EFFECT], sample_key="17")
"""

from replan_eval.judge.cache import JudgeCache
from replan_eval.judge.clients import GeminiJudgeClient, JudgeClient, JudgeRequest, OpenAIChatJudgeClient
from replan_eval.judge.dimensions import DIMENSIONS, Dimension, DimensionSpec, spec
from replan_eval.judge.evaluator import Judge
from replan_eval.judge.factory import JudgeProvider, make_judge_client
from replan_eval.judge.parsing import ParsedReply, ParseMethod, parse_reply
from replan_eval.judge.prompts import ImagePart, JudgeImage, JudgeInputs, PromptTemplates, TextPart
from replan_eval.judge.verdict import JudgeVerdict

__all__ = [
    "DIMENSIONS",
    "Dimension",
    "DimensionSpec",
    "GeminiJudgeClient",
    "ImagePart",
    "Judge",
    "JudgeCache",
    "JudgeClient",
    "JudgeImage",
    "JudgeInputs",
    "JudgeProvider",
    "JudgeRequest",
    "JudgeVerdict",
    "OpenAIChatJudgeClient",
    "ParseMethod",
    "ParsedReply",
    "PromptTemplates",
    "TextPart",
    "make_judge_client",
    "parse_reply",
    "spec",
]

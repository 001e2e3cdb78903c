"""A tiny GRPO run with TRL, rewarded by our gateway over HTTP (stage 1) — the trainer-facing contract.

The policy is a random 2-layer Qwen2 causal LM built from a config with the locally trained tiny Qwen
tokenizer (no downloads); it trains for 2 steps on CPU. Random text earns the same stage-1 reward for
every completion, so the smoke run proves the plumbing (the callable's name, one score per completion,
scores equal to the server's formula, TRL logging them), not learning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from replan_eval.adapters.client import RewardClientConfig
from replan_eval.adapters.trl import completion_text, make_reward_func
from replan_eval.rewards.stage1 import score_stage1
from tests.integration.eval.conftest import API_KEY, EvalServices

pytestmark = pytest.mark.integration

PROMPTS = [
    "replace the used cup on the desk with a small potted plant",
    "make the left apple blue and keep the right apple unchanged",
    "turn the sky into a sunset with warm orange light",
    "add a hat to the dog, make the text on the sign say OPEN",
]


def test_grpo_trains_two_steps_on_rewards_from_the_gateway(eval_services: EvalServices, tmp_path: Path) -> None:
    import datasets  # dev dependencies (trl brings datasets): missing ones fail the test, never skip it
    import torch
    import trl
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from replan_common.tiny.tokenizers import build_qwen2_tokenizer

    tokenizer = build_qwen2_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token = "<|endoftext|>"
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
        )
    )
    server = make_reward_func(
        stage=1, config=RewardClientConfig(url=f"{eval_services.gateway_url}/v1/rewards", api_key=API_KEY)
    )
    seen: list[tuple[list[str], list[float]]] = []

    def replan_stage1(prompts: Sequence[object], completions: Sequence[object], **kwargs: object) -> list[float]:
        scores = server(prompts, completions, **kwargs)
        seen.append(([completion_text(c) for c in completions], scores))
        return scores

    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=16,
        max_steps=2,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[replan_stage1],
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": PROMPTS}),
        processing_class=tokenizer,
    )
    result = trainer.train()

    assert result.global_step == 2
    assert [len(scores) for _, scores in seen] == [4, 4]
    for completions, scores in seen:
        assert scores == [pytest.approx(score_stage1(c).total) for c in completions]
    logged = [entry for entry in trainer.state.log_history if "rewards/replan_stage1/mean" in entry]
    assert len(logged) == 2
    for entry, (_, scores) in zip(logged, seen, strict=True):
        assert entry["rewards/replan_stage1/mean"] == pytest.approx(sum(scores) / len(scores))
        assert entry["replan/failed"] == 0.0  # every request answered (the adapter logs its parts)

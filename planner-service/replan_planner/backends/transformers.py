"""The `transformers` backend: Qwen2.5-VL in this process, with grammar-constrained decoding.

Owns loading (a local directory or hub id through `replan_common.tiny.load_qwen_vl`, or the tiny
random-weight model, written to a directory first so the real `from_pretrained` path runs), the processor's
pixel limits (set to the service's, so the coordinate mapping and the model agree), and generation with an
xgrammar logits processor built from `PlanGrammar`, so that even random weights produce a parseable plan.

Loading runs in a worker thread started by `start()`; until it finishes `state()` says "loading" and
`generate` answers 503 ``planner_loading``. Generation runs in a thread too, one at a time (a lock): the
model is not re-entrant and a CPU box has no spare cores for a second one anyway. torch, transformers and
xgrammar are imported only when loading.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from replan_common.errors import ServiceUnavailable
from replan_common.geometry import Size
from replan_common.protocol import PlanMode
from replan_planner.backends.base import BackendState, Generation, GenerationInput
from replan_planner.grammar import GrammarLimits, PlanGrammar
from replan_planner.prompts import transformers_user_message
from replan_planner.settings import TINY_MODEL, TransformersSettings

__all__ = ["TransformersBackend"]

logger = logging.getLogger(__name__)

#: Qwen2.5-VL's vision patch size: `image_grid_thw` counts patches of this many pixels.
_PATCH = 14


class _Loaded:
    """What loading produces: the model, its processor, one compiled grammar per mode, the stop ids."""

    def __init__(self, model: Any, processor: Any, grammars: dict[PlanMode, Any], stop_ids: list[int]) -> None:
        self.model = model
        self.processor = processor
        self.grammars = grammars
        self.stop_ids = stop_ids


class TransformersBackend:
    """In-process Qwen2.5-VL; `model` is a directory, a hub id, or `tiny`."""

    name = "transformers"

    def __init__(
        self,
        settings: TransformersSettings,
        *,
        model: str,
        min_pixels: int,
        max_pixels: int,
        grammar: GrammarLimits,
    ) -> None:
        self.settings = settings
        self._model = model
        self._pixels = (min_pixels, max_pixels)
        self._grammar = grammar
        self._loaded: _Loaded | None = None
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def model(self) -> str:
        return "tiny-qwen2.5-vl-random" if self._model == TINY_MODEL else self._model

    async def start(self) -> None:
        self._task = asyncio.create_task(self._load_in_thread())

    async def wait_until_loaded(self) -> None:
        """Block until loading ends; raises what loading raised (used by the CLI and tests)."""
        if self._task is None:
            await self.start()
        assert self._task is not None
        await asyncio.shield(self._task)
        if self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            # The loading thread cannot be interrupted; wait for it so it does not outlive the app.
            await asyncio.wait([self._task])
        self._loaded = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def state(self) -> BackendState:
        if self._loaded is not None:
            return BackendState(True, "ready", checks={"model": self.model, "device": self.settings.device})
        if self._error is not None:
            return BackendState(False, "failed", f"loading {self._model!r} failed: {self._error}")
        return BackendState(False, "loading", f"loading {self._model!r}")

    async def generate(self, request: GenerationInput) -> Generation:
        loaded = self._loaded
        if loaded is None:
            if self._error is not None:
                raise ServiceUnavailable(f"the planner model failed to load: {self._error}", code="planner_load_failed")
            raise ServiceUnavailable(
                "the planner model is still loading; retry shortly", code="planner_loading", retry_after_s=5
            )
        async with self._lock:
            return await asyncio.to_thread(self._generate, loaded, request)

    # -- loading (worker thread) ----------------------------------------------------------------------------

    async def _load_in_thread(self) -> None:
        try:
            self._loaded = await asyncio.to_thread(self._load)
        except Exception as exc:  # reported through state() and 503s; the service stays up
            logger.exception("loading the planner model %r failed", self._model)
            self._error = exc

    def _load(self) -> _Loaded:
        import torch

        from replan_common.tiny.qwen_vl import load_qwen_vl, save_tiny_qwen_vl

        path: str | Path = self._model
        if self._model == TINY_MODEL:
            logger.warning(
                "planner preset 'tiny': a random-weight Qwen2.5-VL on CPU; its plans are noise, for tests only"
            )
            if self.settings.tiny_dir is not None:
                path = self.settings.tiny_dir
            else:
                self._tmp = tempfile.TemporaryDirectory(prefix="replan-tiny-planner-")
                path = Path(self._tmp.name)
            if not (Path(path) / "config.json").is_file():
                save_tiny_qwen_vl(path, seed=self.settings.tiny_seed)
        dtype = _dtype(self.settings.dtype, self.settings.device, torch)
        model, processor = load_qwen_vl(
            path,
            device=self.settings.device,
            dtype=dtype,
            local_files_only=self.settings.local_files_only or self._model == TINY_MODEL,
            attn_implementation=self.settings.attn_implementation,
        )
        min_pixels, max_pixels = self._pixels
        processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        stop_ids = _stop_ids(model, processor)
        grammars = self._compile_grammars(model, processor, stop_ids) if self.settings.structured else {}
        logger.info("planner model %r loaded on %s (%s)", self._model, self.settings.device, dtype)
        return _Loaded(model, processor, grammars, stop_ids)

    def _compile_grammars(self, model: Any, processor: Any, stop_ids: list[int]) -> dict[PlanMode, Any]:
        try:
            import xgrammar as xgr
        except ImportError as exc:
            raise RuntimeError(
                "grammar-constrained decoding needs xgrammar: pip install xgrammar "
                "(or set REPLAN_PLANNER_TRANSFORMERS__STRUCTURED=false)"
            ) from exc
        vocab_size = int(model.get_output_embeddings().weight.shape[0])  # may exceed len(tokenizer): padding
        info = xgr.TokenizerInfo.from_huggingface(processor.tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        compiler = xgr.GrammarCompiler(info)
        return {mode: compiler.compile_grammar(PlanGrammar(self._grammar, mode).ebnf()) for mode in PlanMode}

    # -- generation (worker thread) -------------------------------------------------------------------------

    def _generate(self, loaded: _Loaded, request: GenerationInput) -> Generation:
        import torch

        processor, model = loaded.processor, loaded.model
        messages = [transformers_user_message(request.prompt)]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=[request.image], return_tensors="pt").to(model.device)
        _, grid_h, grid_w = (int(v) for v in inputs["image_grid_thw"][0])
        view = Size(grid_w * _PATCH, grid_h * _PATCH)
        if view != request.view:
            # Should not happen (same smart_resize); the processor's view is the truth for the boxes.
            logger.warning("processor resized to %s, expected %s; using the processor's", view, request.view)
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_new_tokens, "eos_token_id": loaded.stop_ids}
        if request.temperature is not None:
            kwargs.update(
                {"do_sample": False}
                if request.temperature == 0
                else {"do_sample": True, "temperature": request.temperature, "top_k": 0}
            )
        if loaded.grammars:
            kwargs["logits_processor"] = [_grammar_processor(loaded.grammars[request.mode])]
        threads = torch.get_num_threads()
        try:
            # Set per call and restored, so a process that also runs other torch work (the editor's in-process
            # planner) is not throttled for good.
            if self.settings.num_threads is not None:
                torch.set_num_threads(self.settings.num_threads)
            with torch.inference_mode(), torch.random.fork_rng(devices=[]):
                if request.seed is not None:
                    torch.manual_seed(request.seed)
                output = model.generate(**inputs, **kwargs)
        finally:
            torch.set_num_threads(threads)
        prompt_len = int(inputs["input_ids"].shape[1])
        new_tokens = output[0, prompt_len:]
        finished = bool(len(new_tokens)) and int(new_tokens[-1]) in loaded.stop_ids
        answer = processor.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Generation(
            text=answer,
            model=self.model,
            view=view,
            prompt_tokens=prompt_len,
            completion_tokens=len(new_tokens),
            finish_reason="stop" if finished else "length",
        )


def _grammar_processor(compiled: Any) -> Any:
    """A fresh xgrammar logits processor (they hold per-generation state, so one per call)."""
    from xgrammar.contrib.hf import LogitsProcessor

    return LogitsProcessor(compiled)


def _stop_ids(model: Any, processor: Any) -> list[int]:
    """End-of-answer tokens: the checkpoint's generation config, else the tokenizer's EOS and <|im_end|>."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    tokenizer = processor.tokenizer
    for token in ("<|im_end|>", tokenizer.eos_token):
        token_id = tokenizer.convert_tokens_to_ids(token) if token else None
        if isinstance(token_id, int) and token_id not in ids and token_id != tokenizer.unk_token_id:
            ids.append(token_id)
    return [int(i) for i in ids]


def _dtype(name: str, device: str, torch: Any) -> Any:
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)

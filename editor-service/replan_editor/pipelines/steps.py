"""The per-step callback of a region edit: rule-phase switch, progress report and cancellation.

`StepHook` is passed as the diffusers pipeline's `callback_on_step_end`. After step `i` it puts the region
mask of step `i + 1` into the attention-kwargs dict the pipeline hands to every transformer call (the dict
is the pipeline's own `joint_attention_kwargs` / `attention_kwargs` object, read again at each step), calls
`on_step(i + 1, total)` and raises `EditCancelled` when `should_stop()` says so and steps remain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replan_editor.pipelines.region_mask import REGION_MASK_KWARG, RulePhases

#: `on_step(done, total)`: `done` denoising steps of `total` have finished (1-based).
StepCallback = Callable[[int, int], None]
StopCheck = Callable[[], bool]


class EditCancelled(Exception):
    """The caller's `should_stop()` returned True; the edit stopped between denoising steps."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"edit cancelled by the caller after {done} of {total} denoising steps")
        self.done = done
        self.total = total


class StepHook:
    """`callback_on_step_end` for one edit (see the module docstring)."""

    def __init__(
        self,
        total: int,
        *,
        attention_kwargs: dict[str, Any] | None = None,
        phases: RulePhases | None = None,
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> None:
        self.total = total
        self.attention_kwargs = attention_kwargs
        self.phases = phases
        self.on_step = on_step
        self.should_stop = should_stop

    def check_stop(self, done: int) -> None:
        """Raise `EditCancelled` if the caller asks to stop (`done` steps finished so far)."""
        if self.should_stop is not None and self.should_stop():
            raise EditCancelled(done, self.total)

    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        done = step + 1
        if self.phases is not None and self.attention_kwargs is not None:
            self.attention_kwargs[REGION_MASK_KWARG] = self.phases.for_step(done)
        if self.on_step is not None:
            self.on_step(done, self.total)
        if done < self.total:
            self.check_stop(done)
        return {}

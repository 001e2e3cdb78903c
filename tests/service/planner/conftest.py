"""Fixtures of the planner service tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from planner_testkit import ReplayUpstream, Step


@pytest.fixture
def replay() -> Callable[..., ReplayUpstream]:
    """`replay(step, step, ...)`: a `ReplayUpstream` with that script."""

    def _make(*steps: Step) -> ReplayUpstream:
        return ReplayUpstream(list(steps))

    return _make

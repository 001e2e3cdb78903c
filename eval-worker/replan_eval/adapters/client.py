"""`RewardClient`: how trainer adapters reach ``POST /v1/rewards``, with the original reward's patience.

The original reward function posted each rollout to its editing server and, on a connection error, a
timeout or a 5xx, tried again up to 3 times 5 s apart; a 4xx, a malformed reply or the last failure
scored the rollout 0, so a training step never dies of a reward outage. We keep those rules per request
(429 is retried too, honouring ``Retry-After``), but send batches: a trainer's batch is cut into chunks
of at most ``max_batch`` samples and ``max_request_bytes`` of text and images (a chunk must fit the
gateway's body limit, 32 MiB by default), chunks are sent
concurrently, and a chunk that fails for good scores 0 on its own while the others keep their scores.

Configuration comes from the environment when a trainer calls in (never at import): see
`RewardClientConfig.from_env`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from replan_eval.rewards.protocol import RewardSample, RewardSampleResult, RewardsRequest, RewardsResponse
from replan_eval.rewards.store import RewardStage

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_REWARD_URL", "RewardClient", "RewardClientConfig", "RewardOutcome"]

DEFAULT_REWARD_URL = "http://127.0.0.1:8000/v1/rewards"


@dataclass(frozen=True)
class RewardClientConfig:
    """Where the reward server is and how patiently to call it; defaults are the original's (3 × 5 s)."""

    url: str = DEFAULT_REWARD_URL
    api_key: str | None = None
    timeout_s: float = 1800.0
    attempts: int = 3
    retry_delay_s: float = 5.0
    max_batch: int = 32
    max_request_bytes: int = 24 * 1024 * 1024
    max_concurrency: int = 4

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"REPLAN_REWARD_URL must start with http:// or https://, got {self.url!r}")
        if min(self.attempts, self.max_batch, self.max_concurrency, self.max_request_bytes) < 1:
            raise ValueError(
                "REPLAN_REWARD_ATTEMPTS, _MAX_BATCH, _MAX_REQUEST_BYTES and _MAX_CONCURRENCY must be at least 1"
            )
        if self.timeout_s <= 0 or self.retry_delay_s < 0:
            raise ValueError("REPLAN_REWARD_TIMEOUT_S must be > 0 and REPLAN_REWARD_RETRY_DELAY_S >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RewardClientConfig:
        """``REPLAN_REWARD_URL`` (the full ``…/v1/rewards`` URL), ``REPLAN_REWARD_API_KEY``,
        ``REPLAN_REWARD_TIMEOUT_S``, ``REPLAN_REWARD_ATTEMPTS``, ``REPLAN_REWARD_RETRY_DELAY_S``,
        ``REPLAN_REWARD_MAX_BATCH``, ``REPLAN_REWARD_MAX_REQUEST_BYTES``, ``REPLAN_REWARD_MAX_CONCURRENCY``."""
        env = os.environ if env is None else env
        defaults = cls()

        def number(name: str, default: float, kind: Callable[[str], float]) -> float:
            raw = env.get(f"REPLAN_REWARD_{name}")
            if raw is None or not raw.strip():
                return default
            try:
                return kind(raw)
            except ValueError as exc:
                raise ValueError(f"REPLAN_REWARD_{name} must be a number, got {raw!r}") from exc

        return cls(
            url=env.get("REPLAN_REWARD_URL") or defaults.url,
            api_key=env.get("REPLAN_REWARD_API_KEY") or None,
            timeout_s=number("TIMEOUT_S", defaults.timeout_s, float),
            attempts=int(number("ATTEMPTS", defaults.attempts, int)),
            retry_delay_s=number("RETRY_DELAY_S", defaults.retry_delay_s, float),
            max_batch=int(number("MAX_BATCH", defaults.max_batch, int)),
            max_request_bytes=int(number("MAX_REQUEST_BYTES", defaults.max_request_bytes, int)),
            max_concurrency=int(number("MAX_CONCURRENCY", defaults.max_concurrency, int)),
        )


@dataclass(frozen=True)
class RewardOutcome:
    """Scores in input order; ``details[i]`` is None where the sample's chunk failed for good (score 0)."""

    scores: list[float]
    details: list[RewardSampleResult | None]

    @property
    def failed(self) -> int:
        return sum(d is None for d in self.details)


class _Retryable(Exception):
    """A failure worth another attempt (connection, timeout, 5xx, 429)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _Final(Exception):
    """A failure that another attempt will not fix (4xx, a reply that is not a reward batch)."""


class RewardClient:
    """Blocking client of ``POST /v1/rewards``; never raises for a server problem (failed samples score 0)."""

    def __init__(
        self,
        config: RewardClientConfig | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or RewardClientConfig.from_env()
        self._transport = transport
        self._sleep = sleep

    def score_mixed(self, samples: Sequence[RewardSample], stages: Sequence[RewardStage]) -> RewardOutcome:
        """Like `score`, with a stage per sample: one request stream per stage, results back in input order."""
        if len(samples) != len(stages):
            raise ValueError(f"{len(samples)} samples but {len(stages)} stages")
        scores = [0.0] * len(samples)
        details: list[RewardSampleResult | None] = [None] * len(samples)
        for stage in sorted(set(stages)):
            indices = [i for i, s in enumerate(stages) if s == stage]
            outcome = self.score([samples[i] for i in indices], stage=stage)
            for position, index in enumerate(indices):
                scores[index] = outcome.scores[position]
                detail = outcome.details[position]
                details[index] = None if detail is None else detail.model_copy(update={"index": index})
        return RewardOutcome(scores, details)

    def score(self, samples: Sequence[RewardSample], *, stage: RewardStage) -> RewardOutcome:
        """Score ``samples`` (chunked, concurrently); the outcome always has one score per sample."""
        if not samples:
            return RewardOutcome([], [])
        # Stage 2 edits the input image: a rollout without one cannot be scored (0, as a missing field is).
        sendable = [i for i, s in enumerate(samples) if stage == 1 or s.image]
        if len(sendable) < len(samples):
            logger.warning(
                "%s of %s stage-2 samples have no input image; they score 0", len(samples) - len(sendable), len(samples)
            )
        outcome = self._score_sendable([samples[i] for i in sendable], stage)
        scores = [0.0] * len(samples)
        details: list[RewardSampleResult | None] = [None] * len(samples)
        for position, index in enumerate(sendable):
            scores[index] = outcome.scores[position]
            detail = outcome.details[position]
            details[index] = None if detail is None else detail.model_copy(update={"index": index})
        return RewardOutcome(scores, details)

    def _score_sendable(self, samples: Sequence[RewardSample], stage: RewardStage) -> RewardOutcome:
        if not samples:
            return RewardOutcome([], [])
        chunks = self._chunks(samples)
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        with httpx.Client(timeout=self.config.timeout_s, transport=self._transport, headers=headers) as http:
            if len(chunks) == 1:
                replies = [self._score_chunk(http, chunks[0], stage)]
            else:
                workers = min(self.config.max_concurrency, len(chunks))
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replan-reward") as pool:
                    replies = list(pool.map(lambda chunk: self._score_chunk(http, chunk, stage), chunks))
        scores: list[float] = []
        details: list[RewardSampleResult | None] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            if reply is None:
                scores.extend([0.0] * len(chunk))
                details.extend([None] * len(chunk))
            else:
                scores.extend(reply.scores)
                details.extend(reply.results)
        return RewardOutcome(scores, details)

    def _chunks(self, samples: Sequence[RewardSample]) -> list[list[RewardSample]]:
        """Consecutive chunks within the count and size limits (a sample over the size limit goes alone)."""
        chunks: list[list[RewardSample]] = []
        current: list[RewardSample] = []
        current_bytes = 0
        for sample in samples:
            size = len(sample.response.encode()) + len(sample.image or "") + len(json.dumps(sample.extra_info)) + 64
            full = len(current) >= self.config.max_batch or current_bytes + size > self.config.max_request_bytes
            if current and full:
                chunks.append(current)
                current, current_bytes = [], 0
            current.append(sample)
            current_bytes += size
        if current:
            chunks.append(current)
        return chunks

    def _score_chunk(self, http: httpx.Client, chunk: list[RewardSample], stage: RewardStage) -> RewardsResponse | None:
        body = RewardsRequest(stage=stage, samples=chunk).model_dump(mode="json", by_alias=False, exclude_none=True)
        attempts = self.config.attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._post(http, body, expected=len(chunk))
            except _Final as exc:
                logger.error("reward request failed for good (%s samples score 0): %s", len(chunk), exc)
                return None
            except _Retryable as exc:
                if attempt == attempts:
                    logger.error("reward request failed %s times (%s samples score 0): %s", attempts, len(chunk), exc)
                    return None
                delay = max(self.config.retry_delay_s, exc.retry_after_s or 0.0)
                logger.warning(
                    "reward request failed (attempt %s/%s): %s; retrying in %.1f s", attempt, attempts, exc, delay
                )
                self._sleep(delay)
        return None  # unreachable: the loop returns on its last attempt

    def _post(self, http: httpx.Client, body: dict[str, object], *, expected: int) -> RewardsResponse:
        url = self.config.url
        try:
            response = http.post(url, json=body)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"{url} timed out after {self.config.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"{url} could not be reached: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise _Retryable(
                f"{url} answered HTTP {response.status_code}: {_excerpt(response)}", _retry_after(response)
            )
        if response.status_code != 200:
            raise _Final(f"{url} answered HTTP {response.status_code}: {_excerpt(response)}")
        try:
            reply = RewardsResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise _Final(f"{url} answered with something that is not a reward batch: {exc.errors()[0]['msg']}") from exc
        if len(reply.scores) != expected or len(reply.results) != expected:
            raise _Final(f"{url} returned {len(reply.scores)} scores for {expected} samples")
        return reply


def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None

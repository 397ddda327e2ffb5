"""Prompt episodes (SPEC section 5; Gato section 2.3), decided from the seed and identities only.

Every random choice is a keyed hash of (seed, purpose, episode id, window index): which windows get
a prompt, which episode supplies it, end or uniform placement, and where a uniform run starts. So
the same input, settings and seed give the same prompts on any runner with any number of workers.

Prompt candidates per (task, agent) are a bottom-k sample of the kept episodes by hash (a bounded,
order-free sample), sent to the sequence builder as a side input. A prompt is ``k`` whole timesteps
of the candidate with ``k = budget // (largest step of the candidate)``, so any run of ``k`` steps
fits the budget: "end" takes the last ``k`` steps (goal conditioning), "uniform" starts at a step
drawn uniformly from ``[0, T - k]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from collections.abc import Iterable, Sequence

__all__ = ["CANDIDATES_PER_AGENT", "hash64", "draw", "wants_prompt", "PromptChoice",
           "choose_prompt", "bottom_k", "prompt_steps", "merge_bottom_k"]

CANDIDATES_PER_AGENT = 16  # bottom-k sample size per (task, agent); k >= 2 so "another" exists
_SCALE = float(1 << 64)


def hash64(seed: int, *parts: object) -> int:
    """A stable 64-bit keyed hash (BLAKE2b keyed by the seed) of ``parts``."""
    key = int(seed).to_bytes(16, "little", signed=True)
    msg = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(msg, digest_size=8, key=key).digest(), "little")


def draw(seed: int, *parts: object) -> float:
    """A deterministic uniform draw in [0, 1) from the seed and ``parts``."""
    return hash64(seed, *parts) / _SCALE


def wants_prompt(seed: int, episode_id: str, window: int, probability: float) -> bool:
    """Whether window ``window`` of ``episode_id`` is drawn to carry a prompt."""
    return probability > 0 and draw(seed, "prompt", episode_id, window) < probability


@dataclasses.dataclass(frozen=True)
class PromptChoice:
    episode_id: str  # the episode that supplies the prompt
    mode: str  # "end" or "uniform"
    u: float  # uniform draw for the run's start (used by "uniform")
    is_self: bool  # True only when the agent has no other kept episode


def choose_prompt(seed: int, episode_id: str, window: int, candidates: Sequence[str],
                  end_share: float) -> PromptChoice:
    """Pick the prompt episode (another candidate when one exists), mode and start draw."""
    others = sorted(c for c in candidates if c != episode_id)
    if others:
        chosen, is_self = others[hash64(seed, "episode", episode_id, window) % len(others)], False
    else:
        chosen, is_self = episode_id, True
    mode = "end" if draw(seed, "mode", episode_id, window) < end_share else "uniform"
    return PromptChoice(chosen, mode, draw(seed, "start", episode_id, window), is_self)


def bottom_k(seed: int, episode_ids: Iterable[str], k: int = CANDIDATES_PER_AGENT) -> list[str]:
    """The ``k`` ids with the smallest keyed hash, smallest first: a sample independent of order."""
    return [eid for _, eid in heapq.nsmallest(k, ((hash64(seed, "cand", e), e)
                                                  for e in set(episode_ids)))]


def merge_bottom_k(seed: int, samples: Iterable[Iterable[str]],
                   k: int = CANDIDATES_PER_AGENT) -> list[str]:
    """Combine partial bottom-k samples (the CombineFn's merge): bottom-k of their union."""
    return bottom_k(seed, (e for s in samples for e in s), k)


def prompt_steps(mode: str, u: float, num_steps: int, max_step_tokens: int,
                 budget: int) -> tuple[int, int] | None:
    """Timesteps [start, stop) of the prompt, or None when not even one step fits the budget."""
    if num_steps <= 0 or max_step_tokens <= 0 or max_step_tokens > budget:
        return None
    k = min(num_steps, budget // max_step_tokens)
    if mode == "end":
        start = num_steps - k
    else:
        start = min(int(u * (num_steps - k + 1)), num_steps - k)
    return start, start + k

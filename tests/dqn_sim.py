"""A small DQN Replay run written the way Dopamine and batch_rl write one, from episodes the test
chooses: the truth of a reading is those episodes, never the reader's output.

Dopamine's ``OutOfGraphReplayBuffer.add`` puts ``stack_size - 1 = 3`` zero transitions (zero frame,
action, reward and terminal) before every episode and writes add ``i`` to slot ``i % C``; batch_rl
saves the buffer whenever ``add_count % C == C - 1`` and once more at the end with ``add_count``
replaced by the write cursor; ``invalid_range`` is ``[cursor - 1, cursor + 3] % C``
(update_horizon 1). Frames here are tiny (``SHAPE``, the reader's ``observation_shape`` option)
and never zero inside an episode.
"""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np

PAD = 3
SHAPE = (2, 3)


@dataclasses.dataclass
class Ep:
    actions: np.ndarray  # int32 [T]
    rewards: np.ndarray  # float32 [T]
    frames: np.ndarray  # uint8 [T, *SHAPE], never all zero
    terminal: bool = True  # False: the run stops inside it


def episode(rng: np.random.Generator, length: int, terminal: bool = True) -> Ep:
    return Ep(rng.integers(0, 18, length).astype(np.int32),
              rng.integers(-1, 2, length).astype(np.float32),
              rng.integers(1, 256, (length, *SHAPE)).astype(np.uint8), terminal)


@dataclasses.dataclass
class Saved:
    """One checkpoint as written, and which add each of its slots holds (-1: never written)."""

    suffix: int
    add_count: int  # as stored
    slot_add: np.ndarray
    lo: int  # the adds [lo, hi) its declared slots hold, in time order from slot lo % C
    hi: int


def _save(path: Path, array: np.ndarray) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        np.save(f, array)


def write_run(run: Path, episodes: list[Ep], capacity: int, skip_logs: tuple[int, ...] = (),
              final: bool = True) -> list[Saved]:
    """Write GAME/RUN/replay_logs under ``run`` from the add stream of ``episodes``.

    ``skip_logs``: regular log triggers (counted from 0) that write nothing (a missed trigger);
    ``final``: write the end-of-training checkpoint (with its add_count replaced by the cursor).
    """
    logs = run / "replay_logs"
    logs.mkdir(parents=True)
    c = capacity
    store = {"observation": np.zeros((c, *SHAPE), np.uint8), "action": np.zeros(c, np.int32),
             "reward": np.zeros(c, np.float32), "terminal": np.zeros(c, np.uint8)}
    slot_add = np.full(c, -1, np.int64)
    saved: list[Saved] = []
    trigger = 0

    def dump(add_count: int, stored: int) -> None:
        sx = len(saved)
        for name, arr in store.items():
            _save(logs / f"$store$_{name}_ckpt.{sx}.gz", arr)
        _save(logs / f"add_count_ckpt.{sx}.gz", np.array(stored, np.int64))
        cursor = add_count % c
        _save(logs / f"invalid_range_ckpt.{sx}.gz",
              np.array([(cursor - 1 + i) % c for i in range(PAD + 2)], np.int64))
        lo = 0 if add_count < c else add_count - (c if stored >= c else stored)
        saved.append(Saved(sx, stored, slot_add.copy(), lo, add_count))

    n = 0
    for ep in episodes:
        rows = [(np.zeros(SHAPE, np.uint8), 0, 0.0, 0)] * PAD + [
            (ep.frames[t], ep.actions[t], ep.rewards[t], int(ep.terminal and t == len(ep.actions) - 1))
            for t in range(len(ep.actions))]
        for frame, action, reward, term in rows:
            slot = n % c
            store["observation"][slot] = frame
            store["action"][slot], store["reward"][slot], store["terminal"][slot] = \
                action, reward, term
            slot_add[slot] = n
            n += 1
            if n % c == c - 1:
                if trigger not in skip_logs:
                    dump(n, n)
                trigger += 1
    if final and n % c != c - 1:
        dump(n, n % c)
    return saved


def load(logs: Path, name: str, suffix: int) -> np.ndarray:
    """One array as written (``name``: action, reward, terminal, observation or add_count)."""
    prefix = "" if name in ("add_count", "invalid_range") else "$store$_"
    with gzip.open(logs / f"{prefix}{name}_ckpt.{suffix}.gz", "rb") as f:
        return np.load(f, allow_pickle=False)


def store(logs: Path, name: str, suffix: int, array: np.ndarray) -> None:
    """Overwrite one array (a damaged or hand-edited copy)."""
    prefix = "" if name in ("add_count", "invalid_range") else "$store$_"
    _save(logs / f"{prefix}{name}_ckpt.{suffix}.gz", array)

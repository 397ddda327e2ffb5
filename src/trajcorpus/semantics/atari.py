"""Atari action meanings from the Arcade Learning Environment's own action set.

ALE numbers its 18 joystick actions in ``common/Constants.h`` (NOOP, FIRE, UP, ...); each game
declares a *minimal* action set, a subset in that order, and agents trained with the minimal set
(DQN, Dopamine, hence the DQN Replay and RL Unplugged Atari data) emit indices into it. The tables
below are those minimal sets for the games this project's catalog names.
"""

from __future__ import annotations

import re

__all__ = ["ALE_ACTIONS", "MINIMAL_ACTION_SETS", "atari_game", "atari_action_meanings"]

ALE_ACTIONS: tuple[str, ...] = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT",
    "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
)
_FULL = tuple(range(18))

# game (lowercase, no separators) -> indices into ALE_ACTIONS, in the game's minimal-set order
MINIMAL_ACTION_SETS: dict[str, tuple[int, ...]] = {
    "pong": (0, 1, 3, 4, 11, 12),
    "breakout": (0, 1, 3, 4),
    "spaceinvaders": (0, 1, 3, 4, 11, 12),
    "qbert": (0, 1, 2, 3, 4, 5),
    "seaquest": _FULL,
    "asterix": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "beamrider": (0, 1, 2, 3, 4, 6, 7, 11, 12),
    "enduro": (0, 1, 3, 4, 5, 8, 9, 11, 12),
}


def atari_game(task: str) -> str | None:
    """The game key of a task name ("Pong", "ALE/Pong-v5", "PongNoFrameskip-v4" -> "pong")."""
    name = task.rsplit("/", 1)[-1]
    name = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", name)
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key if key in MINIMAL_ACTION_SETS else None


def atari_action_meanings(task: str) -> list[str] | None:
    """Action index -> meaning for the task's game (minimal action set), or None if unknown."""
    game = atari_game(task)
    if game is None:
        return None
    return [ALE_ACTIONS[i] for i in MINIMAL_ACTION_SETS[game]]

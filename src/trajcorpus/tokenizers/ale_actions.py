"""The Arcade Learning Environment's action tables: each game's minimal action set as indices into
ALE's full 18-action set, so one token means the same joystick input in every game (MGDT's shared
action space; Lee et al. 2022).

The DQN Replay Dataset (and RL Unplugged Atari) stores an action as an index into its game's
*minimal* action set (Dopamine builds the environment with ``full_action_space=False``): index 2 is
RIGHT in Pong but RIGHT is index 3 of the full set, and UP in Freeway. ``to_full_action_set`` maps
those indices into the full set.

Why a committed table and not a runtime dependency on ale-py: the job only needs 104 small tuples,
while ale-py is a compiled emulator with bundled ROMs that every Beam worker would have to install.
The table below was generated from ale-py 0.12.1 (``ALEInterface.loadROM(roms.get_rom_path(rom))``
then ``getMinimalActionSet()`` for every bundled ROM; ``python -m
trajcorpus.tokenizers.ale_actions`` prints it again), and ``tests/test_ale_actions.py``
re-derives it from ale-py (a ``dev`` dependency) so a drift is caught. ale-py 0.12.1 ships 108
ROMs; four of them (combat, joust, maze_craze, warlords) are two-player-only and refuse to load
in ALE's single-player interface, so they have no minimal action set here.
"""

from __future__ import annotations

import re
import sys

import numpy as np

from ..errors import TokenizeError

__all__ = ["ALE_VERSION", "FULL_ACTION_SET", "MINIMAL_ACTION_SETS", "rom_id", "minimal_action_set",
           "to_full_action_set", "derive_minimal_action_sets", "mapping_record"]

ALE_VERSION = "0.12.1"  # the ale-py release the table was generated from
# ALE's full action set, in its own order (ale_py.Action values 0..17)
FULL_ACTION_SET: tuple[str, ...] = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT",
    "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
)

# ROM id -> its minimal action set as full-set indices, in ALE's order (generated, see above)
MINIMAL_ACTION_SETS: dict[str, tuple[int, ...]] = {
    "adventure": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "air_raid": (0, 1, 3, 4, 11, 12),
    "alien": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "amidar": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "assault": (0, 1, 2, 3, 4, 11, 12),
    "asterix": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "asteroids": (0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15),
    "atlantis2": (0, 1, 11, 12),
    "atlantis": (0, 1, 11, 12),
    "backgammon": (1, 3, 4),
    "bank_heist": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "basic_math": (0, 1, 2, 3, 4, 5),
    "battle_zone": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "beam_rider": (0, 1, 2, 3, 4, 6, 7, 11, 12),
    "berzerk": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "blackjack": (0, 1, 2, 5),
    "bowling": (0, 1, 2, 5, 10, 13),
    "boxing": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "breakout": (0, 1, 3, 4),
    "carnival": (0, 1, 3, 4, 11, 12),
    "casino": (0, 1, 2, 5),
    "centipede": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "chopper_command": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "crazy_climber": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "crossbow": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "darkchambers": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "defender": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "demon_attack": (0, 1, 3, 4, 11, 12),
    "donkey_kong": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "double_dunk": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "earthworld": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "elevator_action": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "enduro": (0, 1, 3, 4, 5, 8, 9, 11, 12),
    "entombed": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "et": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "fishing_derby": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "flag_capture": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "freeway": (0, 2, 5),
    "frogger": (0, 2, 3, 4, 5),
    "frostbite": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "galaxian": (0, 1, 3, 4, 11, 12),
    "gopher": (0, 1, 2, 3, 4, 10, 11, 12),
    "gravitar": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "hangman": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "haunted_house": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "hero": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "human_cannonball": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "ice_hockey": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "jamesbond": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "journey_escape": (0, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17),
    "kaboom": (0, 1, 3, 4),
    "kangaroo": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "keystone_kapers": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13),
    "king_kong": (0, 1, 2, 3, 4, 5),
    "klax": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "koolaid": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "krull": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "kung_fu_master": (0, 2, 3, 4, 5, 8, 9, 11, 12, 13, 14, 15, 16, 17),
    "laser_gates": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "lost_luggage": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "mario_bros": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "miniature_golf": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "montezuma_revenge": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "mr_do": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "ms_pacman": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "name_this_game": (0, 1, 3, 4, 11, 12),
    "othello": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    "pacman": (0, 2, 3, 4, 5),
    "phoenix": (0, 1, 3, 4, 5, 11, 12, 13),
    "pitfall2": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "pitfall": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "pong": (0, 1, 3, 4, 11, 12),
    "pooyan": (0, 1, 2, 5, 10, 13),
    "private_eye": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "qbert": (0, 1, 2, 3, 4, 5),
    "riverraid": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "road_runner": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "robotank": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "seaquest": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "sir_lancelot": (0, 1, 3, 4, 11, 12),
    "skiing": (0, 3, 4),
    "solaris": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "space_invaders": (0, 1, 3, 4, 11, 12),
    "space_war": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "star_gunner": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "superman": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "surround": (0, 2, 3, 4, 5),
    "tennis": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "tetris": (0, 1, 3, 4, 5),
    "tic_tac_toe_3d": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    "time_pilot": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "trondead": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "turmoil": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12),
    "tutankham": (0, 2, 3, 4, 5, 10, 11, 12),
    "up_n_down": (0, 1, 2, 5, 10, 13),
    "venture": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "video_checkers": (1, 6, 7, 8, 9),
    "video_chess": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    "video_cube": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "video_pinball": (0, 1, 2, 3, 4, 5, 10, 11, 12),
    "wizard_of_wor": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "word_zapper": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "yars_revenge": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
    "zaxxon": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17),
}


def rom_id(task: str) -> str:
    """ALE's ROM id for a task name: the part after the last '/', CamelCase to snake_case
    (``atari/MsPacman`` -> ``ms_pacman``, ``Pong`` -> ``pong``); ROM ids pass unchanged."""
    name = task.rsplit("/", 1)[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def minimal_action_set(task: str) -> tuple[int, ...]:
    """The task's minimal action set (full-set indices); a TokenizeError for an unknown game."""
    rom = rom_id(task)
    try:
        return MINIMAL_ACTION_SETS[rom]
    except KeyError:
        raise TokenizeError(f"task {task!r}", f"no ALE game {rom!r} (ale-py {ALE_VERSION}) to map "
                            "its actions to the full action set; set "
                            "tokenize.full_action_set: false") from None


def to_full_action_set(actions: np.ndarray, task: str) -> np.ndarray:
    """Minimal-action-set indices of ``task`` -> full 18-action-set indices (int32, same shape).

    An index outside the game's minimal set is bad input (a TokenizeError naming step and value).
    """
    table = np.asarray(minimal_action_set(task), dtype=np.int32)
    a = np.asarray(actions)
    if a.dtype.kind not in "iu":
        if a.dtype.kind != "f" or not np.all(a == np.floor(a)):
            raise TokenizeError(f"task {task!r} field 'actions'",
                                f"ALE actions must be integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
    bad = (a < 0) | (a >= table.size)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise TokenizeError(f"task {task!r} field 'actions'",
                            f"action {int(a.reshape(-1)[i])} at step {i} is outside the game's "
                            f"{table.size}-action minimal set")
    return table[a]


def mapping_record(tasks: list[str]) -> dict:
    """What the manifest records: the full set's names and, per task, its minimal set."""
    return {"ale_py": ALE_VERSION, "full_action_set": list(FULL_ACTION_SET),
            "minimal_to_full": {t: list(minimal_action_set(t)) for t in sorted(tasks)}}


def derive_minimal_action_sets(roms: list[str] | None = None) -> dict[str, tuple[int, ...]]:
    """The table re-derived from an installed ale-py (ROMs that load in single-player mode)."""
    import ale_py
    from ale_py import roms as ale_roms

    out: dict[str, tuple[int, ...]] = {}
    for rom in roms if roms is not None else sorted(MINIMAL_ACTION_SETS):
        ale = ale_py.ALEInterface()
        ale.setLoggerMode(ale_py.LoggerMode.Error)
        ale.loadROM(ale_roms.get_rom_path(rom))
        out[rom] = tuple(int(a.value) for a in ale.getMinimalActionSet())
    return out


if __name__ == "__main__":  # print the table again from the installed ale-py
    for rom, acts in derive_minimal_action_sets().items():
        sys.stdout.write(f"    {rom!r}: {acts!r},\n")

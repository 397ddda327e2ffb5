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

ALL_18 = tuple(range(18))  # a game whose minimal set is the whole full set
# ROM id -> its minimal action set as full-set indices, in ALE's order (generated, see above)
MINIMAL_ACTION_SETS: dict[str, tuple[int, ...]] = {
    "adventure": ALL_18,
    "air_raid": (0, 1, 3, 4, 11, 12),
    "alien": ALL_18,
    "amidar": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "assault": (0, 1, 2, 3, 4, 11, 12),
    "asterix": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "asteroids": (0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15),
    "atlantis2": (0, 1, 11, 12),
    "atlantis": (0, 1, 11, 12),
    "backgammon": (1, 3, 4),
    "bank_heist": ALL_18,
    "basic_math": (0, 1, 2, 3, 4, 5),
    "battle_zone": ALL_18,
    "beam_rider": (0, 1, 2, 3, 4, 6, 7, 11, 12),
    "berzerk": ALL_18,
    "blackjack": (0, 1, 2, 5),
    "bowling": (0, 1, 2, 5, 10, 13),
    "boxing": ALL_18,
    "breakout": (0, 1, 3, 4),
    "carnival": (0, 1, 3, 4, 11, 12),
    "casino": (0, 1, 2, 5),
    "centipede": ALL_18,
    "chopper_command": ALL_18,
    "crazy_climber": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "crossbow": ALL_18,
    "darkchambers": ALL_18,
    "defender": ALL_18,
    "demon_attack": (0, 1, 3, 4, 11, 12),
    "donkey_kong": ALL_18,
    "double_dunk": ALL_18,
    "earthworld": ALL_18,
    "elevator_action": ALL_18,
    "enduro": (0, 1, 3, 4, 5, 8, 9, 11, 12),
    "entombed": ALL_18,
    "et": ALL_18,
    "fishing_derby": ALL_18,
    "flag_capture": ALL_18,
    "freeway": (0, 2, 5),
    "frogger": (0, 2, 3, 4, 5),
    "frostbite": ALL_18,
    "galaxian": (0, 1, 3, 4, 11, 12),
    "gopher": (0, 1, 2, 3, 4, 10, 11, 12),
    "gravitar": ALL_18,
    "hangman": ALL_18,
    "haunted_house": ALL_18,
    "hero": ALL_18,
    "human_cannonball": ALL_18,
    "ice_hockey": ALL_18,
    "jamesbond": ALL_18,
    "journey_escape": (0, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17),
    "kaboom": (0, 1, 3, 4),
    "kangaroo": ALL_18,
    "keystone_kapers": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13),
    "king_kong": (0, 1, 2, 3, 4, 5),
    "klax": ALL_18,
    "koolaid": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "krull": ALL_18,
    "kung_fu_master": (0, 2, 3, 4, 5, 8, 9, 11, 12, 13, 14, 15, 16, 17),
    "laser_gates": ALL_18,
    "lost_luggage": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "mario_bros": ALL_18,
    "miniature_golf": ALL_18,
    "montezuma_revenge": ALL_18,
    "mr_do": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "ms_pacman": (0, 2, 3, 4, 5, 6, 7, 8, 9),
    "name_this_game": (0, 1, 3, 4, 11, 12),
    "othello": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    "pacman": (0, 2, 3, 4, 5),
    "phoenix": (0, 1, 3, 4, 5, 11, 12, 13),
    "pitfall2": ALL_18,
    "pitfall": ALL_18,
    "pong": (0, 1, 3, 4, 11, 12),
    "pooyan": (0, 1, 2, 5, 10, 13),
    "private_eye": ALL_18,
    "qbert": (0, 1, 2, 3, 4, 5),
    "riverraid": ALL_18,
    "road_runner": ALL_18,
    "robotank": ALL_18,
    "seaquest": ALL_18,
    "sir_lancelot": (0, 1, 3, 4, 11, 12),
    "skiing": (0, 3, 4),
    "solaris": ALL_18,
    "space_invaders": (0, 1, 3, 4, 11, 12),
    "space_war": ALL_18,
    "star_gunner": ALL_18,
    "superman": ALL_18,
    "surround": (0, 2, 3, 4, 5),
    "tennis": ALL_18,
    "tetris": (0, 1, 3, 4, 5),
    "tic_tac_toe_3d": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    "time_pilot": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "trondead": ALL_18,
    "turmoil": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12),
    "tutankham": (0, 2, 3, 4, 5, 10, 11, 12),
    "up_n_down": (0, 1, 2, 5, 10, 13),
    "venture": ALL_18,
    "video_checkers": (1, 6, 7, 8, 9),
    "video_chess": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    "video_cube": ALL_18,
    "video_pinball": (0, 1, 2, 3, 4, 5, 10, 11, 12),
    "wizard_of_wor": (0, 1, 2, 3, 4, 5, 10, 11, 12, 13),
    "word_zapper": ALL_18,
    "yars_revenge": ALL_18,
    "zaxxon": ALL_18,
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
        sys.stdout.write(f"    {rom!r}: {'ALL_18' if acts == ALL_18 else acts!r},\n")

"""The committed minimal-to-full action table against ALE's own tables (ale-py, a dev dependency)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trajcorpus.tokenizers.ale_actions import (
    ALE_VERSION,
    FULL_ACTION_SET,
    MINIMAL_ACTION_SETS,
    derive_minimal_action_sets,
    rom_id,
    to_full_action_set,
)

DQN = Path(__file__).resolve().parent / "fixtures" / "atari_dqn_replay"


def test_table_matches_ale_py():
    import ale_py

    assert ale_py.__version__ == ALE_VERSION
    assert list(FULL_ACTION_SET) == list(ale_py.Action.__members__)
    assert [a.value for a in ale_py.Action.__members__.values()] == list(range(18))
    assert derive_minimal_action_sets() == MINIMAL_ACTION_SETS
    # every ROM ale-py bundles is in the table, except the four two-player-only ones
    from ale_py import roms

    assert set(roms.get_all_rom_ids()) - set(MINIMAL_ACTION_SETS) == {
        "combat", "joust", "maze_craze", "warlords"}


def test_every_bundled_game_maps_to_its_own_action_meanings():
    games = sorted(p.name for p in DQN.iterdir() if p.is_dir())
    assert games == ["Breakout", "Pong"]
    for game in games:
        gt = json.loads((DQN / game / "1" / "ground_truth.json").read_text())
        n = gt["action_set_size"]
        derived = derive_minimal_action_sets([rom_id(game)])[rom_id(game)]
        full = to_full_action_set(np.arange(n), game)
        assert tuple(full) == derived
        # the env that wrote the fixture named its actions; the full set's names must agree
        assert [FULL_ACTION_SET[i] for i in full] == gt["action_meanings"]


def test_rom_ids():
    assert rom_id("Pong") == "pong" and rom_id("atari/MsPacman") == "ms_pacman"
    assert rom_id("UpNDown") == "up_n_down" and rom_id("space_invaders") == "space_invaders"

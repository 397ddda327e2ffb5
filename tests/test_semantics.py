"""Semantics tables, the catalog's reference/semantics blocks, and the loaders' helpers (issue 18).

Ground truth: the fixtures' own generator records (observation and action widths of the MuJoCo
rollouts), ALE's action numbering, and hand-computed normalisations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.errors import CatalogError, ShardError, TokenizeError
from trajcorpus.schemas.catalog import parse_catalog
from trajcorpus.semantics import describe_task, normalized_score
from trajcorpus.semantics.atari import ALE_ACTIONS, atari_action_meanings, atari_game
from trajcorpus.semantics.mujoco import mujoco_env, mujoco_semantics
from trajcorpus.shards.stats import TrainerInfo, normalize, unnormalize
from trajcorpus.tokenizers import encode_continuous

MUJOCO = Path(__file__).parent / "fixtures/mujoco/minari/trajcorpus-fixtures"


def test_atari_meanings_follow_the_ale_numbering():
    assert ALE_ACTIONS[:6] == ("NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN")
    assert len(ALE_ACTIONS) == 18 and ALE_ACTIONS[17] == "DOWNLEFTFIRE"
    for name in ("Pong", "ALE/Pong-v5", "PongNoFrameskip-v4", "pong"):
        assert atari_game(name) == "pong"
    assert atari_action_meanings("Pong") == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE",
                                             "LEFTFIRE"]
    assert atari_action_meanings("SpaceInvaders") == atari_action_meanings("Pong")
    assert atari_action_meanings("Qbert") == ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN"]
    assert atari_action_meanings("Seaquest") == list(ALE_ACTIONS)
    assert atari_action_meanings("NotAGame") is None


@pytest.mark.parametrize("env", ["hopper", "halfcheetah"])
def test_mujoco_names_cover_the_fixture_dimensions(env):
    gt = json.loads((MUJOCO / env / "mixed-v0/ground_truth.json").read_text())
    sem = mujoco_semantics(gt["env_id"])
    assert len(sem["observation"]["names"]) == gt["obs_dim"] == len(sem["observation"]["units"])
    # qpos without the root's x, then qvel: nq - 1 positions and nv velocities
    assert gt["obs_dim"] == gt["nq"] - 1 + gt["nv"]
    assert sum(n.endswith("position") for n in sem["observation"]["names"]) == gt["nq"] - 1
    assert len(sem["actions"]["names"]) == gt["action_dim"]
    assert mujoco_env("hopper-medium-replay-v2") == "hopper" == mujoco_env("Hopper-v5")
    assert mujoco_env("walker2d-medium-v2") == "walker2d" and mujoco_env("Ant-v4") is None


def test_describe_task_prefers_the_catalog_then_the_environment():
    schema = {"observation": {"kind": "continuous", "shape": [11]},
              "actions": {"kind": "continuous", "shape": [3]},
              "extra": {"kind": "continuous", "shape": [2, 2]},
              "frame": {"kind": "image", "shape": None}}
    entry = {"source": "my lab notes", "fields": {"extra": {"names": ["a", "b", "c", "d"],
                                                            "representation": "delta"}}}
    d = describe_task("minari", "Hopper-v5", schema, entry, {"frame": "wrist camera"})
    assert d["observation"]["names"][0] == "rootz position"
    assert d["actions"]["representation"] == "absolute"
    assert d["extra"]["names"] == ["a", "b", "c", "d"] and d["extra"]["source"] == "my lab notes"
    assert d["extra"]["representation"] == "delta"
    assert d["frame"]["description"] == "wrist camera" and d["frame"]["names"] is None
    # a width the environment does not have is not given the environment's names
    d = describe_task("minari", "Hopper-v5", {"observation": {"kind": "continuous",
                                                              "shape": [12]}})
    assert d["observation"]["names"][11] == "observation[11]"
    assert d["observation"]["source"].startswith("index")


def test_normalized_score():
    ref = {"random": -20.7, "expert": 14.6}
    assert normalized_score(ref, 14.6) == pytest.approx(100.0)
    assert normalized_score(ref, -20.7) == 0.0
    assert normalized_score(ref, -3.05) == pytest.approx(50.0)
    assert normalized_score({"random": 1.0, "expert": None}, 3.0) is None
    assert normalized_score({"random": 1.0, "expert": 1.0}, 3.0) is None
    assert normalized_score(None, 3.0) is None


def _catalog(extra: str) -> str:
    return ("version: 1\ndatasets:\n  - id: x\n    kind: d4rl\n    uri: a.hdf5\n"
            "    license: CC-BY-4.0\n" + extra)


def test_catalog_reference_block_needs_a_citation_and_known_keys():
    ok = parse_catalog(_catalog("    reference:\n      source: Fu et al. 2020\n      scores:\n"
                                "        hop: {random: -20.3, expert: 3234.3}\n"))
    assert ok.get("x").reference.scores["hop"].expert == 3234.3
    with pytest.raises(CatalogError, match="source"):
        parse_catalog(_catalog("    reference:\n      scores:\n        hop: {random: 1}\n"))
    with pytest.raises(CatalogError, match=":10: .*reference.scores.hop.randm.*unknown key"):
        parse_catalog(_catalog("    reference:\n      source: s\n      scores:\n"
                               "        hop: {randm: 1}\n"))
    with pytest.raises(CatalogError, match="unknown key"):
        parse_catalog(_catalog("    semantics:\n      fields:\n        actions: {nams: [a]}\n"))


STATS = {"count": 5, "mean": [1.0, -2.0], "std": [2.0, 0.0], "min": [-3.0, -2.0], "max": [5.0, -2.0],
         "q01": [-1.0, -2.0], "q99": [3.0, -2.0]}


def test_normalize_and_unnormalize():
    x = np.array([[3.0, -2.0], [1.0, -2.0]])
    np.testing.assert_allclose(normalize(x, STATS), [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(normalize(x, STATS, "min_max"), [[0.5, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(normalize([[-1.0, -2.0], [3.0, -2.0]], STATS, "quantile"),
                               [[-1.0, 0.0], [1.0, 0.0]])
    for method in ("mean_std", "min_max", "quantile"):
        np.testing.assert_allclose(unnormalize(normalize(x, STATS, method), STATS, method), x)
    with pytest.raises(ShardError, match="method"):
        normalize(x, STATS, "zscore")
    with pytest.raises(ShardError, match="3 dimensions"):
        normalize(np.zeros((2, 3)), STATS)


def _info() -> TrainerInfo:
    return TrainerInfo("cfg", {
        "statistics": {"config": {}, "tasks": {"Hopper-v5": {"actions": STATS}}},
        "reference": {}, "settings": {"tokenize": {"mu_law": True, "mu_law_exempt": []}},
        "semantics": {
            "Hopper-v5": {"actions": {"kind": "continuous", "shape": [2], "names": ["u", "v"]}},
            "Pong": {"actions": {"kind": "discrete", "shape": [],
                                 "names": atari_action_meanings("Pong")}}}})


def test_decode_actions_uses_the_tokenize_settings_and_the_names():
    info = _info()
    raw = np.array([[0.5, -3.0], [12.0, 0.0]])
    tokens = encode_continuous(raw, mu_law=True).ravel()  # the job's setting: mu-law on
    decoded = info.decode_actions(tokens, "Hopper-v5")
    assert decoded.names == ["u", "v"] and decoded.values.shape == (2, 2)
    np.testing.assert_allclose(decoded.values, raw, rtol=0.03, atol=0.01)
    assert decoded.as_dicts()[1]["u"] == pytest.approx(12.0, rel=0.03)
    d = info.decode_actions([1, 0, 4], "Pong")
    assert d.names == ["FIRE", "NOOP", "RIGHTFIRE"] and d.values.tolist() == [1, 0, 4]
    with pytest.raises(ShardError, match="outside the game's 6 actions"):
        info.decode_actions([7], "Pong")
    with pytest.raises(ShardError, match="whole steps of 2"):
        info.decode_actions(tokens[:3], "Hopper-v5")
    with pytest.raises(TokenizeError):
        info.decode_actions([2000], "Pong")
    with pytest.raises(ShardError, match="no action semantics"):
        info.decode_actions([0], "Breakout")
    with pytest.raises(ShardError, match="no statistics block"):
        TrainerInfo("old", {})
    assert info.field("actions", "Hopper-v5") is STATS
    with pytest.raises(ShardError, match="no statistics for field 'observation'"):
        info.field("observation", "Hopper-v5")

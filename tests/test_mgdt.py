"""The MGDT token scheme: its encoders against the reference's formulas, and its tokens on the DQN
fixture against a per-step computation from the raw replay arrays (not our reader's output)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.errors import TokenizeError
from trajcorpus.schemas.catalog import TokenizeSettings, load_catalog
from trajcorpus.sources import open_source
from trajcorpus.tokenizers import mgdt
from trajcorpus.tokenizers.ale_actions import FULL_ACTION_SET
from trajcorpus.tokenizers.schemes import SCHEMES, scheme_of

ROOT = Path(__file__).resolve().parents[1]
DQN = ROOT / "tests" / "fixtures" / "atari_dqn_replay"


def test_encode_return_follows_the_reference():
    # google-research/multi_game_dt, Multi_game_decision_transformers_public_colab.ipynb,
    # "Utilities" cell, encode_return(ret, ret_range): ret.astype(int32) (truncation toward 0),
    # clip(ret, -20, 100), ret - (-20); ATARI_RETURN_RANGE = [-20, 100]. Worked by hand:
    #   -25 -> clip -20 -> 0;  -20 -> 0;  -19.5 -> -19 -> 1;  -0.7 -> 0 -> 20;  0 -> 20;
    #   3 -> 23;  3.9 -> 3 -> 23;  98 -> 118;  99 -> 119.
    got = mgdt.encode_return(np.array([-25, -20, -19.5, -0.7, 0, 3, 3.9, 98, 99]))
    np.testing.assert_array_equal(got, [0, 0, 1, 20, 20, 23, 23, 118, 119])
    assert got.dtype == np.int32
    # 100 and above: the reference gives 100 - (-20) = 120, one past its 120-row embedding (whose
    # JAX lookup clamps it to row 119); we store 119 so every id is in [0, 120) (documented)
    np.testing.assert_array_equal(mgdt.encode_return(np.array([100, 250])), [119, 119])
    assert mgdt.NUM_RETURNS == 120 and mgdt.RETURN_RANGE == (-20, 100)


def test_decode_return_follows_the_reference():
    # same cell, decode_return(ret, ret_range): ret.astype(int32) + (-20)
    np.testing.assert_array_equal(mgdt.decode_return(np.array([0, 20, 23, 119])),
                                  [-20, 0, 3, 99])
    r = np.arange(-20, 100)
    np.testing.assert_array_equal(mgdt.decode_return(mgdt.encode_return(r)), r)


def test_encode_reward_follows_the_reference():
    # same cell, encode_reward(rew): (rew > 0) * 1 + (rew < 0) * 3 ("0: no reward, 1: positive
    # reward, 2: terminal reward, 3: negative reward"); ATARI_NUM_REWARDS = 4
    got = mgdt.encode_reward(np.array([-1.0, -0.5, 0.0, 0.3, 1.0], np.float32))
    np.testing.assert_array_equal(got, [3, 3, 0, 1, 1])
    assert mgdt.NUM_REWARDS == 4


def test_layout_constants():
    assert (mgdt.PATCH, mgdt.GRID, mgdt.NUM_PATCHES, mgdt.TOKENS_PER_STEP) == (14, 6, 36, 39)
    assert (mgdt.RETURN_TO_GO, mgdt.REWARD) == (7, 8)
    assert mgdt.MODALITY_NAMES[7:] == ("return_to_go", "reward")
    assert set(SCHEMES) == set(TokenizeSettings.model_fields["scheme"].annotation.__args__)


# --- the fixture, from its raw arrays -------------------------------------------------------------

def _raw(logs: Path, name: str, suffix: int) -> np.ndarray:
    with gzip.open(logs / f"$store$_{name}_ckpt.{suffix}.gz") as f:
        return np.load(f)


def _raw_episode(game: str, gt_ep: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, actions, rewards) of a ground-truth episode, sliced from the .gz payloads."""
    logs = DQN / game / "1" / "replay_logs"
    frames, actions, rewards = [], [], []
    for seg in gt_ep["segments"]:
        c, a, b = seg["checkpoint"], seg["first_index"], seg["last_index"] + 1
        frames.append(_raw(logs, "observation", c)[a:b])
        actions.append(_raw(logs, "action", c)[a:b])
        rewards.append(_raw(logs, "reward", c)[a:b])
    return np.concatenate(frames), np.concatenate(actions), np.concatenate(rewards)


@pytest.mark.parametrize("game", ["Pong", "Breakout"])
def test_fixture_tokens_against_the_raw_arrays(game):
    gt = json.loads((DQN / game / "1" / "ground_truth.json").read_text())
    chosen = [e for e in gt["episodes"] if e["complete"] and not e["spans_checkpoints"]][:3]
    assert chosen
    eps = {e.episode_id: e for e in open_source("dqn-replay", str(DQN / game / "1")).episodes()}
    tk = scheme_of(TokenizeSettings(scheme="mgdt")).tokenizer(TokenizeSettings(scheme="mgdt"))
    for g in chosen:
        ep = eps[f"{game}/1/ckpt{g['checkpoint']}/{g['start_index']}"]
        tok = mgdt.validate(tk.tokenize(ep))
        frames, actions, rewards = _raw_episode(game, g)
        assert len(rewards) == g["length"] == tok.num_steps
        assert float(rewards.astype(np.float64).sum()) == g["return_clipped"]
        meanings = gt["action_meanings"]
        for t in range(g["length"]):
            step = tok.tokens[t * 39:(t + 1) * 39]
            rtg = sum(float(r) for r in rewards[t:])  # a plain loop, not the module's cumsum
            assert step[36] == min(max(int(rtg), -20), 99) + 20, (t, rtg)
            assert step[38] == (1 if rewards[t] > 0 else 3 if rewards[t] < 0 else 0)
            # the action token names the same button the game's own action meaning does
            assert FULL_ACTION_SET[step[37]] == meanings[int(actions[t])]
            assert (step[:36] == -1).all()
        # patches: row-major 14x14 tiles of each 84x84 frame
        t = g["length"] - 1
        for k in (0, 7, 35):
            r, c = divmod(k, 6)
            np.testing.assert_array_equal(tok.patches[t * 36 + k, :, :, 0],
                                          frames[t, r * 14:(r + 1) * 14, c * 14:(c + 1) * 14])
            assert tuple(tok.patch_position[t * 36 + k]) == (r, c)
        assert tok.loss_mask.reshape(-1, 39)[:, 36:].all() and not tok.loss_mask.reshape(
            -1, 39)[:, :36].any()


def test_bad_inputs_are_one_line_errors():
    ep = next(open_source("dqn-replay", str(DQN / "Pong" / "1")).episodes())
    tk = mgdt.MgdtTokenizer()
    import dataclasses

    bad = dataclasses.replace(ep, actions=np.full_like(ep.actions, 6))  # Pong has 6 actions
    with pytest.raises(TokenizeError, match="outside the game's 6-action minimal set"):
        tk.tokenize(bad)
    with pytest.raises(TokenizeError, match="no ALE game 'not_a_game'"):
        tk.tokenize(dataclasses.replace(ep, task="NotAGame"))
    with pytest.raises(TokenizeError, match=r"outside \[0, 18\)"):
        mgdt.MgdtTokenizer(full_action_set=False).tokenize(
            dataclasses.replace(ep, actions=np.full_like(ep.actions, 18)))


def test_scheme_settings_and_catalog_entry():
    cat = load_catalog(str(ROOT / "catalog.yaml"))
    e = cat.get("demo-dqn-replay-mgdt")
    assert e.tokenize.scheme == "mgdt" and e.filter.rule == "top_fraction"
    seq = scheme_of(e.tokenize).sequence_settings(e.sequence)
    assert (seq.length, seq.timesteps, seq.prompt_probability) == (4 * 39, 4, 0.0)
    gato = cat.get("demo-dqn-replay")
    assert scheme_of(gato.tokenize).sequence_settings(gato.sequence) is gato.sequence
    # new settings are dumped only when used, so a Gato entry's manifest record is unchanged
    dumped = gato.model_dump(mode="json")
    assert "scheme" not in dumped["tokenize"] and "rule" not in dumped["filter"]
    assert "timesteps" not in dumped["sequence"]
    mg = e.model_dump(mode="json")
    assert mg["tokenize"]["scheme"] == "mgdt" and mg["filter"]["top_fraction"] == 0.1


def test_catalog_rejects_scheme_mismatches():
    from trajcorpus.errors import CatalogError
    from trajcorpus.schemas.catalog import parse_catalog

    base = ("datasets:\n  - id: x\n    kind: dqn-replay\n    uri: u\n    license: l\n")
    with pytest.raises(CatalogError, match="84x84"):
        parse_catalog(base + "    tokenize: {scheme: mgdt, image_size: [80, 80]}\n")
    with pytest.raises(CatalogError, match="timesteps"):
        parse_catalog(base + "    sequence: {timesteps: 4}\n")
    with pytest.raises(CatalogError, match="unknown key"):
        parse_catalog(base + "    tokenize: {scheme: mgdt, patch: 14}\n")


def test_gato_full_action_set_option():
    ep = next(open_source("dqn-replay", str(DQN / "Pong" / "1")).episodes())
    s = TokenizeSettings(image_size=(80, 80), full_action_set=True)
    from trajcorpus.tokenizers import action_tokens

    full = action_tokens(scheme_of(s).tokenizer(s).tokenize(ep))[:, 0]
    plain = action_tokens(scheme_of(TokenizeSettings(image_size=(80, 80))).tokenizer(
        TokenizeSettings(image_size=(80, 80))).tokenize(ep))[:, 0]
    np.testing.assert_array_equal(plain, ep.actions)
    np.testing.assert_array_equal(full, np.array([0, 1, 3, 4, 11, 12])[ep.actions])

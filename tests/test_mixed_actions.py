"""Mixed actions (``action_kind="mixed"``): leading discrete columns + continuous ones (issue 16).

The Episode validates the split, the tokenizer emits the discrete ids then the continuous tokens
(mu-law per the ``actions`` setting), ``decode_mixed_actions`` inverts it, and the Arrow form
round-trips the split.
"""

from __future__ import annotations

import numpy as np
import pytest

from trajcorpus.errors import EpisodeError, TokenizeError
from trajcorpus.schemas.catalog import TokenizeSettings
from trajcorpus.schemas.episode import Episode, episode_from_arrow, episode_to_arrow
from trajcorpus.tokenizers import (
    CONTINUOUS_OFFSET,
    EpisodeTokenizer,
    Modality,
    action_tokens,
    decode_actions,
    decode_mixed_actions,
    encode_continuous,
)

rng = np.random.default_rng(16)


def mixed_episode(t: int = 6, d: int = 3, c: int = 2, **kw) -> Episode:
    actions = np.concatenate([rng.integers(0, 2, (t, d)).astype(np.float32),
                              rng.uniform(-90, 90, (t, c)).astype(np.float32)], axis=1)
    fields = dict(dataset="demo", task="task", agent="agent", episode_id="ep", order=(0,),
                  observations={"image": rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8)},
                  observation_kinds={"image": "image"}, actions=actions, action_kind="mixed",
                  rewards=np.zeros(t, np.float32), is_terminal=False, is_truncated=True,
                  return_=0.0, source={"uri": "x"}, discrete_action_dims=d)
    fields.update(kw)
    return Episode(**fields)


def test_a_mixed_episode_validates() -> None:
    assert mixed_episode().validate().discrete_action_dims == 3


@pytest.mark.parametrize("change, field, words", [
    ({"discrete_action_dims": 0}, "discrete_action_dims", "must be in [1, 5)"),
    ({"discrete_action_dims": 5}, "discrete_action_dims", "must be in [1, 5)"),
    ({"actions": np.ones((6, 5), np.int64)}, "actions", "must be a float [T, A]"),
    ({"actions": np.ones(6, np.float32)}, "actions", "must be a float [T, A]"),
])
def test_mixed_split_errors_name_the_field(change, field, words) -> None:
    with pytest.raises(EpisodeError) as e:
        mixed_episode(**change).validate()
    assert field in str(e.value) and words in str(e.value)


def test_mixed_values_are_checked_per_part() -> None:
    ep = mixed_episode()
    ep.actions[2, 1] = 0.5
    with pytest.raises(EpisodeError, match=r"discrete value 0.5 at index \(2, 1\) is not an "):
        ep.validate()
    ep = mixed_episode()
    ep.actions[1, 0] = 1024
    with pytest.raises(EpisodeError, match=r"discrete value 1024 outside \[0, 1024\)"):
        ep.validate()
    ep = mixed_episode()
    ep.actions[4, 4] = np.nan
    with pytest.raises(EpisodeError, match=r"non-finite value nan at index \(4, 1\)"):
        ep.validate()


def test_other_kinds_refuse_a_discrete_split() -> None:
    ep = mixed_episode(action_kind="continuous", discrete_action_dims=2)
    with pytest.raises(EpisodeError, match="must be 0 unless action_kind is 'mixed'"):
        ep.validate()


@pytest.mark.parametrize("mu_law", [True, False])
def test_tokens_are_discrete_ids_then_continuous_tokens(mu_law) -> None:
    ep = mixed_episode(t=5, d=3, c=2)
    if not mu_law:
        ep.actions[:, 3:] /= 90.0  # already in [-1, 1]: the exempt field is only clipped
    settings = TokenizeSettings(mu_law=True, mu_law_exempt=() if mu_law else ("actions",))
    tk = EpisodeTokenizer(settings)
    tok = tk.tokenize(ep)
    a = action_tokens(tok)
    assert a.shape == (5, 5)
    assert (a[:, :3] == ep.actions[:, :3].astype(np.int32)).all()
    assert (a[:, 3:] == encode_continuous(ep.actions[:, 3:], mu_law)).all()
    assert (tok.modality[np.isin(tok.tokens, a)] >= 0).all()
    assert (tok.modality == Modality.ACTION).sum() == 25
    discrete, continuous = tk.decode_mixed_actions(tok, 3)
    assert discrete.dtype == np.int64 and (discrete == ep.actions[:, :3]).all()
    assert continuous.dtype == np.float32
    # the bin centre is within half a bin of the value (mu-law: relative, else absolute)
    tol = 0.011 * np.abs(ep.actions[:, 3:]) + 1e-3 if mu_law else 1 / 1024 + 1e-6
    assert (np.abs(continuous - ep.actions[:, 3:]) <= tol).all()


def test_decode_mixed_actions_checks_the_split() -> None:
    tok = EpisodeTokenizer().tokenize(mixed_episode(d=3, c=2))
    with pytest.raises(TokenizeError, match="is not a continuous token"):
        decode_mixed_actions(tok, 2)
    with pytest.raises(TokenizeError, match="is not a discrete token"):
        decode_mixed_actions(tok, 4)
    with pytest.raises(TokenizeError, match=r"discrete_dims must be in \[1, 5\)"):
        decode_mixed_actions(tok, 5)
    with pytest.raises(TokenizeError, match="decode_mixed_actions"):
        decode_actions(tok)
    assert (action_tokens(tok)[:, 3:] >= CONTINUOUS_OFFSET).all()


def test_the_tokenizer_refuses_a_bad_split() -> None:
    ep = mixed_episode(discrete_action_dims=0)
    with pytest.raises(TokenizeError, match="discrete_action_dims"):
        EpisodeTokenizer().tokenize(ep)


def test_arrow_round_trip_keeps_the_split() -> None:
    ep = mixed_episode()
    (back,) = episode_from_arrow(episode_to_arrow([ep]))
    assert back.action_kind == "mixed" and back.discrete_action_dims == 3
    assert back.actions.dtype == np.float32 and (back.actions == ep.actions).all()
    assert EpisodeTokenizer().tokenize(back).tokens.tolist() == \
        EpisodeTokenizer().tokenize(ep).tokens.tolist()

"""Episode validation (SPEC section 2): one test per rule, each naming the field and the reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from trajcorpus.errors import EpisodeError
from trajcorpus.schemas.episode import (
    Episode,
    episode_from_arrow,
    episode_to_arrow,
    ordered_observation_names,
)


def make(T: int = 4, **overrides) -> Episode:
    rng = np.random.default_rng(0)
    ep = Episode(
        dataset="d", task="Pong", agent="1", episode_id="Pong/1/ckpt0/3", order=(0, 3),
        observations={
            "frame": rng.integers(0, 255, (T, 8, 8), dtype=np.uint8),
            "proprio/joints": rng.normal(size=(T, 3)).astype(np.float32),
            "instruction": np.array(["stack the green block"], dtype=object),
        },
        observation_kinds={"frame": "image", "proprio/joints": "continuous", "instruction": "text"},
        actions=rng.integers(0, 6, T).astype(np.int32), action_kind="discrete",
        rewards=np.zeros(T, np.float32), is_terminal=True, is_truncated=False, return_=0.0,
        source={"uri": "file:///x"},
    )
    return dataclasses.replace(ep, **overrides)


def expect(ep: Episode, field: str, reason: str) -> None:
    with pytest.raises(EpisodeError) as info:
        ep.validate()
    assert info.value.field == field, str(info.value)
    assert reason in info.value.reason, str(info.value)
    assert f"episode {ep.episode_id!r}" in str(info.value) or ep.episode_id == ""


def test_valid_episode_passes():
    ep = make()
    assert ep.validate() is ep
    assert ep.length == 4


def test_observation_order_is_text_images_tensors_lexicographic():
    kinds = {"z/b": "continuous", "a": "discrete", "img2": "image", "img1": "image",
             "caption": "text", "z/a": "continuous"}
    assert ordered_observation_names(kinds) == ["caption", "img1", "img2", "a", "z/a", "z/b"]


def test_length_mismatch_observation_vs_rewards():
    ep = make()
    ep.observations["frame"] = ep.observations["frame"][:3]
    expect(ep, "observations/frame", "has 3 steps but rewards has 4")


def test_length_mismatch_actions_vs_rewards():
    expect(make(actions=np.zeros(5, np.int32)), "actions", "has 5 steps but rewards has 4")


def test_text_per_step_or_per_episode_only():
    ep = make()
    ep.observations["instruction"] = np.array(["a", "b"], dtype=object)
    expect(ep, "observations/instruction", "text must be [1] (per episode) or [4] (per step)")


def test_wrong_dtype_rewards():
    expect(make(rewards=np.zeros(4, np.float64)), "rewards", "dtype must be float32")


def test_wrong_dtype_image():
    ep = make()
    ep.observations["frame"] = ep.observations["frame"].astype(np.float32)
    expect(ep, "observations/frame", "images must be uint8")


def test_wrong_shape_image():
    ep = make()
    ep.observations["frame"] = np.zeros((4, 8, 8, 2), np.uint8)
    expect(ep, "observations/frame", "C in 1/3/4")


def test_wrong_shape_actions():
    expect(make(actions=np.zeros((4, 2, 2), np.int32)), "actions", "[T] or [T, A]")


def test_continuous_actions_must_be_float():
    expect(make(action_kind="continuous", actions=np.zeros((4, 2), np.int64)), "actions",
           "continuous actions must be float")


def test_discrete_action_out_of_range_high():
    expect(make(actions=np.array([0, 1, 1024, 2], np.int32)), "actions",
           "discrete value 1024 outside [0, 1024)")


def test_discrete_action_negative():
    expect(make(actions=np.array([0, -1, 1, 2], np.int32)), "actions",
           "discrete value -1 outside [0, 1024)")


def test_discrete_observation_non_integer():
    ep = make()
    ep.observations["count"] = np.array([0.5, 1, 2, 3])
    ep.observation_kinds["count"] = "discrete"
    expect(ep, "observations/count", "discrete values must be integers")


def test_nan_reward():
    expect(make(rewards=np.array([0, np.nan, 0, 0], np.float32)), "rewards",
           "non-finite value nan at step 1")


def test_inf_observation():
    ep = make()
    ep.observations["proprio/joints"][2, 1] = np.inf
    expect(ep, "observations/proprio/joints", "non-finite value inf at index (2, 1)")


def test_nan_return():
    expect(make(return_=float("nan")), "return", "non-finite return")


def test_empty_episode():
    ep = make(T=0)
    ep.observations["instruction"] = np.array([], dtype=object)
    expect(ep, "rewards", "empty episode (0 steps)")


def test_missing_identity_and_source():
    expect(make(task=""), "task", "non-empty string")
    expect(make(source={}), "source", "at least 'uri'")
    expect(make(order=[0, 3]), "order", "tuple of ints")


def test_kinds_and_observations_must_agree():
    ep = make()
    del ep.observation_kinds["frame"]
    expect(ep, "observations", "names differ from observation_kinds")
    ep = make()
    ep.observation_kinds["frame"] = "video"
    expect(ep, "observations/frame", "unknown kind 'video'")


def test_action_kind_none_needs_empty_actions():
    ep = make(action_kind="none", actions=np.zeros((4, 0), np.float32))
    assert ep.validate() is ep
    expect(make(action_kind="none"), "actions", "action_kind 'none' needs an empty [T, 0] array")


def test_arrow_round_trip_is_exact():
    ep = make()
    (back,) = episode_from_arrow(episode_to_arrow([ep]))
    assert back.episode_id == ep.episode_id and back.order == ep.order
    for name, x in ep.observations.items():
        np.testing.assert_array_equal(back.observations[name], x)
        assert back.observations[name].dtype == x.dtype
    np.testing.assert_array_equal(back.actions, ep.actions)
    assert back.actions.dtype == ep.actions.dtype
    assert back.observation_kinds == ep.observation_kinds
    assert back.source == ep.source and back.return_ == ep.return_
    back.validate()

"""The RL Unplugged Atari reader's episode assembly against small files built here from chosen
frames, actions, rewards and discounts, in both layouts.

The records are laid out as ``tools/fixture-gen/rlu_atari.py`` lays them out (TFDS's
``atari_episodes_ordered`` episode features; DeepMind's transition features with 4-frame PNG
stacks, zero frames before the first step and a zero newest frame after a terminal one), serialized
as ``tf.train.Example`` with the protobuf runtime and framed as TFRecords. The ground truth is the
arrays the records are built from. Small 6x5 frames keep a run of the whole file under a second,
which is what issue 22's mutation testing of ``rlu_atari.py``/``rlu_records.py`` needs.
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source
from trajcorpus.sources.rlu_records import euler_order
from trajcorpus.sources.tfrecord import Example, frame_record

H, W = 6, 5
ZERO = np.zeros((H, W), np.uint8)


def png(frame: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", **kw)
    return buf.getvalue()


def example(**features) -> bytes:
    ex = Example()
    for key, value in features.items():
        feature = ex.features.feature[key]
        if value is None:  # a Feature with no list set
            feature.SetInParent()
        elif isinstance(value, list) and all(isinstance(v, bytes) for v in value):
            feature.bytes_list.value.extend(value)
        elif np.asarray(value).dtype.kind in "iu":
            feature.int64_list.value.extend(int(v) for v in np.asarray(value).reshape(-1))
        else:
            feature.float_list.value.extend(float(v) for v in np.asarray(value).reshape(-1))
    return ex.SerializeToString(deterministic=True)


def write(path: Path, records: list[bytes], compress: bool = True) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(frame_record(r) for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def return64(rewards: np.ndarray) -> float:
    return math.fsum(rewards.astype(np.float64).tolist())


def make_episode(seed: int, length: int, terminal: bool, loop: bool = False) -> dict:
    """Frames that differ from step to step (and from the zero frame), unless ``loop``: then
    steps 2..6 show one frame and take one action, so two (stack, action) nodes recur."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(1, 256, size=(length, H, W), dtype=np.uint8)
    actions = rng.integers(0, 6, size=length).astype(np.int64)
    if loop:
        frames[2:7] = frames[2]
        actions[3:7] = actions[3]
    # 1.0, tiny rewards, -0.5 last: a float32 sum drops tiny terms, the float64 sum does not
    rewards = np.full(length, 2.0 ** -24, np.float32)
    rewards[0] = 1.0
    if length > 1:
        rewards[-1] = -0.5
    if length > 2:
        assert float(rewards.sum(dtype=np.float32)) != return64(rewards)
    discounts = np.ones(length, np.float32)
    if terminal:
        discounts[-1] = 0.0
    return {"frames": frames, "actions": actions, "rewards": rewards, "discounts": discounts,
            "terminal": terminal}


# -- the episode layout ----------------------------------------------------------------------------

def episode_record(ep: dict, checkpoint: int, index: int, **override) -> bytes:
    feats = {"checkpoint_idx": np.array([checkpoint]), "episode_idx": np.array([index]),
             "episode_return": np.array([ep["rewards"].sum()], np.float32),
             "observations": [png(f) for f in ep["frames"]], "actions": ep["actions"],
             "unclipped_rewards": ep["rewards"], "clipped_rewards": np.sign(ep["rewards"]),
             "discounts": ep["discounts"]}
    feats.update(override)
    return example(**{k: v for k, v in feats.items() if not isinstance(v, str)})


EPISODES = [make_episode(1, 9, True), make_episode(2, 1, True), make_episode(3, 5, False)]
PLACES = [(3, 0), (3, 1), (4, 0)]  # (checkpoint_idx, episode_idx)


def episode_file(tmp_path: Path, records: list[bytes] | None = None, game: str = "Pong",
                 name: str = "run_7-00003-of-00050") -> str:
    if records is None:
        records = [episode_record(ep, *place) for ep, place in zip(EPISODES, PLACES, strict=True)]
    write(tmp_path / "root" / game / name, records)
    return str(tmp_path / "root")


def read(uri: str, **kw) -> list:
    return list(open_source("rlu-atari", uri, dataset="d", **kw).read())


def check_episode(e, ep: dict, *, rewards: np.ndarray | None = None) -> None:
    assert isinstance(e, Episode), e
    rewards = ep["rewards"] if rewards is None else rewards
    frames = e.observations["observation"]
    assert frames.dtype == np.uint8 and np.array_equal(frames, ep["frames"])
    assert e.observation_kinds == {"observation": "image"}
    assert e.actions.dtype == np.int64 and np.array_equal(e.actions, ep["actions"])
    assert e.action_kind == "discrete"
    assert e.rewards.dtype == np.float32 and e.rewards.tobytes() == rewards.tobytes()
    assert e.return_ == return64(rewards)
    assert (e.is_terminal, e.is_truncated) == (ep["terminal"], not ep["terminal"])


def test_episode_layout_reads_every_field(tmp_path):
    root = episode_file(tmp_path)
    uri = str(tmp_path / "root" / "Pong" / "run_7-00003-of-00050")
    items = read(root)
    assert len(items) == 3
    offset = 0
    records = [episode_record(ep, *place) for ep, place in zip(EPISODES, PLACES, strict=True)]
    for i, (e, ep, place) in enumerate(zip(items, EPISODES, PLACES, strict=True)):
        check_episode(e, ep)
        assert e.episode_id == f"Pong/run_7-00003-of-00050:{i}" and e.order == place
        assert (e.dataset, e.task, e.agent) == ("d", "Pong", "7")
        assert e.source == {"uri": uri, "layout": "episodes", "record": i, "offset": offset,
                            "checkpoint_idx": place[0], "episode_idx": place[1],
                            "reward_key": "unclipped_rewards"}
        offset += len(frame_record(records[i]))
    src = open_source("rlu-atari", root)
    (unit,) = src.units()
    assert unit.key == "Pong/run_7-00003-of-00050" and unit.uri == uri
    assert unit.params == (("layout", "episodes"), ("game", "Pong"), ("run", 7), ("shard", 3),
                           ("task", "Pong"))


def test_episode_layout_templates_see_game_and_run(tmp_path):
    root = episode_file(tmp_path)
    src = open_source("rlu-atari", root, task_template="{game}/{run}/{task}/{agent}",
                      agent_template="{agent}-{run}-{game}-{task}")
    items = list(src.read())
    assert {(e.task, e.agent) for e in items} == {("Pong/7/Pong/7", "7-7-Pong-Pong")}
    assert src.units()[0].param("task") == "Pong/7/Pong/7"


def test_reward_key_option_and_clipped_only_files(tmp_path):
    root = episode_file(tmp_path)
    items = read(root, options={"reward_key": "clipped_rewards"})
    for e, ep in zip(items, EPISODES, strict=True):
        check_episode(e, ep, rewards=np.sign(ep["rewards"]))
        assert e.source["reward_key"] == "clipped_rewards"
    records = [episode_record(ep, *place, unclipped_rewards="drop")
               for ep, place in zip(EPISODES, PLACES, strict=True)]
    items = read(episode_file(tmp_path / "b", records))
    for e, ep in zip(items, EPISODES, strict=True):
        check_episode(e, ep, rewards=np.sign(ep["rewards"]))
        assert e.source["reward_key"] == "clipped_rewards"


@pytest.mark.parametrize("override, reason", [
    ({"discounts": "drop"}, " [discounts]: missing feature (the episode layout needs observations, "
     "actions, discounts, checkpoint_idx, episode_idx, unclipped_rewards)"),
    ({"unclipped_rewards": "drop", "clipped_rewards": "drop"}, " [unclipped_rewards]: missing "
     "feature (the episode layout needs observations, actions, discounts, checkpoint_idx, "
     "episode_idx, unclipped_rewards)"),
    ({"observations": np.array([1, 2])}, " [observations]: expected a bytes_list, got a int64 list"),
    ({"actions": np.zeros(9, np.float32)}, " [actions]: expected a int64_list, got a float32 list"),
    ({"actions": [b"x"]}, " [actions]: expected a int64_list, got a bytes_list"),
    ({"discounts": np.zeros(9, np.int64)}, " [discounts]: expected a float_list, got a int64 list"),
    ({"unclipped_rewards": np.zeros(9, np.int64)},
     " [unclipped_rewards]: expected a float_list, got a int64 list"),
    ({"discounts": np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], np.float32)},
     " [discounts]: discount 0 (episode end) at step 7, before the last step 8"),
    ({"observations": [png(ZERO)] * 3 + [b"\x89PNG\r\n\x1a\nbroken"] + [png(ZERO)] * 5},
     " [observations[3]]: cannot decode image: "),
    ({"actions": None}, " [actions]: has 0 values but observations has 9"),
    ({"unclipped_rewards": np.zeros(8, np.float32)},
     " [unclipped_rewards]: has 8 values but observations has 9"),
    ({"discounts": np.ones(10, np.float32)}, " [discounts]: has 10 values but observations has 9"),
    ({"checkpoint_idx": np.array([1, 2])}, " [checkpoint_idx]: expected exactly 1 value, got 2"),
    ({"episode_idx": None}, " [episode_idx]: expected exactly 1 value, got 0"),
    ({"discounts": np.array([1, 1, 0, 1, 1, 1, 1, 1, 0], np.float32)},
     " [discounts]: discount 0 (episode end) at step 2, before the last step 8"),
    ({"discounts": np.array([1, 1, 1, 1, 1, 1, 1, 1, 1.5], np.float32)}, " [discounts]: "),
    ({"observations": [png(ZERO)] * 8 + [png(np.zeros((H, W, 3), np.uint8))]},
     ": expected a grayscale frame, got shape (6, 5, 3)"),
    ({"observations": [png(ZERO)] * 8 + [png(np.zeros((H, W + 1), np.uint8))]},
     " [observations[8]]: frame shape (6, 6) differs from the first frame's (6, 5)"),
])
def test_episode_layout_refusals_name_record_and_key(tmp_path, override, reason):
    ep = EPISODES[0]
    records = [episode_record(EPISODES[1], 0, 0), episode_record(ep, 0, 1, **override)]
    root = episode_file(tmp_path, records)
    uri = str(tmp_path / "root" / "Pong" / "run_7-00003-of-00050")
    good, bad = read(root)
    check_episode(good, EPISODES[1])
    offset = len(frame_record(records[0]))
    assert isinstance(bad, Rejected) and bad.kind == "episode" and bad.task == "Pong"
    assert bad.location == f"{uri} @ offset {offset} (record 1)"
    assert bad.reason.startswith(f"{uri} @ offset {offset}{reason}"), bad.reason


def test_episode_with_no_frames(tmp_path):
    records = [episode_record(EPISODES[0], 0, 0, observations=None, actions=None,
                              unclipped_rewards=None, discounts=None)]
    (bad,) = read(episode_file(tmp_path, records))
    uri = str(tmp_path / "root" / "Pong" / "run_7-00003-of-00050")
    assert bad.reason == f"{uri} @ offset 0 [observations]: episode has no frames"


def test_frames_with_a_channel_axis_of_one_are_grayscale(tmp_path):
    # a PNG decoded as [H, W, 1] cannot come from PIL; _gray also takes such arrays
    from trajcorpus.sources.rlu_records import _gray
    frame = np.arange(30, dtype=np.uint8).reshape(H, W, 1)
    assert np.array_equal(_gray(frame, "u", 0), frame[..., 0])
    with pytest.raises(SourceError) as e:
        _gray(np.zeros((H, W, 2), np.uint8), "u", 7)
    assert str(e.value) == "u @ offset 7: expected a grayscale frame, got shape (6, 5, 2)"


# -- the transition layout -------------------------------------------------------------------------

STACK = 4


def transitions(ep: dict, eid: int, returns: float | None = None) -> list[bytes]:
    """One Example per step, as DeepMind's layout stores them (see the module docstring)."""
    frames, n = ep["frames"], len(ep["actions"])
    pngs = [png(f) for f in frames]
    zero = png(ZERO)
    after = zero if ep["terminal"] else png(np.full((H, W), 7, np.uint8))

    def at(i):
        return pngs[i] if 0 <= i < n else (after if i == n else zero)

    ret = float(ep["rewards"].sum(dtype=np.float32)) if returns is None else returns
    out = []
    for t in range(n):
        out.append(example(
            o_t=[at(j) for j in range(t - STACK + 1, t + 1)],
            o_tp1=[at(j) for j in range(t - STACK + 2, t + 2)],
            a_t=np.array([ep["actions"][t]]),
            a_tp1=np.array([ep["actions"][t + 1] if t + 1 < n else 0]),
            r_t=np.array([ep["rewards"][t]], np.float32),
            d_t=np.array([ep["discounts"][t]], np.float32),
            episode_id=np.array([eid]), episode_return=np.array([ret], np.float32)))
    return out


# ids: one negative int64 (its uint64 is id + 2**64), even and odd ones for two buckets
TEPS = {-5: make_episode(11, 8, True, loop=True), 6: make_episode(12, 3, True),
        9: make_episode(13, 6, False), 12: make_episode(14, 1, True)}


def uint64(eid: int) -> int:
    return eid & (2 ** 64 - 1)


def shuffled(seed: int = 0, eps: dict | None = None) -> list[tuple[int, int, bytes]]:
    """(episode id, step, record) of every transition, in a shuffled order."""
    items = [(eid, t, r) for eid, ep in (eps or TEPS).items()
             for t, r in enumerate(transitions(ep, eid))]
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def transition_run(tmp_path: Path, items, shards: int = 2, game: str = "Pong", run: int = 2,
                   compress: bool = False) -> tuple[str, dict]:
    """Deal the records round-robin over the shards; returns the run folder and, per episode
    id, the (shard, record) of each step."""
    per = [[] for _ in range(shards)]
    where: dict[int, dict[int, tuple[int, int]]] = {}
    for k, (eid, t, rec) in enumerate(items):
        s = k % shards
        where.setdefault(eid, {})[t] = (s, len(per[s]))
        per[s].append(rec)
    for s, recs in enumerate(per):
        write(tmp_path / "root" / game / f"run_{run}-{s:05d}-of-{shards:05d}", recs, compress)
    return str(tmp_path / "root"), where


def check_transitions(items, where: dict, *, eps: dict | None = None, buckets=None,
                      files: list[str], uri: str) -> None:
    eps = eps or TEPS
    assert all(isinstance(e, Episode) for e in items), [e for e in items
                                                        if isinstance(e, Rejected)]
    by_id = {e.source["episode_id_uint64"]: e for e in items}
    assert len(by_id) == len(items)
    want = [eid for eid in eps if buckets is None or uint64(eid) % buckets[1] == buckets[0]]
    assert sorted(by_id) == sorted(uint64(eid) for eid in want)
    # episodes come out in the order of their earliest-stored transition
    assert [e.order for e in items] == sorted(min(where[eid].values()) for eid in want)
    for eid in want:
        e, ep = by_id[uint64(eid)], eps[eid]
        check_episode(e, ep)
        assert e.episode_id == f"Pong/run_2/episode_{uint64(eid)}"
        assert e.order == min(where[eid].values())
        assert (e.task, e.agent) == ("Pong", "2")
        first = where[eid][0]
        assert e.source == {"uri": uri, "layout": "transitions", "files": files,
                            "episode_id_uint64": uint64(eid),
                            "first_transition": {"shard": first[0], "record": first[1]},
                            "stored_episode_return": float(ep["rewards"].sum(dtype=np.float32))}


def test_transition_layout_rebuilds_every_episode(tmp_path):
    root, where = transition_run(tmp_path, shuffled())
    files = [str(tmp_path / "root" / "Pong" / f"run_2-0000{s}-of-00002") for s in range(2)]
    src = open_source("rlu-atari", root, dataset="d")
    (unit,) = src.units()
    assert unit.key == "Pong/run_2/bucket_00000-of-00001"
    assert unit.uri == str(tmp_path / "root" / "Pong")
    assert unit.params == (("layout", "transitions"), ("game", "Pong"), ("run", 2),
                           ("files", tuple(files)), ("shards", (0, 1)), ("bucket", 0),
                           ("buckets", 1), ("task", "Pong"))
    check_transitions(list(src.read()), where, files=files, uri=unit.uri)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_transition_layout_in_other_shuffles_and_one_shard(tmp_path, seed):
    root, where = transition_run(tmp_path, shuffled(seed), shards=1, compress=True)
    files = [str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001")]
    check_transitions(read(root), where, files=files, uri=files[0])


@pytest.mark.parametrize("buckets", [2, 3])
def test_buckets_keep_the_episodes_whose_uint64_id_falls_in_them(tmp_path, buckets):
    root, where = transition_run(tmp_path, shuffled())
    files = [str(tmp_path / "root" / "Pong" / f"run_2-0000{s}-of-00002") for s in range(2)]
    src = open_source("rlu-atari", root, dataset="d", options={"episode_buckets": buckets})
    units = src.units()
    assert [u.key for u in units] == [f"Pong/run_2/bucket_{b:05d}-of-{buckets:05d}"
                                      for b in range(buckets)]
    assert [u.index for u in units] == list(range(buckets))
    for b, u in enumerate(units):
        check_transitions(list(src.read_unit(u)), where, buckets=(b, buckets), files=files,
                          uri=u.uri)


def test_bucket_count_from_bucket_bytes(tmp_path):
    root, _ = transition_run(tmp_path, shuffled())
    total = sum(p.stat().st_size for p in (tmp_path / "root" / "Pong").iterdir())
    for per, n in ((total, 1), (total - 1, 2), (total // 3 + 1, 3), (total * 5, 1)):
        units = open_source("rlu-atari", root, options={"bucket_bytes": per}).units()
        assert len(units) == n, per
        assert units[-1].key == f"Pong/run_2/bucket_{n - 1:05d}-of-{n:05d}"


def test_two_runs_and_two_games_are_separate_units(tmp_path):
    eps = {3: TEPS[6]}
    for game, run in (("Pong", 2), ("Pong", 10), ("Breakout", 2)):
        transition_run(tmp_path, shuffled(eps=eps), shards=1, game=game, run=run)
    src = open_source("rlu-atari", str(tmp_path / "root"), options={"episode_buckets": 2})
    assert [u.key for u in src.units()] == [
        "Breakout/run_2/bucket_00000-of-00002", "Breakout/run_2/bucket_00001-of-00002",
        "Pong/run_2/bucket_00000-of-00002", "Pong/run_2/bucket_00001-of-00002",
        "Pong/run_10/bucket_00000-of-00002", "Pong/run_10/bucket_00001-of-00002"]
    items = list(src.read())
    assert [e.episode_id for e in items] == ["Breakout/run_2/episode_3", "Pong/run_2/episode_3",
                                            "Pong/run_10/episode_3"]
    assert [(e.task, e.agent) for e in items] == [("Breakout", "2"), ("Pong", "2"),
                                                  ("Pong", "10")]
    src = open_source("rlu-atari", str(tmp_path / "root"),
                      options={"games": ["Pong"], "runs": [10]}, task_template="{game}-{run}",
                      agent_template="{task}:{agent}")
    assert [u.key for u in src.units()] == ["Pong/run_10/bucket_00000-of-00001"]
    assert src.units()[0].param("task") == "Pong-10"
    assert [(e.task, e.agent) for e in src.read()] == [("Pong-10", "Pong:10")]


def test_differing_stored_returns_are_all_kept(tmp_path):
    ep = TEPS[6]
    recs = transitions(ep, 6)
    recs[1] = transitions(ep, 6, returns=4.0)[1]
    recs[2] = transitions(ep, 6, returns=-2.0)[2]
    ex = Example.FromString(recs[0])
    ex.features.feature["episode_return"].float_list.value.append(99.0)  # only the first counts
    recs[0] = ex.SerializeToString()
    root, _ = transition_run(tmp_path, [(6, t, r) for t, r in enumerate(recs)], shards=1)
    (e,) = read(root)
    check_episode(e, ep)
    assert e.source["stored_episode_return"] == [-2.0, float(ep["rewards"].sum(dtype=np.float32)), 4.0]
    # an episode_return stored as a bytes list, or not at all, is not a return
    recs = transitions(ep, 6)
    for t in range(3):
        ex = Example.FromString(recs[t])
        if t == 0:
            del ex.features.feature["episode_return"]
        else:
            ex.features.feature["episode_return"].bytes_list.value.append(b"1")
        recs[t] = ex.SerializeToString()
    root, _ = transition_run(tmp_path / "b", [(6, t, r) for t, r in enumerate(recs)], shards=1)
    (e,) = read(root)
    assert e.source["stored_episode_return"] == []


def test_frames_encoded_differently_link_by_their_pixels(tmp_path):
    eid, ep = 9, TEPS[9]
    recs = transitions(ep, eid)
    ex = Example.FromString(recs[2])
    stack = ex.features.feature["o_tp1"].bytes_list.value
    again = png(ep["frames"][3], compress_level=0)
    assert again != stack[3]
    stack[3] = again
    recs[2] = ex.SerializeToString()
    items = [(eid, t, r) for t, r in enumerate(recs)] + [
        (6, t, r) for t, r in enumerate(transitions(TEPS[6], 6))]
    root, where = transition_run(tmp_path, items, shards=1)
    files = [str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001")]
    check_transitions(read(root), where, eps={9: ep, 6: TEPS[6]}, files=files, uri=files[0])


def test_a_frame_that_differs_in_pixels_does_not_link(tmp_path):
    eid, ep = 9, TEPS[9]
    recs = transitions(ep, eid)
    ex = Example.FromString(recs[2])
    stack = ex.features.feature["o_tp1"].bytes_list.value
    stack[3] = png(ep["frames"][3] ^ 1)
    recs[2] = ex.SerializeToString()
    root, _ = transition_run(tmp_path, [(eid, t, r) for t, r in enumerate(recs)], shards=1)
    (bad,) = read(root)
    uri = str(tmp_path / "root" / "Pong")
    assert isinstance(bad, Rejected) and bad.task == "Pong"
    assert bad.location == f"{uri}: Pong run 2 episode_id 9 (6 transitions)"
    assert bad.reason == (
        f"{uri} [Pong/run_2/episode_9]: cannot order the transitions of episode_id 9: expected "
        "exactly one first transition (a stack no other transition leads to), found 2: "
        "transitions missing or duplicated")


def test_broken_transitions_reject_their_episode_only(tmp_path):
    recs = transitions(TEPS[6], 6)
    ex = Example.FromString(recs[1])
    del ex.features.feature["o_t"].bytes_list.value[0]
    recs[1] = ex.SerializeToString()
    items = [(6, t, r) for t, r in enumerate(recs)] + [
        (12, t, r) for t, r in enumerate(transitions(TEPS[12], 12))]
    root, where = transition_run(tmp_path, items, shards=1)
    uri = str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001")
    run = str(tmp_path / "root" / "Pong")
    offset = sum(len(frame_record(r)) for r in recs[:1])
    for buckets in (1, 2):
        got = read(root, options={"episode_buckets": buckets})
        bad = [x for x in got if isinstance(x, Rejected)]
        assert len(bad) == 1 and bad[0].task == "Pong"
        assert bad[0].location == f"{run}: Pong run 2 episode_id 6 (2 transitions)"
        assert bad[0].reason == (
            f"{run} [Pong/run_2/episode_6]: 1 unreadable transition(s), first: {uri} @ offset "
            f"{offset} (record 1): {uri} @ offset {offset} [o_t]: expected 4 PNG frames, got 3")
        check_transitions([x for x in got if isinstance(x, Episode)], where,
                          eps={12: TEPS[12]}, files=[uri], uri=uri)


@pytest.mark.parametrize("key, value, reason", [
    ("a_t", np.array([1, 2]), "[a_t]: expected exactly 1 value, got 2"),
    ("a_tp1", np.zeros(1, np.float32), "[a_tp1]: expected a int64_list, got a float32 list"),
    ("r_t", np.zeros(1, np.int64), "[r_t]: expected a float_list, got a int64 list"),
    ("d_t", None, "[d_t]: expected exactly 1 value, got 0"),
    ("o_tp1", [b"x"] * 5, "[o_tp1]: expected 4 PNG frames, got 5"),
    ("o_t", np.array([3]), "[o_t]: expected a bytes_list, got a int64 list"),
    ("o_tp1", np.array([3]), "[o_tp1]: expected a bytes_list, got a int64 list"),
])
def test_a_transition_field_of_the_wrong_form(tmp_path, key, value, reason):
    recs = transitions(TEPS[6], 6)
    ex = Example.FromString(recs[2])
    del ex.features.feature[key]
    feature = ex.features.feature[key]
    if value is None:
        feature.SetInParent()
    elif isinstance(value, list):
        feature.bytes_list.value.extend(value)
    elif value.dtype.kind == "i":
        feature.int64_list.value.extend(value.tolist())
    else:
        feature.float_list.value.extend(value.tolist())
    recs[2] = ex.SerializeToString()
    root, _ = transition_run(tmp_path, [(6, t, r) for t, r in enumerate(recs)], shards=1)
    uri = str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001")
    (bad,) = read(root)
    offset = sum(len(frame_record(r)) for r in recs[:2])
    assert bad.reason == (f"{tmp_path / 'root' / 'Pong'} [Pong/run_2/episode_6]: 1 unreadable transition(s), first: "
                          f"{uri} @ offset {offset} (record 2): {uri} @ offset {offset} {reason}")


def test_a_record_without_an_episode_id_is_reported_once(tmp_path):
    recs = transitions(TEPS[6], 6)
    ex = Example.FromString(recs[0])
    del ex.features.feature["a_tp1"]
    lost = ex.SerializeToString()
    ex = Example.FromString(recs[1])
    ex.features.feature["episode_id"].int64_list.value.append(7)
    two_ids = ex.SerializeToString()
    items = [(12, t, r) for t, r in enumerate(transitions(TEPS[12], 12))]
    items += [(0, 0, lost), (0, 0, two_ids), (0, 0, b"\xff\xff")]
    root, _ = transition_run(tmp_path, items, shards=1)
    uri = str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001")
    sizes = [len(frame_record(r)) for _, _, r in items]
    for buckets in (1, 3):
        got = read(root, options={"episode_buckets": buckets})
        bad = [x for x in got if isinstance(x, Rejected)]
        assert [type(x) for x in got].count(Episode) == 1
        assert [b.location for b in bad] == [f"{uri} @ offset {sum(sizes[:k])} (record {k})"
                                            for k in (1, 2, 3)]
        assert bad[0].reason == (
            f"{uri} @ offset {sizes[0]} [a_tp1]: missing feature (the transition layout needs "
            "o_t, o_tp1, a_t, a_tp1, r_t, d_t, episode_id)")
        assert bad[1].reason == (f"{uri} @ offset {sum(sizes[:2])} [episode_id]: expected "
                                 "exactly 1 value, got 2")
        assert bad[2].reason.startswith(f"{uri} @ offset {sum(sizes[:3])}: not a valid "
                                        "tf.train.Example")
        assert all(b.task == "Pong" for b in bad)


def test_a_damaged_record_is_reported_once_and_reading_goes_on(tmp_path):
    root, where = transition_run(tmp_path, shuffled(), shards=1)
    path = tmp_path / "root" / "Pong" / "run_2-00000-of-00001"
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside record 0's data: a bad data CRC
    path.write_bytes(bytes(data))
    for buckets in (1, 2):
        got = read(root, options={"episode_buckets": buckets})
        bad = [x for x in got if isinstance(x, Rejected)]
        assert bad[0].location == f"{path} @ offset 0 (record 0)"
        assert "bad data CRC" in bad[0].reason and bad[0].task == "Pong"
        # the episode that lost its transition is rejected, once, by its own bucket
        assert len(bad) == 2 and "cannot order the transitions" in bad[1].reason


def test_euler_order_starts_at_the_one_unbalanced_node_and_takes_the_earliest_edge():
    # A->B, B->A, A->C, C->A, A->D read in this order: from A, B is taken first (read first),
    # then C; the walk must use every edge and end at D
    src = [b"A", b"B", b"A", b"C", b"A"]
    dst = [b"B", b"A", b"C", b"A", b"D"]
    assert euler_order(src, dst) == [0, 1, 2, 3, 4]
    src2 = [src[i] for i in (2, 3, 0, 1, 4)]
    dst2 = [dst[i] for i in (2, 3, 0, 1, 4)]
    assert euler_order(src2, dst2) == [0, 1, 2, 3, 4]
    # a one-edge walk; a chain whose start is found but whose edges do not all link
    assert euler_order([b"A"], [b"B"]) == [0]
    assert euler_order([b"A", b"B", b"X"], [b"B", b"C", b"X"]) == (
        "only 2 of 3 transitions link into one chain from the first one: transitions missing "
        "or duplicated")
    assert euler_order([b"A", b"B", b"B"], [b"B", b"C", b"D"]) == (
        "expected exactly one first transition (a stack no other transition leads to), found 2: "
        "transitions missing or duplicated")
    assert euler_order([b"A", b"A"], [b"A", b"A"]) == (
        "expected exactly one first transition (a stack no other transition leads to), found 0: "
        "transitions missing or duplicated")


# -- finding shards and the layout ----------------------------------------------------------------

def test_shard_names_games_and_runs(tmp_path):
    for game, run, shard in (("Pong", 1, 0), ("Pong", 1, 1), ("Pong", 12, 0), ("Qbert", 1, 0)):
        write(tmp_path / "root" / game / f"run_{run}-{shard:05d}-of-00002",
              [episode_record(EPISODES[1], 0, 0)])
    for odd in ("run_1-0000-of-00002", "run_1-00000-of-00002.tmp", "xrun_1-00000-of-00002",
                "run_-00000-of-00002"):
        write(tmp_path / "root" / "Pong" / odd, [b"junk"])
    src = open_source("rlu-atari", str(tmp_path / "root"))
    assert [u.key for u in src.units()] == ["Pong/run_1-00000-of-00002",
                                            "Pong/run_1-00001-of-00002",
                                            "Pong/run_12-00000-of-00002",
                                            "Qbert/run_1-00000-of-00002"]
    assert [u.param("shard") for u in src.units()] == [0, 1, 0, 0]
    assert [u.param("run") for u in src.units()] == [1, 1, 12, 1]
    assert [u.index for u in src.units()] == [0, 1, 2, 3]
    src = open_source("rlu-atari", str(tmp_path / "root"), options={"runs": [12, 1],
                                                                     "games": ["Qbert"]})
    assert [u.key for u in src.units()] == ["Qbert/run_1-00000-of-00002"]
    with pytest.raises(SourceError) as e:
        open_source("rlu-atari", str(tmp_path / "root"),
                    options={"games": ["Qbert"], "runs": [3, 2]}).units()
    assert str(e.value) == (f"{tmp_path / 'root'}: no RL Unplugged shard files (named "
                            "'{Game}/run_{R}-{i:05d}-of-{n:05d}') found for games ('Qbert',) and "
                            "runs [2, 3]")
    for options, tail in (({"runs": [3]}, " and runs [3]"), ({"games": "Seaquest"},
                                                             " for games ('Seaquest',)")):
        with pytest.raises(SourceError) as e:
            open_source("rlu-atari", str(tmp_path / "root"), options=options).units()
        assert str(e.value) == (f"{tmp_path / 'root'}: no RL Unplugged shard files (named "
                                "'{Game}/run_{R}-{i:05d}-of-{n:05d}') found" + tail)
    with pytest.raises(SourceError) as e:
        open_source("rlu-atari", str(tmp_path / "nowhere")).units()
    assert str(e.value) == f"{tmp_path / 'nowhere'}: no such file or folder"
    # one shard file given by name
    one = str(tmp_path / "root" / "Qbert" / "run_1-00000-of-00002")
    (u,) = open_source("rlu-atari", one).units()
    assert u.key == "Qbert/run_1-00000-of-00002" and u.uri == one


def test_the_layout_is_told_from_the_first_readable_record(tmp_path):
    path = tmp_path / "root" / "Pong" / "run_1-00000-of-00002"
    write(path, [b"\xff\xff", example(observations=[b"x"], actions=np.array([1]))])
    write(tmp_path / "root" / "Pong" / "run_1-00001-of-00002",
          [example(o_t=[b"x"], a_t=np.array([1]))])
    src = open_source("rlu-atari", str(tmp_path / "root"))
    assert [u.param("layout") for u in src.units()] == ["episodes", "episodes"]
    # a first file that cannot be read at all is passed over
    path.write_bytes(b"")
    src = open_source("rlu-atari", str(tmp_path / "root"))
    assert [u.param("layout") for u in src.units()] == ["transitions"]
    # nothing readable: the first problem is named
    write(tmp_path / "root" / "Pong" / "run_1-00001-of-00002", [b"\xff\xff"])
    with pytest.raises(SourceError) as e:
        open_source("rlu-atari", str(tmp_path / "root")).units()
    assert str(e.value) == (f"{tmp_path / 'root'}: no readable record to tell the layout from (set "
                            f"option 'layout'); first problem: {path}: empty TFRecord file: no "
                            "records (0 bytes)")
    # the layout option skips the detection
    src = open_source("rlu-atari", str(tmp_path / "root"), options={"layout": "episodes"})
    assert [u.param("layout") for u in src.units()] == ["episodes", "episodes"]
    src = open_source("rlu-atari", str(tmp_path / "root"), options={"layout": "transitions"})
    assert [u.key for u in src.units()] == ["Pong/run_1/bucket_00000-of-00001"]


def test_damaged_episode_records_are_rejected_alone_naming_file_offset_and_task(tmp_path):
    bad_reward = EPISODES[0]["rewards"].copy()
    bad_reward[2] = np.nan
    records = [episode_record(EPISODES[1], 0, 0), b"\xff\xff",
               episode_record(EPISODES[0], 0, 1, unclipped_rewards=bad_reward),
               episode_record(EPISODES[2], 0, 2)]
    framed = [bytearray(frame_record(r)) for r in records]
    framed[0][14] ^= 0x01  # a bad data CRC in record 0
    path = tmp_path / "root" / "Pong" / "run_7-00003-of-00050"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"".join(framed)))
    offsets = np.cumsum([0] + [len(f) for f in framed]).tolist()
    crc, junk, nan, good = read(str(tmp_path / "root"))
    for i, bad in enumerate((crc, junk, nan)):
        assert isinstance(bad, Rejected) and bad.kind == "episode" and bad.task == "Pong"
        assert bad.location == f"{path} @ offset {offsets[i]} (record {i})"
    assert crc.reason.startswith(f"{path} @ offset 0: record 0: bad data CRC")
    assert junk.reason.startswith(f"{path} @ offset {offsets[1]}: not a valid tf.train.Example")
    assert "non-finite value nan at step 2" in nan.reason
    check_episode(good, EPISODES[2])


def _retry_run(tmp_path, t: int, key: str, slot: int, blob: bytes) -> tuple[str, str, int]:
    """Episode 9 with one frame re-encoded (so it is linked by pixels) and ``blob`` in slot
    ``slot`` of transition t's ``key``; returns the run folder, the shard and that record's
    offset."""
    eid, ep = 9, TEPS[9]
    recs = transitions(ep, eid)
    ex = Example.FromString(recs[2])
    ex.features.feature["o_tp1"].bytes_list.value[3] = png(ep["frames"][3], compress_level=0)
    recs[2] = ex.SerializeToString()
    ex = Example.FromString(recs[t])
    ex.features.feature[key].bytes_list.value[slot] = blob
    recs[t] = ex.SerializeToString()
    root, _ = transition_run(tmp_path, [(eid, i, r) for i, r in enumerate(recs)], shards=1)
    offset = sum(len(frame_record(r)) for r in recs[:t % len(recs)])
    return root, str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001"), offset


@pytest.mark.parametrize("t, key, slot, blob, reason", [
    (5, "o_tp1", 3, b"\x89PNG\r\n\x1a\nbroken", " [o_tp1[3]]: cannot decode image: "),
    (5, "o_tp1", 3, png(np.zeros((H, W, 3), np.uint8)),
     ": expected a grayscale frame, got shape (6, 5, 3)"),
    (0, "o_t", 0, b"\x89PNG\r\n\x1a\nbroken", " [o_t[0]]: cannot decode image: "),
])
def test_a_bad_frame_met_while_linking_by_pixels(tmp_path, t, key, slot, blob, reason):
    root, shard, offset = _retry_run(tmp_path, t, key, slot, blob)
    (bad,) = read(root)
    run = str(tmp_path / "root" / "Pong")
    assert isinstance(bad, Rejected)
    assert bad.reason.startswith(
        f"{run} [Pong/run_2/episode_9]: 1 unreadable transition(s), first: {shard} @ offset "
        f"{offset} (record {t}): {shard} @ offset {offset}{reason}"), bad.reason


@pytest.mark.parametrize("bad, reason", [
    (b"\x89PNG\r\n\x1a\nbroken", " [o_t[3]]: cannot decode image: "),
    (png(np.zeros((H, W, 3), np.uint8)), ": expected a grayscale frame, got shape (6, 5, 3)")])
def test_a_bad_newest_frame_or_discount_in_the_transition_layout(tmp_path, bad, reason):
    # every copy of step 1's frame (its own o_t[3], older slots of later stacks) made unreadable:
    # the PNG bytes still link, and decoding the step's frame fails
    recs = transitions(TEPS[6], 6)
    frame1, broken = png(TEPS[6]["frames"][1]), bad
    for t, rec in enumerate(recs):
        ex = Example.FromString(rec)
        for key in ("o_t", "o_tp1"):
            stack = ex.features.feature[key].bytes_list.value
            for i in range(4):
                if stack[i] == frame1:
                    stack[i] = broken
        recs[t] = ex.SerializeToString()
    root, _ = transition_run(tmp_path, [(6, t, r) for t, r in enumerate(recs)], shards=1)
    shard = str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001")
    (bad,) = read(root)
    offset = len(frame_record(recs[0]))
    assert bad.reason.startswith(f"{shard} @ offset {offset}{reason}"), bad.reason
    recs = transitions(TEPS[6], 6)
    ex = Example.FromString(recs[1])
    ex.features.feature["d_t"].float_list.value[0] = 1.5
    recs[1] = ex.SerializeToString()
    root, _ = transition_run(tmp_path / "d", [(6, t, r) for t, r in enumerate(recs)], shards=1)
    (bad,) = read(root)
    assert bad.reason.startswith(f"{tmp_path / 'd' / 'root' / 'Pong'} [Pong/run_2/episode_6/d_t]: ")


def test_a_negative_action_is_keyed_and_rejected_with_its_episode(tmp_path):
    recs = transitions(TEPS[6], 6)
    for t, key in ((1, "a_t"), (0, "a_tp1")):  # step 1's action, where both records hold it
        ex = Example.FromString(recs[t])
        ex.features.feature[key].int64_list.value[0] = -1
        recs[t] = ex.SerializeToString()
    items = [(6, t, r) for t, r in enumerate(recs)] + [
        (12, t, r) for t, r in enumerate(transitions(TEPS[12], 12))]
    root, _ = transition_run(tmp_path, items, shards=1)
    bad, good = sorted(read(root), key=lambda x: isinstance(x, Episode))
    assert isinstance(bad, Rejected) and bad.kind == "episode"
    assert bad.location == f"{tmp_path / 'root' / 'Pong'}: Pong run 2 episode_id 6 (3 transitions)"
    assert "'actions'" in bad.reason and "discrete value -1 outside" in bad.reason
    check_episode(good, TEPS[12])


def test_an_unknown_layout_or_no_readable_record_is_one_error(tmp_path):
    path = tmp_path / "root" / "Pong" / "run_1-00000-of-00001"
    write(path, [b"\xff\xff", example(foo=np.array([1]), bar=[b"x"])])
    with pytest.raises(SourceError) as e:
        open_source("rlu-atari", str(tmp_path / "root")).units()
    offset = len(frame_record(b"\xff\xff"))
    assert str(e.value) == (f"{path} @ offset {offset}: neither the episode layout ('observations', "
                            "'actions') nor the transition layout ('o_t', 'a_t'): keys are "
                            "['bar', 'foo']")
    write(path, [b"\xff\xff"])  # records that parse as no Example: no problem to name
    with pytest.raises(SourceError) as e:
        open_source("rlu-atari", str(tmp_path / "root")).units()
    assert str(e.value) == (f"{tmp_path / 'root'}: no readable record to tell the layout from (set "
                            "option 'layout')")


def test_compression_and_record_size_options_reach_the_reader(tmp_path):
    root = episode_file(tmp_path)
    path = tmp_path / "root" / "Pong" / "run_7-00003-of-00050"
    (bad,) = read(root, options={"layout": "episodes", "max_record_bytes": 10})
    assert bad.kind == "unit" and str(path) in bad.message
    assert "too large (limit 10)" in bad.reason
    (bad,) = read(root, options={"layout": "episodes", "compression": "none"})
    assert bad.kind == "unit" and "bad length CRC" in bad.reason
    assert len(read(root, options={"compression": "gzip"})) == 3


def test_an_episode_whose_every_transition_is_broken_comes_first(tmp_path):
    ex = Example.FromString(transitions(TEPS[12], 5)[0])
    del ex.features.feature["o_t"].bytes_list.value[0]
    items = [(5, 0, ex.SerializeToString())] + [
        (eid, t, r) for eid in (12, 6) for t, r in enumerate(transitions(TEPS[eid], eid))]
    root, where = transition_run(tmp_path, items, shards=1)
    got = read(root)
    assert [type(x) for x in got] == [Rejected, Episode, Episode]
    assert got[0].location == f"{tmp_path / 'root' / 'Pong'}: Pong run 2 episode_id 5 (0 transitions)"
    del where[5]
    check_transitions(got[1:], where, eps={12: TEPS[12], 6: TEPS[6]},
                      files=[str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001")],
                      uri=str(tmp_path / "root" / "Pong" / "run_2-00000-of-00001"))

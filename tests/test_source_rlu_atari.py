"""The rlu-atari reader against the fixtures' ground_truth.json (computed from the DQN replay logs,
not from the TFRecords), in both layouts, locally and through gs://, plus damaged inputs."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source
from trajcorpus.sources.rlu_atari import euler_order
from trajcorpus.sources.tfrecord import Example, frame_record, parse_example, read_records

EPISODE_FILE = "Pong/run_1-00000-of-00001"


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def gt(fixtures, layout: str) -> dict:
    return json.loads((fixtures / layout / "ground_truth.json").read_text())


def read_all(uri: str, **options) -> list[Episode | Rejected]:
    return list(open_source("rlu-atari", uri, dataset="demo-rlu-atari", options=options).read())


@pytest.fixture(scope="module")
def transitions(fixtures):
    return read_all(str(fixtures / "rlu_atari"))


def check_episode_layout(episodes, truth):
    assert len(episodes) == truth["num_episodes"] == 3
    assert all(isinstance(e, Episode) for e in episodes)
    for e, g in zip(episodes, truth["episodes"], strict=True):
        assert e.length == g["length"] == g["num_steps"]
        assert e.return_ == g["return_clipped"]
        assert e.order == (g["checkpoint_idx"], g["episode_idx"])
        assert e.episode_id == f"Pong/run_1-00000-of-00001:{g['record_index']}"
        assert e.task == "Pong" and e.agent == "1"
        frames = e.observations["observation"]
        assert frames.dtype == np.uint8 and frames.shape == (g["length"], 84, 84)
        assert sha(frames) == g["frames_sha256"]
        assert sha(e.actions.astype("<i8")) == g["actions_sha256"]
        assert sha(e.rewards.astype("<f4")) == g["rewards_sha256"]
        assert e.actions[:8].tolist() == g["first_actions"] and e.action_kind == "discrete"
        assert np.flatnonzero(e.rewards).tolist() == g["nonzero_reward_steps"]
        assert e.is_terminal == g["terminal"] and not e.is_truncated
        assert e.observation_kinds == {"observation": "image"}


def test_episode_layout_matches_ground_truth(fixtures):
    check_episode_layout(read_all(str(fixtures / "rlu_atari_episodes")), gt(fixtures,
                                                                            "rlu_atari_episodes"))


def test_episode_layout_units_are_files(fixtures):
    src = open_source("rlu-atari", str(fixtures / "rlu_atari_episodes"))
    units = src.units()
    assert [u.key for u in units] == ["Pong/run_1-00000-of-00001"]
    assert units[0].param("layout") == "episodes" and units[0].param("task") == "Pong"


def test_episode_layout_through_gcs(fixtures, gcs):
    uri = gcs.upload(fixtures / "rlu_atari_episodes" / "Pong", "rlu/atari_episodes_ordered/Pong")
    episodes = read_all(uri.rsplit("/", 1)[0])
    check_episode_layout(episodes, gt(fixtures, "rlu_atari_episodes"))
    assert episodes[0].source["uri"].startswith("gs://")


def check_transition_layout(episodes, truth):
    assert all(isinstance(e, Episode) for e in episodes), [e for e in episodes
                                                           if isinstance(e, Rejected)]
    by_id = {e.source["episode_id_uint64"]: e for e in episodes}
    assert len(by_id) == len(episodes) == truth["num_episodes"]
    for g in truth["episodes"]:
        e = by_id[g["episode_id_uint64"]]
        assert e.episode_id == f"Pong/run_1/episode_{g['episode_id_uint64']}"
        assert e.length == g["length"] == g["num_transitions"]
        assert e.return_ == g["return_clipped"] == e.source["stored_episode_return"]
        frames = e.observations["observation"]
        assert frames.shape == (g["length"], 84, 84) and sha(frames) == g["frames_sha256"]
        assert sha(e.rewards.astype("<f4")) == g["rewards_sha256"]
        # where (stack, action) keys repeat, the order of the actions on the loops is not unique
        if g["repeated_o_t_a_t_keys"] == 0:
            assert sha(e.actions.astype("<i8")) == g["actions_sha256"]
            assert e.actions[:8].tolist() == g["first_actions"]
        assert sha(np.sort(e.actions).astype("<i8")) == g["actions_sorted_sha256"]
        assert e.is_terminal == g["terminal"]
        assert e.task == "Pong" and e.agent == "1"
    # the ground truth has a repeated key in episode 24, so the rebuild must cope with a loop
    assert any(g["repeated_o_t_a_t_keys"] for g in truth["episodes"])


def test_transition_layout_rebuilds_episodes(transitions, fixtures):
    check_transition_layout(transitions, gt(fixtures, "rlu_atari"))
    orders = [e.order for e in transitions]
    assert orders == sorted(orders)


def test_transition_buckets_split_episodes_without_losing_any(fixtures, transitions):
    src = open_source("rlu-atari", str(fixtures / "rlu_atari"), options={"episode_buckets": 2})
    units = src.units()
    assert [u.key for u in units] == ["Pong/run_1/bucket_00000-of-00002",
                                      "Pong/run_1/bucket_00001-of-00002"]
    assert units[0].param("files") == tuple(str(fixtures / f"rlu_atari/Pong/run_1-0000{i}-of-00002")
                                            for i in range(2))
    per_unit = [list(src.read_unit(u)) for u in units]
    ids = [{e.episode_id for e in eps} for eps in per_unit]
    assert not ids[0] & ids[1]
    assert ids[0] | ids[1] == {e.episode_id for e in transitions}
    for u, eps in zip(units, per_unit, strict=True):
        assert all(e.source["episode_id_uint64"] % 2 == u.param("bucket") for e in eps)


def test_transition_layout_through_gcs(fixtures, gcs):
    uri = gcs.upload(fixtures / "rlu_atari" / "Pong", "rlu/atari/Pong")
    check_transition_layout(read_all(uri), gt(fixtures, "rlu_atari"))


def test_euler_order_follows_loops_that_greedy_linking_skips():
    # walk A->B->A->C->D: node A is left twice; a greedy walk taking A->C first would strand A->B
    src = [b"A", b"C", b"B", b"A"]
    dst = [b"C", b"D", b"A", b"B"]
    order = euler_order(src, dst)
    assert [(src[i], dst[i]) for i in order] == [(b"A", b"B"), (b"B", b"A"), (b"A", b"C"),
                                                 (b"C", b"D")]


def test_euler_order_reports_a_broken_chain():
    assert "exactly one first transition" in euler_order([b"A", b"X"], [b"B", b"Y"])
    assert euler_order([], []) == "no transitions"


def test_filters_and_unknown_options(fixtures):
    with pytest.raises(SourceError, match="no RL Unplugged shard files"):
        open_source("rlu-atari", str(fixtures / "rlu_atari"), options={"games": ["Breakout"]}
                    ).units()
    with pytest.raises(SourceError, match="no RL Unplugged shard files"):
        open_source("rlu-atari", str(fixtures / "rlu_atari"), options={"games": "Po"}).units()
    units = open_source("rlu-atari", str(fixtures / "rlu_atari_episodes"),
                        options={"games": "Pong", "runs": [1]}).units()
    assert len(units) == 1
    with pytest.raises(SourceError, match=r"unknown rlu-atari option 'gmaes'"):
        open_source("rlu-atari", str(fixtures / "rlu_atari"), options={"gmaes": ["Pong"]})


# -- damaged inputs, made in tmp_path from the good fixture files ---------------------------------

def episode_examples(fixtures) -> list:
    return [Example.FromString(r) for r in read_records(
        str(fixtures / "rlu_atari_episodes" / EPISODE_FILE))]


def write_run(tmp_path, records: list[bytes], name=EPISODE_FILE, compress=True) -> str:
    path = tmp_path / "root" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(frame_record(r) for r in records)
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(tmp_path / "root")


def test_corrupt_png_rejects_that_episode_only(fixtures, tmp_path):
    exs = episode_examples(fixtures)
    obs = exs[1].features.feature["observations"].bytes_list.value
    obs[5] = obs[5][:40] + b"\x00" * 20 + obs[5][60:]
    root = write_run(tmp_path, [e.SerializeToString() for e in exs])
    items = read_all(root)
    assert [type(i).__name__ for i in items] == ["Episode", "Rejected", "Episode"]
    bad = items[1]
    assert "[observations[5]]" in bad.reason and "cannot decode image" in bad.reason
    assert EPISODE_FILE in bad.location and "record 1" in bad.location and bad.task == "Pong"


def test_missing_feature_rejects_with_its_key(fixtures, tmp_path):
    exs = episode_examples(fixtures)
    del exs[0].features.feature["discounts"]
    items = read_all(write_run(tmp_path, [e.SerializeToString() for e in exs]))
    assert isinstance(items[0], Rejected) and "[discounts]" in items[0].reason
    assert "missing feature" in items[0].reason
    assert [type(i) for i in items[1:]] == [Episode, Episode]


def test_wrong_length_rejects_with_its_key(fixtures, tmp_path):
    exs = episode_examples(fixtures)
    del exs[2].features.feature["actions"].int64_list.value[-1]
    items = read_all(write_run(tmp_path, [e.SerializeToString() for e in exs]))
    assert isinstance(items[2], Rejected)
    assert "[actions]" in items[2].reason and "has 1725 values but observations has 1726" in \
        items[2].reason


def test_bad_data_crc_rejects_the_record_and_reading_goes_on(fixtures, tmp_path):
    exs = [e.SerializeToString() for e in episode_examples(fixtures)]
    framed = [bytearray(frame_record(r)) for r in exs]
    framed[0][200] ^= 0x10
    path = tmp_path / "root" / EPISODE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"".join(framed)))
    items = read_all(str(tmp_path / "root"))
    assert [type(i) for i in items] == [Rejected, Episode, Episode]
    assert "@ offset 0" in items[0].reason and "bad data CRC" in items[0].reason


def test_truncated_gzip_rejects_the_rest_of_the_unit(fixtures, tmp_path):
    src = fixtures / "rlu_atari_episodes" / EPISODE_FILE
    path = tmp_path / "root" / EPISODE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    items = read_all(str(tmp_path / "root"))
    assert isinstance(items[-1], Rejected) and items[-1].kind == "unit"
    assert "truncated gzip stream" in items[-1].message and str(path) in items[-1].message
    assert all(isinstance(i, Episode) for i in items[:-1])


def test_bad_length_crc_rejects_the_unit(fixtures, tmp_path):
    exs = [e.SerializeToString() for e in episode_examples(fixtures)]
    framed = [bytearray(frame_record(r)) for r in exs]
    framed[1][9] ^= 0xFF
    path = tmp_path / "root" / EPISODE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"".join(framed)))
    items = read_all(str(tmp_path / "root"))
    assert [type(i) for i in items] == [Episode, Rejected]
    assert items[1].kind == "unit" and f"@ offset {len(framed[0])}" in items[1].message
    assert "bad length CRC" in items[1].reason


def test_missing_transition_rejects_its_episode(fixtures, tmp_path):
    records = []
    for i in range(2):
        records += list(read_records(str(fixtures / f"rlu_atari/Pong/run_1-0000{i}-of-00002")))
    truth = gt(fixtures, "rlu_atari")
    victim = truth["episodes"][1]["episode_id_int64"]
    drop = next(i for i, r in enumerate(records)
                if int(parse_example(r)["episode_id"][0]) == victim
                and parse_example(r)["d_t"][0] == 1.0)
    del records[drop]
    root = write_run(tmp_path, records, "Pong/run_1-00000-of-00001", compress=False)
    items = read_all(root)
    rejected = [i for i in items if isinstance(i, Rejected)]
    assert len(rejected) == 1 and sum(isinstance(i, Episode) for i in items) == 2
    assert f"episode_{truth['episodes'][1]['episode_id_uint64']}" in rejected[0].reason
    assert "cannot order the transitions" in rejected[0].reason


def test_frames_encoded_differently_still_link(fixtures, tmp_path):
    """Same pixels, other PNG bytes in one o_tp1: linking falls back to decoded pixels."""
    import io

    from PIL import Image

    records = []
    for i in range(2):
        records += [Example.FromString(r) for r in read_records(
            str(fixtures / f"rlu_atari/Pong/run_1-0000{i}-of-00002"))]
    target = next(ex for ex in records if ex.features.feature["d_t"].float_list.value[0] == 1.0)
    stack = target.features.feature["o_tp1"].bytes_list.value
    pixels = np.asarray(Image.open(io.BytesIO(stack[3])))
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=0)
    assert buf.getvalue() != stack[3]
    stack[3] = buf.getvalue()
    root = write_run(tmp_path, [ex.SerializeToString() for ex in records],
                     "Pong/run_1-00000-of-00001", compress=False)
    check_transition_layout(read_all(root), gt(fixtures, "rlu_atari"))


def test_unknown_layout_is_a_clear_error(tmp_path):
    ex = Example()
    ex.features.feature["foo"].int64_list.value.append(1)
    root = write_run(tmp_path, [ex.SerializeToString()])
    with pytest.raises(SourceError, match=r"neither the episode layout .* keys are \['foo'\]"
                       ) as e:
        open_source("rlu-atari", root).units()
    assert EPISODE_FILE in str(e.value) and "@ offset 0" in str(e.value)


def test_directory_without_shards(tmp_path):
    (tmp_path / "Pong").mkdir()
    shutil.copy(__file__, tmp_path / "Pong" / "notes.txt")
    with pytest.raises(SourceError, match="no RL Unplugged shard files"):
        open_source("rlu-atari", str(tmp_path)).units()

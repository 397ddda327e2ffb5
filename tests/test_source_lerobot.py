"""The lerobot reader against the four lerobot-written fixtures' ground_truth.json (computed from
the arrays handed to lerobot, not by reading the files back), locally and through gs://, the
shared video decoding, the no-reward rule and `trajcorpus run --dataset demo-lerobot`.
Bad inputs are in tests/adversarial/make_corpus.py (the `lerobot-*` cases)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from trajcorpus.cli import main
from trajcorpus.errors import SourceError, TrajcorpusError
from trajcorpus.pipelines import run_job
from trajcorpus.schemas.episode import Episode
from trajcorpus.sources import open_source
from trajcorpus.sources.video import VideoError, open_video
from trajcorpus.tokenizers.scheme import Modality

SETS = ("v30_av1", "v30_image", "v30_small_files", "v21_video")
VIDEO_SETS = ("v30_av1", "v30_small_files", "v21_video")
MEAN_LEVELS = 4.0  # lossy video: per-frame mean within 4 of 255 levels (measured: 1.9 AV1, 3.3 H.264)
CHANNEL_LEVELS = 6.0  # per-channel means (measured: 2.7 AV1, 4.3 H.264 on 32x32)


def root(fixtures: Path, name: str) -> Path:
    return fixtures / "lerobot" / name / "dataset"


def truth(fixtures: Path, name: str) -> dict:
    return json.loads((fixtures / "lerobot" / name / "ground_truth.json").read_text())


def read(uri, **options) -> list[Episode]:
    out = list(open_source("lerobot", str(uri), dataset="lr", options=options).episodes())
    return sorted(out, key=lambda e: e.order)


class _Episodes(dict):
    """Name -> the set's episodes, each set read on first use."""

    def __init__(self, fixtures: Path):
        super().__init__()
        self.fixtures = fixtures

    def __missing__(self, name: str) -> list[Episode]:
        self[name] = eps = read(root(self.fixtures, name))
        return eps


def _scope(fixture_name: str, config: pytest.Config) -> str:
    """Once per module; but per test under mutmut (docs/mutation-testing.md), which maps each
    function to the tests that reach it: with one read only the first test would."""
    return "function" if "MUTANT_UNDER_TEST" in os.environ else "module"


@pytest.fixture(scope=_scope)
def episodes(fixtures) -> dict[str, list[Episode]]:
    return _Episodes(fixtures)


def check(eps: list[Episode], gt: dict) -> None:
    assert len(eps) == gt["total_episodes"] == len(gt["episodes"])
    for e, g in zip(eps, gt["episodes"], strict=True):
        i = g["episode_index"]
        assert (e.episode_id, e.order, e.length) == (f"episode_{i:06d}", (i,), g["length"])
        assert e.agent == gt["robot_type"] and e.task == "dataset"  # the folder names the repo
        assert e.observations["state"].dtype == np.float32 and e.actions.dtype == np.float32
        assert np.array_equal(e.observations["state"],
                              np.array(g["observation.state"], np.float32))
        assert np.array_equal(e.actions, np.array(g["action"], np.float32))
        assert e.action_kind == "continuous" and e.observation_kinds["state"] == "continuous"
        text = e.observations["instruction"]
        if "frame_tasks" in g:
            assert list(text) == g["frame_tasks"] and len(set(g["frame_tasks"])) == 2
        else:
            assert list(text) == [g["task"]]
        if gt["has_reward"]:
            rewards = np.array(g["next.reward"], np.float32)
            assert np.array_equal(e.rewards, rewards)
            assert e.return_ == float(rewards.astype(np.float64).sum())
            assert e.is_terminal == g["next.done"][-1] is True and not e.is_truncated
            assert e.source["rewards"] == "next.reward"
        else:
            assert not e.rewards.any() and e.return_ == 0.0 and e.source["rewards"] == "absent"
            assert not e.is_terminal and e.is_truncated
        for cam, want in g["cameras"].items():
            name = cam.removeprefix("observation.")
            x = e.observations[name]
            h, w = gt["cameras"][cam][:2] if isinstance(gt["cameras"][cam], list) else \
                (gt["cameras"][cam]["height"], gt["cameras"][cam]["width"])
            assert e.observation_kinds[name] == "image"
            assert x.dtype == np.uint8 and x.shape == (g["length"], h, w, 3)
            if "sha256" in want:  # PNG: lossless, exact
                assert [hashlib.sha256(f.tobytes()).hexdigest() for f in x] == want["sha256"]
            else:
                means = x.reshape(len(x), -1).mean(axis=1)
                assert np.abs(means - want["mean"]).max() < MEAN_LEVELS, cam
                chan = x.reshape(len(x), -1, 3).mean(axis=1)
                assert np.abs(chan - want["channel_mean"]).max() < CHANNEL_LEVELS, cam


@pytest.mark.parametrize("name", SETS)
def test_fixture_matches_ground_truth(episodes, fixtures, name):
    check(episodes[name], truth(fixtures, name))


@pytest.mark.parametrize("name", VIDEO_SETS)
def test_each_row_gets_its_own_frame(episodes, fixtures, name):
    """Consecutive frames' means differ by ~26+ levels: each row's frame is nearer to that
    row's mean than to its neighbours' (a frame off by one row would not be)."""
    gt = truth(fixtures, name)
    for e, g in zip(episodes[name], gt["episodes"], strict=True):
        for cam, want in g["cameras"].items():
            x = e.observations[cam.removeprefix("observation.")]
            got = x.reshape(len(x), -1).mean(axis=1)
            ref = np.array(want["mean"])
            here = np.abs(got - ref)
            assert (here[1:] < np.abs(got[1:] - ref[:-1])).all(), (cam, g["episode_index"])
            assert (here[:-1] < np.abs(got[:-1] - ref[1:])).all(), (cam, g["episode_index"])
            assert np.abs(np.diff(ref)).min() > 25  # 26 as generated, means rounded to 4 places


def test_names_are_kept_in_the_source_and_given_to_the_manifest(episodes, fixtures):
    for name in SETS:
        features = truth(fixtures, name)["features_fed_to_create"]
        want = features["observation.state"]["names"]
        want = want["motors"] if isinstance(want, dict) else want  # v2.1: {"motors": [...]}
        ep = episodes[name][0]
        assert ep.source["names"] == {"state": want, "actions": want}
        src = open_source("lerobot", str(root(fixtures, name)))
        assert src.field_names() == {"state": want, "actions": want}


def test_units_follow_the_layout(fixtures):
    small = open_source("lerobot", str(root(fixtures, "v30_small_files"))).units()
    gt = truth(fixtures, "v30_small_files")
    assert [u.key for u in small] == sorted(
        e["lerobot_reported_placement"]["episodes_meta_file"] for e in gt["episodes"])
    v21 = open_source("lerobot", str(root(fixtures, "v21_video"))).units()
    assert [u.key for u in v21] == [e["lerobot_reported_placement"]["data_file"]
                                    for e in truth(fixtures, "v21_video")["episodes"]]


def test_lineage_names_the_files_lerobot_reported(episodes, fixtures):
    for name in ("v30_small_files", "v21_video"):
        base = root(fixtures, name)
        for e, g in zip(episodes[name], truth(fixtures, name)["episodes"], strict=True):
            place = g["lerobot_reported_placement"]
            assert e.source["uri"] == str(base / place["data_file"])
            assert e.source["videos"] == {k: str(base / v)
                                          for k, v in place["video_files"].items()}


def test_rewardless_dataset_says_so(fixtures):
    assert open_source("lerobot", str(root(fixtures, "v30_av1"))).rewardless() is None
    src = open_source("lerobot", str(root(fixtures, "v30_image")),
                      options={"repo_id": "me/towels"})
    assert src.rewardless() == ("LeRobot dataset 'me/towels' has no rewards (no 'next.reward' "
                                "feature in meta/info.json)")


def test_a_job_asked_to_filter_a_rewardless_dataset_fails_at_once(fixtures, tmp_path):
    cat = {"version": 1, "datasets": [{"id": "towels", "kind": "lerobot", "license": "x",
                                       "uri": str(root(fixtures, "v30_image"))}]}
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(cat))
    with pytest.raises(TrajcorpusError) as err:
        run_job(catalog=str(tmp_path / "catalog.yaml"), dataset="towels",
                output=str(tmp_path / "out"), progress=False)
    assert str(err.value) == (
        "towels: LeRobot dataset 'dataset' has no rewards (no 'next.reward' feature in "
        "meta/info.json): the best-return filter cannot rank its episodes; set filter: "
        "{enabled: false} in its catalog entry")
    assert not (tmp_path / "out" / "data").exists()


def test_options_name_and_exclude(fixtures):
    eps = read(root(fixtures, "v30_av1"), repo_id="me/arm", exclude=["observation.images.*"])
    assert {e.task for e in eps} == {"me/arm"}
    assert set(eps[0].observations) == {"state", "instruction"}
    src = open_source("lerobot", str(root(fixtures, "v30_small_files")),
                      task_template="{instruction}", agent_template="{robot_type}/{repo_id}")
    eps = sorted(src.episodes(), key=lambda e: e.order)
    gt = truth(fixtures, "v30_small_files")["episodes"]
    assert [e.task for e in eps] == [g["task"] for g in gt]
    assert eps[0].agent == "so100_follower/dataset"
    with pytest.raises(SourceError, match=r"lerobot option 'tolerance'"):
        open_source("lerobot", str(root(fixtures, "v30_av1")), options={"tolerance": 1})


def test_through_gcs(gcs, fixtures, episodes):
    uri = gcs.upload(root(fixtures, "v30_small_files"), "lerobot/v30_small_files")
    remote = read(uri)
    assert [e.episode_id for e in remote] == [e.episode_id for e in episodes["v30_small_files"]]
    for a, b in zip(remote, episodes["v30_small_files"], strict=True):
        assert a.source["uri"].startswith(uri)
        for k in b.observations:
            assert np.array_equal(a.observations[k], b.observations[k]), k


# -- video.py ----------------------------------------------------------------------------------

FRONT = "videos/observation.images.front/chunk-000/file-000.mp4"


def test_frames_of_one_episode_in_a_shared_file(fixtures):
    """Episode 1 of v30_av1 is frames 24..63 of the front file: [0.8 s, 2.1333 s)."""
    gt = truth(fixtures, "v30_av1")["episodes"][1]
    place = gt["lerobot_reported_placement"]
    start = place["videos/observation.images.front/from_timestamp"]
    end = place["videos/observation.images.front/to_timestamp"]
    with open_video(str(root(fixtures, "v30_av1") / FRONT)) as video:
        assert (video.info.codec, video.info.width, video.info.height, video.info.fps) == \
            ("libdav1d", 64, 48, 30.0)
        got = list(video.frames(start, end))
    assert len(got) == gt["length"] == 40
    assert np.allclose([t for t, _ in got], start + np.arange(40) / 30)
    means = np.array([f.mean() for _, f in got])
    assert np.abs(means - gt["cameras"]["observation.images.front"]["mean"]).max() < MEAN_LEVELS


def test_seeking_starts_at_a_keyframe_not_at_the_file_start(fixtures):
    """Decoding episode 2 (from 2.1333 s) must not decode episodes 0 and 1 first."""
    with open_video(str(root(fixtures, "v30_av1") / FRONT)) as video:
        decoded = []

        class Counting:  # the container, counting what its decoder produces
            def __init__(self, real):
                self.real = real

            def __getattr__(self, name):
                return getattr(self.real, name)

            def decode(self, *a, **k):
                for frame in self.real.decode(*a, **k):
                    decoded.append(frame.pts)
                    yield frame
        video._container = Counting(video._container)
        got = list(video.frames(64 / 30, None))
    assert len(got) == 17
    assert len(decoded) <= 17 + 2  # the keyframe before (lerobot's GOP is 2) and the look-ahead


def test_frames_at_matches_out_of_order_times_and_refuses_far_ones(fixtures):
    path = str(root(fixtures, "v30_small_files") / FRONT)  # H.264 with B-frames
    with open_video(path) as video:
        ordered, n = video.frames_at(np.arange(14) / 15, 0.5 / 15)
    assert n == 14
    with open_video(path) as video:
        shuffled, _ = video.frames_at(np.array([5, 0, 13, 2]) / 15, 0.5 / 15)
    assert np.array_equal(shuffled, ordered[[5, 0, 13, 2]])
    with open_video(path) as video, pytest.raises(VideoError, match=(
            r"file-000\.mp4 \[cam\]: no frame within 0\.0333s of 9\.0000s \(row 1 of 2; the "
            r"last frame is at 2\.2\d+s\)")):
        video.frames_at(np.array([0.0, 9.0]), 0.5 / 15, key="cam")


def test_missing_and_non_video_files(tmp_path):
    with pytest.raises(VideoError, match=r"nope\.mp4: missing video file$"):
        open_video(str(tmp_path / "nope.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(VideoError, match=r"text\.mp4: cannot open video: Invalid data"):
        open_video(str(tmp_path / "text.mp4"))


# -- the job -----------------------------------------------------------------------------------

def test_run_demo_lerobot_writes_text_images_continuous_and_actions(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--dataset", "demo-lerobot", "--output", str(out), "--format",
                 "parquet", "--quiet", "--direct_num_workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    files = [f["path"] for f in manifest["files"] if f["config"] == "demo-lerobot"
             and f["format"] == "parquet" and f["path"].startswith("data/")]
    rows = [r for f in files for r in pq.read_table(out / f).to_pylist()]
    assert rows
    modality = np.concatenate([np.asarray(r["modality"]) for r in rows])
    for m in (Modality.TEXT, Modality.IMAGE, Modality.CONTINUOUS, Modality.ACTION):
        assert (modality == m).any(), m.name
    patches = sum(int(np.prod(r["patches_shape"][:1])) for r in rows)
    assert patches == int((modality == Modality.IMAGE).sum()) > 0
    metas = [json.loads(r["meta"]) for r in rows]
    assert {m["episode_id"] for m in metas} == {f"episode_{i:06d}" for i in range(6)}
    assert {m["task"] for m in metas} == {"trajcorpus/v30_small_files"}
    assert {m["agent"] for m in metas} == {"so100_follower"}
    info = manifest["configs"]["demo-lerobot"]["info"]
    sem = info["semantics"]["trajcorpus/v30_small_files"]
    names = truth(Path(__file__).parent / "fixtures", "v30_small_files")[
        "features_fed_to_create"]["action"]["names"]
    assert sem["actions"]["names"] == names == sem["state"]["names"]
    assert "LeRobot meta/info.json" in sem["actions"]["source"]
    audit = json.loads((out / "audit/demo-lerobot.json").read_text())
    (rec,) = audit.values()
    assert rec["read"] == rec["kept"] == 6 and rec["window"] is None


def test_one_reader_serves_spans_in_any_order(fixtures):
    """Readers keep a shared file open across episodes; going back must give the same frames."""
    path = str(root(fixtures, "v30_av1") / FRONT)
    with open_video(path) as video:
        later = [f for _, f in video.frames(64 / 30, None)]
        first = [f for _, f in video.frames(0, 24 / 30)]
        again = [f for _, f in video.frames(64 / 30, None)]
    with open_video(path) as fresh:
        want = [f for _, f in fresh.frames(0, 24 / 30)]
    assert len(first) == 24 and len(later) == 17
    assert all(np.array_equal(a, b) for a, b in zip(first, want, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(later, again, strict=True))


def test_a_unit_holds_one_episode_at_a_time(fixtures):
    """While the next episode is built, the reader no longer references the last one (peak
    memory = one episode's frames plus the decoder; bench/lerobot.py measures it)."""
    import gc
    import weakref

    src = open_source("lerobot", str(root(fixtures, "v30_av1")))
    refs: list = []
    real = src._episode

    def spy(*args):
        gc.collect()
        assert all(r() is None for r in refs), "the previous episode is still referenced"
        return real(*args)
    src._episode = spy
    for ep in src.read_unit(src.units()[0]):
        refs.append(weakref.ref(ep))
        del ep
    assert len(refs) == 3


def test_a_rejected_episode_names_the_task_it_would_have_had(fixtures, tmp_path):
    """The audit counts rejections per task: with task: "{instruction}" that is the episode's."""
    import shutil

    copy = tmp_path / "dataset"
    shutil.copytree(root(fixtures, "v21_video"), copy)
    (copy / "videos/chunk-000/observation.images.cam_high/episode_000001.mp4").unlink()
    src = open_source("lerobot", str(copy), task_template="{instruction}")
    out = list(src.read())
    (bad,) = [r for r in out if not isinstance(r, Episode)]
    assert bad.task == "transfer the cube to the other arm" and bad.kind == "episode"
    assert [e.task for e in out if isinstance(e, Episode)] == ["insert the peg into the socket"] * 2

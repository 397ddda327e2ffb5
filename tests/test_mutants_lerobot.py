"""The LeRobot reader's episode assembly on edited copies of the lerobot-written fixtures (issue
22's mutation testing): each bad column is quarantined with its exact "file [field]: reason", and
feature types the fixtures lack (bool, int, float16, a 2-D shape, a grey PNG) are read into the
arrays worked out here from the values written in."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from trajcorpus.schemas.episode import Episode
from trajcorpus.sources import open_source

FIX = Path(__file__).parent / "fixtures" / "lerobot"
DATA = "data/chunk-000/file-000.parquet"
V21_EP1 = "data/chunk-000/episode_000001.parquet"


def copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(FIX / name / "dataset", root)
    return root


def edit_table(path: Path, change) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def edit_info(root: Path, change) -> None:
    p = root / "meta" / "info.json"
    info = json.loads(p.read_text())
    change(info)
    p.write_text(json.dumps(info))


def replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def read_all(root: Path, **options) -> tuple[list[Episode], list]:
    out = list(open_source("lerobot", str(root), dataset="lr", options=options).read())
    return [e for e in out if isinstance(e, Episode)], [r for r in out if not isinstance(r, Episode)]


def rejection(root: Path, **options):
    eps, rej = read_all(root, **options)
    assert len(rej) == 1 and rej[0].kind == "episode", rej
    return rej[0], eps


def test_rows_and_length_disagree(tmp_path) -> None:
    root = copy(tmp_path, "v30_image")
    edit_table(root / DATA, lambda t: t.slice(1))  # episode 0 loses its first row
    r, eps = rejection(root)
    assert (r.location, r.reason) == (f"{root / DATA} [episode 0]",
                                      "11 rows but the episode metadata says length 12")
    assert r.task == "v30_image" and len(eps) == 2


def test_frame_index_out_of_row_order(tmp_path) -> None:
    root = copy(tmp_path, "v30_image")

    def swap(t: pa.Table) -> pa.Table:
        f = t.column("frame_index").to_pylist()
        f[12], f[13] = f[13], f[12]  # episode 1's rows 0 and 1
        return replace(t, "frame_index", pa.array(f, pa.int64()))
    edit_table(root / DATA, swap)
    r, _ = rejection(root)
    assert (r.location, r.reason) == (f"{root / DATA} [episode 1]",
                                      "frame_index is not 0..length-1 in row order")


def test_an_unknown_task_index_names_the_smallest(tmp_path) -> None:
    root = copy(tmp_path, "v30_image")

    def unknown(t: pa.Table) -> pa.Table:
        ti = t.column("task_index").to_pylist()
        ti[13], ti[14] = 9, 7
        return replace(t, "task_index", pa.array(ti, pa.int64()))
    edit_table(root / DATA, unknown)
    r, _ = rejection(root)
    assert (r.location, r.reason) == (f"{root / DATA} [episode 1]",
                                      "task_index 7 is not in the tasks table")


def test_one_task_per_step_when_the_task_changes(tmp_path) -> None:
    root = copy(tmp_path, "v30_image")

    def second(t: pa.Table) -> pa.Table:
        ti = t.column("task_index").to_pylist()
        ti[11] = 1 - ti[11]  # episode 0's last row: the other task
        return replace(t, "task_index", pa.array(ti, pa.int64()))
    edit_table(root / DATA, second)
    eps, _ = read_all(root)
    text = eps[0].observations["instruction"]
    assert text.dtype == object and list(text) == ["fold the towel"] * 11 + [
        "put the marker in the cup"]


@pytest.mark.parametrize("column, values, reason", [
    ("timestamp", lambda v: [None] + v[1:], "null value in column 'timestamp'"),
    ("timestamp", lambda v: [str(x) for x in v], "column 'timestamp' holds string, not numbers"),
    ("observation.state", lambda v: [v[0][:5]] + v[1:], "column 'observation.state' has "
     "ragged lists"),
    ("observation.state", lambda v: [x + [0.0] for x in v], "column 'observation.state' has 7 "
     "values per row, info.json declares shape [6]"),
    ("next.done", lambda v: [2] * len(v), "flag value 2 at row 0 is not 0 or 1"),
])
def test_bad_columns_name_the_episode(tmp_path, column, values, reason) -> None:
    root = copy(tmp_path, "v21_video")
    p = root / V21_EP1

    def change(t: pa.Table) -> pa.Table:
        new = values(t.column(column).to_pylist())
        typ = pa.list_(pa.float32()) if column == "observation.state" else None
        return replace(t, column, pa.array(new, typ))
    edit_table(p, change)
    r, _ = rejection(root)
    key = "next.done" if column == "next.done" else "episode 1"
    assert (r.location, r.reason, r.task) == (f"{p} [{key}]", reason, "v21_video")


def test_rewards_done_and_return_of_a_hand_made_reward_column(tmp_path) -> None:
    root = copy(tmp_path, "v21_video")
    p = root / V21_EP1
    rewards = [0.1, 2.0 ** -24, 1.0] + [0.0] * 27
    done = [0] * 29 + [1]
    edit_table(p, lambda t: replace(replace(t, "next.reward", pa.array(rewards, pa.float32())),
                                    "next.done", pa.array(done, pa.int64())))
    eps, _ = read_all(root)
    ep = eps[1]
    assert ep.rewards.dtype == np.float32 and np.array_equal(ep.rewards, np.float32(rewards))
    assert ep.return_ == float(np.float32(rewards).astype(np.float64).sum())
    assert (ep.is_terminal, ep.is_truncated) == (True, False)
    edit_table(p, lambda t: replace(t, "next.done", pa.array([0] * 29 + [0], pa.int64())))
    ep = read_all(root)[0][1]
    assert (ep.is_terminal, ep.is_truncated) == (False, True)


def test_feature_types_the_fixtures_lack(tmp_path) -> None:
    root = copy(tmp_path, "v30_image")
    n = 47
    flag = [bool(i % 3 == 0) for i in range(n)]
    count = [[i, 2 * i] for i in range(n)]
    effort = [i / 4 for i in range(n)]
    grid = [[float(i * 6 + j) for j in range(6)] for i in range(n)]
    wide = [float(i) + 0.1 for i in range(n)]

    def add(t: pa.Table) -> pa.Table:
        t = t.append_column("observation.flag", pa.array(flag, pa.bool_()))
        t = t.append_column("observation.count", pa.array(count, pa.list_(pa.int16(), 2)))
        t = t.append_column("observation.effort", pa.array(effort, pa.float16()))
        t = t.append_column("observation.grid", pa.array(grid, pa.list_(pa.float32(), 6)))
        return t.append_column("observation.wide", pa.array(wide, pa.float64()))
    edit_table(root / DATA, add)

    def declare(info: dict) -> None:
        info["features"] |= {
            "observation.flag": {"dtype": "bool", "shape": [1], "names": None},
            "observation.count": {"dtype": "int16", "shape": [2], "names": ["a", "b"]},
            "observation.effort": {"dtype": "float16", "shape": [1], "names": ["e"]},
            "observation.grid": {"dtype": "float32", "shape": [2, 3], "names": None},
            "observation.wide": {"dtype": "float64", "shape": [1], "names": None}}
    edit_info(root, declare)
    eps, rej = read_all(root)
    assert rej == [] and [e.length for e in eps] == [12, 20, 15]
    ep = eps[1]
    rows = slice(12, 32)
    assert ep.observation_kinds["flag"] == ep.observation_kinds["count"] == "discrete"
    assert ep.observation_kinds["effort"] == ep.observation_kinds["grid"] == "continuous"
    f = ep.observations["flag"]
    assert f.dtype == np.int64 and f.reshape(-1).tolist() == [int(x) for x in flag[rows]]
    c = ep.observations["count"]
    assert c.dtype == np.int16 and c.tolist() == count[rows]
    e = ep.observations["effort"]
    assert e.dtype == np.float32 and e.reshape(-1).tolist() == effort[rows]
    g = ep.observations["grid"]
    assert g.dtype == np.float32 and g.shape == (20, 2, 3)
    assert g.reshape(20, 6).tolist() == grid[rows]
    w = ep.observations["wide"]
    assert w.dtype == np.float64 and w.reshape(-1).tolist() == wide[rows]
    assert ep.source["names"]["count"] == ["a", "b"] and ep.source["names"]["effort"] == ["e"]
    assert "flag" not in ep.source["names"] and "top" not in ep.source["names"]
    assert (ep.source["episode_index"], ep.source["codebase_version"]) == (1, "v3.0")
    assert set(ep.source) == {"uri", "episode_index", "codebase_version", "videos", "rewards",
                              "names"}


def png(array: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


IMG = "observation.images.top"


def with_images(t: pa.Table, blobs: dict[int, bytes | None]) -> pa.Table:
    col = t.column(IMG).combine_chunks()
    data = col.field("bytes").to_pylist()
    for i, b in blobs.items():
        data[i] = b
    arr = pa.StructArray.from_arrays([pa.array(data, pa.binary()), col.field("path")],
                                     ["bytes", "path"])
    return replace(t, IMG, arr)


def test_a_grey_png_is_read_as_rgb(tmp_path) -> None:
    root = copy(tmp_path, "v30_image")
    grey = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    edit_table(root / DATA, lambda t: with_images(t, {12: png(grey, "L")}))
    ep = read_all(root)[0][1]
    assert np.array_equal(ep.observations["images.top"][0], np.repeat(grey[..., None], 3, 2))


@pytest.mark.parametrize("change, key, reason", [
    (lambda t: replace(t, IMG, pc.struct_field(t.column(IMG), "bytes")), "[episode 0]",
     f"image column '{IMG}' is binary, not struct<bytes, path>"),
    (lambda t: with_images(t, {13: None}), f"[{IMG}, episode 1]",
     "row 1: image bytes are not embedded"),
    (lambda t: with_images(t, {14: png(np.zeros((16, 16, 3), np.uint8), "RGB")}),
     f"[{IMG}, episode 1]", "row 2: image [16, 16, 3] differs from row 0's [32, 32, 3]"),
    (lambda t: with_images(t, {15: b"not a png"}), f"[{IMG}, episode 1, row 3]", None),
])
def test_bad_image_columns(tmp_path, change, key, reason) -> None:
    root = copy(tmp_path, "v30_image")
    edit_table(root / DATA, change)
    eps, rej = read_all(root)
    bad = rej[0]
    assert bad.location == f"{root / DATA} {key}"
    if reason is not None:
        assert bad.reason == reason


def test_a_row_more_than_half_a_frame_from_every_frame_is_refused(tmp_path) -> None:
    root = copy(tmp_path, "v21_video")  # 20 fps: half a frame is 0.025 s
    p = root / V21_EP1

    def shift(t: pa.Table) -> pa.Table:
        ts = t.column("timestamp").to_pylist()
        ts[29] += 0.03  # the last row, 0.03 s after the last frame
        return replace(t, "timestamp", pa.array(ts, pa.float32()))
    edit_table(p, shift)
    r, _ = rejection(root)
    video = root / "videos/chunk-000/observation.images.cam_high/episode_000001.mp4"
    assert r.location == f"{video} [observation.images.cam_high, episode 1]"
    assert r.reason.startswith("no frame within 0.0250s of 1.4800s (row 29 of 30;")
    eps, rej = read_all(root, tolerance_s=0.04)
    assert rej == [] and [e.length for e in eps] == [22, 30, 18]


def test_more_frames_than_rows_in_a_whole_file(tmp_path) -> None:
    root = copy(tmp_path, "v21_video")
    edit_table(root / V21_EP1, lambda t: t.slice(0, 25))
    lines = (root / "meta/episodes.jsonl").read_text().replace('"length": 30', '"length": 25')
    (root / "meta/episodes.jsonl").write_text(lines)
    r, _ = rejection(root)
    video = root / "videos/chunk-000/observation.images.cam_high/episode_000001.mp4"
    assert (r.location, r.reason) == (f"{video} [observation.images.cam_high, episode 1]",
                                      "30 frames in the file but the episode has 25 rows")


def test_more_frames_than_rows_in_a_shared_file(tmp_path) -> None:
    root = copy(tmp_path, "v30_av1")
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    col = "videos/observation.images.front/to_timestamp"

    def longer(t: pa.Table) -> pa.Table:
        v = t.column(col).to_pylist()
        v[0] += 2 / 30  # episode 0's span takes two frames of episode 1
        return replace(t, col, pa.array(v, pa.float64()))
    edit_table(meta, longer)
    eps, rej = read_all(root)
    (r,) = rej
    video = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    assert (r.location, r.reason) == (
        f"{video} [observation.images.front, episode 0]",
        "26 frames in [0.0000s, 0.8667s) but the episode has 24 rows")


SMALL_FRONT = FIX / "v30_small_files/dataset/videos/observation.images.front/chunk-000/file-000.mp4"


def test_frames_at_takes_the_nearest_frame_under_a_wide_tolerance() -> None:
    from trajcorpus.sources.video import open_video

    times = np.array([5, 0, 13, 2, 7]) / 15  # 15 fps, H.264 with B-frames
    with open_video(str(SMALL_FRONT)) as video:
        want, n = video.frames_at(times, 0.5 / 15)
    for tolerance in (0.2, 0.5):
        with open_video(str(SMALL_FRONT)) as video:
            got, m = video.frames_at(times, tolerance, span=(0.0, 14 / 15))
        assert np.array_equal(got, want) and m == 14, tolerance
    with open_video(str(SMALL_FRONT)) as video:
        empty, k = video.frames_at(np.array([]), 0.5 / 15)
        assert empty.dtype == np.uint8 and empty.shape == (0, video.info.height,
                                                           video.info.width, 3) and k == 0
    assert n == 14  # the matched range [0, 13/15] holds 14 frames


def test_no_action_feature_and_an_integer_action(tmp_path) -> None:
    root = copy(tmp_path, "v30_image")  # no next.reward, no next.done
    edit_info(root, lambda info: info["features"].pop("action"))
    eps, rej = read_all(root)
    assert rej == [] and [e.length for e in eps] == [12, 20, 15]
    for e in eps:
        assert e.action_kind == "none" and e.actions.dtype == np.float32
        assert e.actions.shape == (e.length, 0) and "actions" not in e.source["names"]
        assert e.is_terminal is False and e.is_truncated is True
    root = copy(tmp_path / "int", "v30_image")
    acts = [[i, i + 1, 2, 3, 4, i % 5] for i in range(47)]
    edit_table(root / DATA, lambda t: replace(t, "action", pa.array(acts, pa.list_(pa.int64(), 6))))
    edit_info(root, lambda info: info["features"]["action"].update(dtype="int64"))
    ep = read_all(root)[0][1]
    assert ep.action_kind == "discrete" and ep.actions.dtype == np.int64
    assert ep.actions.tolist() == acts[12:32]

"""VPT's episode assembly checked line by line and pixel by pixel (issue 22's mutation testing).

Fast tests (no video decoding except where the step/frame alignment itself is checked): the jsonl
rules against tests/fixtures/vpt/ground_truth.json (written by the fixture generator from its
scripts), hand-written recorder lines whose MineRL action is worked out here, and the cursor drawn
on flat frames compared with a per-pixel blend written out in the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.errors import SourceError
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources.base import open_source
from trajcorpus.sources.vpt import BUTTONS, CAMERA_DEG_PER_PIXEL, decode_frames, parse_jsonl
from trajcorpus.sources.vpt_cursor import cursor_sprite, draw_cursor

VPT = Path(__file__).parent / "fixtures" / "vpt"
TRUTH = json.loads((VPT / "ground_truth.json").read_text())
RECS = TRUTH["recordings"]
GUI = "8.0/quiet-linen-heron-879997e26d5f-20220315-122354"
STUCK = "6.13/mellow-slate-finch-121a96a25106-20220117-190042"
OLD = "6.9/rustic-plum-badger-0c611332793f-20211202-083011"


def buttons_of(names_per_line: list[list[str]]) -> np.ndarray:
    out = np.zeros((len(names_per_line), len(BUTTONS)), np.uint8)
    for i, names in enumerate(names_per_line):
        for b in names:
            out[i, BUTTONS.index(b)] = 1
    return out


@pytest.mark.parametrize("relpath", sorted(RECS))
def test_every_line_parses_to_the_generators_action(relpath) -> None:
    rec = RECS[relpath]
    data = (VPT / rec["files"]["actions"]).read_bytes()
    hotbar = rec["hotbar_field"] == "present"
    p = parse_jsonl(data, "x", "quarantine" if hotbar else "skip_fix")
    n = rec["lines"]
    want = [rec["actions"][str(i)] for i in range(n)]
    assert p.buttons.dtype == np.uint8 and p.buttons.shape == (n, 23)
    assert np.array_equal(p.buttons, buttons_of([w["buttons"] for w in want]))
    assert p.camera.dtype == np.float64 and p.camera.shape == (n, 2)
    np.testing.assert_allclose(p.camera, [w["camera"] for w in want], rtol=1e-12, atol=0)
    assert p.null.dtype == np.bool_ and np.flatnonzero(p.null).tolist() == rec["null_lines"]
    assert p.stuck_lines == rec["attack_stuck_lines"]
    assert p.hotbar_fix is hotbar and p.null_input_lines == 0
    assert [c[0] for c in p.cursors] == rec["gui_open_lines"]
    for line, x, y in p.cursors:  # the box corner is int(mouse * 360 / 720)
        assert isinstance(x, float) and isinstance(y, float)
        assert [int(x * 0.5), int(y * 0.5)] == rec["cursor_boxes"][str(line)][:2]


def rec_line(keys=(), dx=0.0, dy=0.0, held=(), new=(), hotbar=0, gui=False, x=640.0,
             y=360.0) -> dict:
    """One tick as the recorder writes it (the fields the reader looks at)."""
    line = {"mouse": {"x": x, "y": y, "dx": dx, "dy": dy, "buttons": list(held),
                      "newButtons": list(new)},
            "keyboard": {"keys": list(keys)}, "isGuiOpen": gui}
    if hotbar is not None:
        line["hotbar"] = hotbar
    return line


def parse(lines: list, missing_hotbar: str = "quarantine", end: str = "\n"):
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + end
    return parse_jsonl(text.encode(), "f.jsonl", missing_hotbar)


def names(p, i: int) -> list[str]:
    return [b for b, v in zip(BUTTONS, p.buttons[i], strict=True) if v]


def test_keys_mouse_buttons_and_camera_by_hand() -> None:
    p = parse([
        rec_line(keys=["key.keyboard.w", "key.keyboard.left.shift", "key.keyboard.x"]),
        rec_line(held=[1, 2, 3, 7]),
        rec_line(dx=3),
        rec_line(dy=-2.5),
        rec_line(keys=["key.keyboard.z"], held=[5]),  # unmapped only: a null step
        rec_line(keys=["key.keyboard.9", "key.keyboard.escape"], held=[0]),
    ])
    assert [names(p, i) for i in range(6)] == [
        ["forward", "sneak"], ["pickItem", "use"], [], [], [], ["ESC", "attack", "hotbar.9"]]
    assert p.camera.tolist() == [[0, 0], [0, 0], [0, 3 * CAMERA_DEG_PER_PIXEL],
                                 [-2.5 * CAMERA_DEG_PER_PIXEL, 0], [0, 0], [0, 0]]
    assert CAMERA_DEG_PER_PIXEL == 0.15
    assert p.null.tolist() == [False, False, False, False, True, False]


def test_the_stuck_attack_only_from_line_0_until_a_real_press() -> None:
    p = parse([rec_line(held=[0], new=[0]), rec_line(held=[0, 1], new=[1]),
               rec_line(held=[0], new=[0]), rec_line(held=[0])])
    assert p.stuck_lines == [0, 1]
    assert [names(p, i) for i in range(4)] == [[], ["use"], ["attack"], ["attack"]]
    assert p.null.tolist() == [True, False, False, False]
    # a press of 0 with another button on line 0 is no stuck attack; nor is [0] on a later line
    p = parse([rec_line(held=[0, 1], new=[0, 1]), rec_line(held=[0], new=[0])])
    assert p.stuck_lines == [] and names(p, 1) == ["attack"]
    p = parse([rec_line(), rec_line(held=[0], new=[0]), rec_line(held=[0])])
    assert p.stuck_lines == [] and names(p, 2) == ["attack"]


def test_the_hotbar_fix_after_the_null_test() -> None:
    p = parse([rec_line(hotbar=0), rec_line(hotbar=8), rec_line(hotbar=8), rec_line(hotbar=2),
               rec_line(hotbar=0)])
    assert [names(p, i) for i in range(5)] == [[], ["hotbar.9"], [], ["hotbar.3"], ["hotbar.1"]]
    assert p.null.tolist() == [True] * 5 and p.hotbar_fix is True
    p = parse([rec_line(hotbar=None), rec_line(hotbar=None)], "skip_fix")
    assert p.hotbar_fix is False and not p.buttons.any()
    with pytest.raises(SourceError) as e:
        parse([rec_line(hotbar=None), rec_line(hotbar=3)], "skip_fix")
    assert (e.value.where, e.value.reason) == ("f.jsonl line 1", "field 'hotbar' is present on "
                                               "some lines only")


@pytest.mark.parametrize("lines, where, reason", [
    ([rec_line(hotbar=None)], "line 0", "no hotbar field (recorder < 6.11): the hotbar fix needs "
     "it (option missing_hotbar: skip_fix reads it without the fix)"),
    ([rec_line(), rec_line(hotbar=None)], "line 1", "field 'hotbar' is present on some lines "
     "only"),
    ([rec_line(hotbar=-1)], "line 0", "field 'hotbar' must be a slot 0..8, got -1"),
    ([rec_line(hotbar=9)], "line 0", "field 'hotbar' must be a slot 0..8, got 9"),
    ([rec_line(hotbar=True)], "line 0", "field 'hotbar' must be int, got bool"),
    ([rec_line(hotbar=1.0)], "line 0", "field 'hotbar' must be int, got float"),
    ([rec_line(dx=True)], "line 0", "field 'mouse.dx' must be int or float, got bool"),
    ([rec_line(dy=float("inf"))], "line 0", "field 'mouse.dy' must be a finite number, got inf"),
    ([rec_line(held=[True])], "line 0", "field 'mouse.buttons' must be a list of int"),
    ([rec_line(new=[0.0])], "line 0", "field 'mouse.newButtons' must be a list of int"),
    ([rec_line(keys=[1])], "line 0", "field 'keyboard.keys' must be a list of str"),
    ([{**rec_line(), "isGuiOpen": 1}], "line 0", "field 'isGuiOpen' must be bool, got int"),
    ([{**rec_line(), "mouse": []}], "line 0", "no 'mouse.newButtons' field"),
    ([rec_line(), {**rec_line(), "keyboard": {}}], "line 1", "no 'keyboard.keys' field"),
    ([rec_line(gui=True, x="1")], "line 0", "field 'mouse.x' must be int or float, got str"),
    ([rec_line(), "7"], "line 1", "a line must be a JSON object, got int"),
    ([rec_line(), "[" * 100_000 + "]" * 100_000], "line 1", "not JSON this reader accepts: "
     "nested too deeply"),
    ([{"keyboard": {"keys": []}, "isGuiOpen": False, "hotbar": 0}], "line 0",
     "no 'mouse.newButtons' field"),
    ([{"mouse": rec_line()["mouse"], "isGuiOpen": False, "hotbar": 0}], "line 0",
     "no 'keyboard.keys' field"),
    ([{**rec_line(), "mouse": {"dx": 0, "dy": 0, "newButtons": []}}], "line 0",
     "no 'mouse.buttons' field"),
    ([{**rec_line(), "mouse": {**rec_line()["mouse"], "buttons": 0}}], "line 0",
     "field 'mouse.buttons' must be list, got int"),
    ([{**rec_line(gui=True), "mouse": {"dx": 0, "dy": 0, "buttons": [], "newButtons": [],
                                       "x": 1.0}}], "line 0", "no 'mouse.y' field"),
    ([rec_line(), "{"], "line 1", "not JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1))"),
])
def test_each_refusal_names_the_line_and_the_field(lines, where, reason) -> None:
    with pytest.raises(SourceError) as e:
        parse(lines)
    assert (e.value.where, e.value.reason) == (f"f.jsonl {where}", reason)


def test_line_ends_and_empty_files() -> None:
    assert len(parse([rec_line(), rec_line()], end="").null) == 2
    with pytest.raises(SourceError, match=r"^f.jsonl line 2: not JSON"):
        parse([rec_line(), rec_line()], end="\n  \n")  # only the last empty line is dropped
    for data in (b"", b"  "):
        with pytest.raises(SourceError) as e:
            parse_jsonl(data, "f.jsonl")
        assert (e.value.where, e.value.reason) == ("f.jsonl", "the jsonl has no lines")
    with pytest.raises(SourceError, match=r"^f.jsonl line 1: not JSON"):
        parse([rec_line(), "", rec_line()])  # an empty line inside the file


def test_null_mouse_or_keyboard_and_the_cursor_of_a_lost_mouse() -> None:
    gui = {**rec_line(gui=True), "mouse": None}
    p = parse([gui, rec_line(gui=True, x=100.5, y=7.0), rec_line(gui=True, x=5.0, y=6.0), gui,
               {**rec_line(keys=["key.keyboard.w"]), "keyboard": None}])
    assert p.null_input_lines == 3 and p.null.tolist() == [True] * 5
    assert p.cursors == [(0, 640.0, 360.0), (1, 100.5, 7.0), (2, 5.0, 6.0), (3, 5.0, 6.0)]
    assert all(type(c[1]) is float and type(c[2]) is float for c in p.cursors)
    p = parse([rec_line(gui=True, x=3, y=4)])
    assert p.cursors == [(0, 3.0, 4.0)] and type(p.cursors[0][1]) is float


# -- the cursor --------------------------------------------------------------------------------

ARROW = """\
###.............
#o#.............
#o#.............
#oo#............
#ooo#...........
#oooo#..........
#ooooo#.........
#oooooo#........
#ooooooo#.......
#oooooooo#......
#ooooooooo#.....
#oo#ooo####.....
#o#.#o#.........
#o#.#o#.........
#o#..#o#........
###..###........
"""  # the sprite (module doc): # black outline, o white inside, . transparent; tip at 0, 0


def test_the_sprite_is_a_white_arrow_in_a_black_outline() -> None:
    rgb, alpha = cursor_sprite()
    assert rgb.shape == (16, 16, 3) and alpha.shape == (16, 16, 1)
    assert rgb.dtype == alpha.dtype == np.float64
    want = np.array([list(row) for row in ARROW.splitlines()])
    assert np.array_equal(alpha[..., 0], (want != ".").astype(np.float64))
    white = np.broadcast_to((want == "o")[..., None], (16, 16, 3))
    assert np.array_equal(rgb, np.where(white, 255.0, 0.0))


def blend_by_hand(frame: np.ndarray, x0: int, y0: int) -> np.ndarray:
    out = frame.copy()
    rows = ARROW.splitlines()
    for r in range(16):
        for c in range(16):
            yy, xx = y0 + r, x0 + c
            if rows[r][c] == "." or not (0 <= yy < frame.shape[0] and 0 <= xx < frame.shape[1]):
                continue
            out[yy, xx] = 255 if rows[r][c] == "o" else 0
    return out


@pytest.mark.parametrize("h, w, x, y, corner", [
    (360, 640, 101.0, 51.0, (50, 25)),  # scale 0.5, truncated
    (720, 1280, 37.9, 2.2, (37, 2)),  # scale 1
    (360, 640, 1270.0, 700.0, (635, 350)),  # clipped right and bottom
    (360, 640, -9.0, -13.0, (-4, -6)),  # clipped left and top (int() truncates toward 0)
    (360, 640, 1278.0, 0.0, (639, 0)),  # one column left
    (360, 640, -30.0, 0.0, (-15, 0)),  # one (transparent) column left at the other edge
    (360, 640, 100.0, -30.0, (50, -15)),  # one row left at the top: the arrow's last row
])
def test_the_cursor_blend_matches_the_pixels_worked_out_by_hand(h, w, x, y, corner) -> None:
    frame = np.full((h, w, 3), 77, np.uint8)
    want = blend_by_hand(frame, *corner)
    draw_cursor(frame, x, y)
    assert frame.dtype == np.uint8 and np.array_equal(frame, want)


@pytest.mark.parametrize("x, y", [(-32.0, 0.0), (1280.0, 0.0), (0.0, -32.0), (0.0, 720.0),
                                  (1400.0, 800.0), (-40.0, 0.0), (0.0, -40.0), (-60.0, -60.0)])
def test_a_cursor_off_the_frame_draws_nothing(x, y) -> None:
    frame = np.full((360, 640, 3), 77, np.uint8)
    draw_cursor(frame, x, y)
    assert (frame == 77).all()


def test_half_transparent_blending_truncates() -> None:
    frame = np.full((4, 4, 3), 200, np.uint8)
    region = frame[0:2, 0:2]
    a, c = np.full((2, 2, 1), 0.5), np.full((2, 2, 3), 255.0)
    region[...] = (region * (1.0 - a) + c * a).astype(np.uint8)  # the documented formula
    assert frame[0, 0, 0] == 227  # int(100 + 127.5)


# -- steps and frames ---------------------------------------------------------------------------

def read(uri, **options) -> tuple[list[Episode], list[Rejected]]:
    eps, rej = [], []
    for item in open_source("vpt", str(uri), dataset="demo-vpt", options=options).read():
        (eps if isinstance(item, Episode) else rej).append(item)
    return eps, rej


@pytest.mark.parametrize("keep_null", [False, True])
def test_a_recording_becomes_one_episode_of_its_kept_lines(keep_null) -> None:
    rec = RECS[GUI]
    (ep,), rej = read(VPT / "data" / "8.0", keep_null=keep_null, frame_size=[36, 64])
    assert rej == []
    kept = rec["kept_keep_null" if keep_null else "kept_default"]
    n = len(kept)
    assert (ep.dataset, ep.task, ep.agent, ep.episode_id, ep.order) == (
        "demo-vpt", "build-house", "quiet-linen-heron", GUI, (0,))
    assert ep.action_kind == "mixed" and ep.discrete_action_dims == 23
    assert ep.actions.dtype == np.float32 and ep.actions.shape == (n, 25)
    want = [rec["actions"][str(i)] for i in kept]
    assert np.array_equal(ep.actions[:, :23], buttons_of([w["buttons"] for w in want]))
    assert np.array_equal(ep.actions[:, 23:], np.float32([w["camera"] for w in want]))
    assert ep.rewards.dtype == np.float32 and ep.rewards.tolist() == [0.0] * n
    assert (ep.is_terminal, ep.is_truncated, ep.return_) == (False, True, 0.0)
    assert ep.observation_kinds == {"image": "image"}
    frames = ep.observations["image"]
    assert frames.shape == (n, 36, 64, 3) and frames.dtype == np.uint8
    means = frames.reshape(n, -1, 3).mean(axis=1)
    assert np.abs(means - np.array(rec["frame_mean_rgb"])[kept]).max() < 3.0
    assert ep.source == {"uri": str(VPT / "data" / f"{GUI}.mp4"),
                         "actions": str(VPT / "data" / f"{GUI}.jsonl"), "relpath": GUI,
                         "recorder_version": "8.0", "lines": rec["lines"],
                         "null_dropped": 0 if keep_null else len(rec["null_lines"]),
                         "hotbar_fix": True, "null_input_lines": 0}


def test_recordings_with_absent_files_are_skipped_naming_them() -> None:
    src = open_source("vpt", str(VPT / "index.json"), dataset="demo-vpt")
    got = {}
    for unit in src.units():
        if unit.key in TRUTH["index"]["missing"]:
            (got[unit.key],) = src.read_unit(unit)
    assert set(got) == set(TRUTH["index"]["missing"])
    lynx = "7.6/hazy-cobalt-lynx-72223ab5a383-20220412-103003"
    stem = lynx.split("/")[1]
    r = got[lynx]
    assert (r.kind, r.task, r.location) == ("missing", "early-game",
                                            f"{VPT / 'data' / lynx} [{lynx}]")
    assert r.reason == f"recording skipped, files absent: video ({stem}.mp4), actions ({stem}.jsonl)"
    assert got["6.13/dapper-coral-stoat-fdec72129737-20220117-190542"].task == "free-play"


def copy_recording(tmp_path: Path, relpath: str = GUI) -> tuple[Path, Path]:
    folder = tmp_path / relpath.split("/")[0]
    folder.mkdir()
    stem = relpath.split("/")[1]
    for suffix in (".mp4", ".jsonl"):
        shutil.copy(VPT / "data" / f"{relpath}{suffix}", folder / f"{stem}{suffix}")
    return folder / f"{stem}.mp4", folder / f"{stem}.jsonl"


def test_a_recording_refused_whole_names_its_task_and_file(tmp_path) -> None:
    mp4, jsonl = copy_recording(tmp_path)
    jsonl.write_text((json.dumps(rec_line()) + "\n") * 3)
    (r,) = read(mp4.parent)[1]
    assert (r.kind, r.task, r.location) == ("unit", "build-house", str(jsonl))
    assert r.reason == ("every one of the 3 lines is a null step: nothing to keep (option "
                        "keep_null keeps them)")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_an_episode_that_fails_validation_is_named_by_its_recording(tmp_path) -> None:
    mp4, jsonl = copy_recording(tmp_path)
    jsonl.write_text(json.dumps(rec_line(dx=1e300)) + "\n")  # finite, beyond float32
    (r,) = read(mp4.parent)[1]
    assert r.location.startswith(f"{mp4} [8.0/{mp4.stem}]")


def test_an_unversioned_folder_and_a_task_option(tmp_path) -> None:
    stem = GUI.split("/")[1]
    for suffix in (".mp4", ".jsonl"):
        shutil.copy(VPT / "data" / f"{GUI}{suffix}", tmp_path / f"{stem}{suffix}")
    (ep,), _ = read(tmp_path, task="mine", frame_size=[18, 32])
    assert (ep.task, ep.episode_id) == ("mine", stem)
    assert ep.source["recorder_version"] is None


def test_decode_frames_keeps_chosen_steps_in_order_and_draws_before_resizing() -> None:
    rec = RECS[STUCK]  # 38 frames, 37 lines
    video = str(VPT / rec["files"]["video"])
    keep = np.zeros(rec["lines"], bool)
    keep[[0, 5, 36]] = True
    frames = decode_frames(video, rec["lines"], keep, [], None)
    assert frames.shape == (3, 360, 640, 3)
    means = frames.reshape(3, -1, 3).mean(axis=1)
    assert np.abs(means - np.array(rec["frame_mean_rgb"])[[0, 5, 36]]).max() < 3.0
    # a cursor on kept line 5 only, at the recorded size: visible in the same box after resizing
    plain = decode_frames(video, rec["lines"], keep, [], (180, 320)).astype(int)
    drawn = decode_frames(video, rec["lines"], keep, [(5, 400.0, 200.0), (1, 0.0, 0.0)],
                          (180, 320)).astype(int)
    # (an edited frame is converted to RGB before the resize: some levels apart at edges)
    changed = (np.abs(plain - drawn) > 16).any(axis=-1)
    assert not changed[0].any() and not changed[2].any()
    ys, xs = np.nonzero(changed[1][40:70, 90:120])  # box (200, 100) 11x16 -> (100, 50) halved
    assert 99 <= xs.min() + 90 <= 100 and 49 <= ys.min() + 40 <= 50
    assert 104 <= xs.max() + 90 <= 106 and 56 <= ys.max() + 40 <= 58


def test_a_video_one_frame_short_is_refused(tmp_path) -> None:
    rec = RECS[STUCK]
    video = str(VPT / rec["files"]["video"])
    keep = np.ones(rec["lines"] + 1, bool)
    assert len(decode_frames(video, rec["lines"] + 1, keep, [], (18, 32))) == rec["frames"]
    with pytest.raises(SourceError) as e:
        decode_frames(video, rec["lines"] + 2, np.ones(rec["lines"] + 2, bool), [], (18, 32))
    assert (e.value.where, e.value.reason) == (video, f"the video has {rec['frames']} frames "
                                               f"but the jsonl has {rec['lines'] + 2} lines "
                                               "(frame i is line i): a truncated video")

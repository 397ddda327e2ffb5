"""The VPT contractor-recording reader against the fixture's ground truth (issue 16).

The fixture (tests/fixtures/vpt, PROVENANCE.md) was written by a generator that plays the
recorder; its ground truth comes from the generator's scripts. Frame means within 3 levels,
buttons exact, camera in float degrees, the kept lines, the cursor boxes, skipped entries.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.errors import SourceError
from trajcorpus.schemas.catalog import TokenizeSettings
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources.base import open_source
from trajcorpus.sources.vpt import BUTTONS, decode_frames, minerl_actions, parse_jsonl
from trajcorpus.tokenizers import EpisodeTokenizer

VPT = Path(__file__).parent / "fixtures" / "vpt"
TRUTH = json.loads((VPT / "ground_truth.json").read_text())
RECS = TRUTH["recordings"]
OLD = "6.9/rustic-plum-badger-0c611332793f-20211202-083011"


def read(uri, **options) -> tuple[list[Episode], list[Rejected]]:
    eps, rej = [], []
    for item in open_source("vpt", str(uri), dataset="demo-vpt", options=options).read():
        (eps if isinstance(item, Episode) else rej).append(item)
    return eps, rej


def check_episode(ep: Episode, kept: list[int]) -> None:
    rec = RECS[ep.episode_id]
    assert ep.length == len(kept) and ep.action_kind == "mixed"
    assert ep.discrete_action_dims == 23 and ep.actions.shape == (len(kept), 25)
    frames = ep.observations["image"]
    assert frames.shape == (len(kept), 360, 640, 3) and frames.dtype == np.uint8
    means = frames.reshape(len(kept), -1, 3).mean(axis=1)
    assert np.abs(means - np.array(rec["frame_mean_rgb"])[kept]).max() < 3.0
    for j, line in enumerate(kept):
        want = rec["actions"][str(line)]
        got = [b for b, v in zip(BUTTONS, ep.actions[j, :23], strict=True) if v]
        assert got == want["buttons"], (ep.episode_id, line)
        np.testing.assert_allclose(ep.actions[j, 23:], want["camera"], rtol=1e-6, atol=1e-12)
    assert set(np.unique(ep.actions[:, :23])) <= {0.0, 1.0}


def test_index_default_drops_null_steps_and_quarantines_a_file_without_hotbar() -> None:
    eps, rej = read(VPT / "index.json")
    assert sorted(e.episode_id for e in eps) == sorted(set(TRUTH["index"]["present"]) - {OLD})
    for ep in eps:
        check_episode(ep, RECS[ep.episode_id]["kept_default"])
        assert ep.agent == ep.episode_id.split("/")[1].rsplit("-", 3)[0]
        assert ep.source["null_dropped"] == len(RECS[ep.episode_id]["null_lines"])
    missing = {r.location.rsplit(" [", 1)[1][:-1]: r for r in rej if r.kind == "missing"}
    assert set(missing) == set(TRUTH["index"]["missing"])
    assert missing["6.13/dapper-coral-stoat-fdec72129737-20220117-190542"].reason == \
        "recording skipped, files absent: video (dapper-coral-stoat-fdec72129737-" \
        "20220117-190542.mp4)"
    (old,) = [r for r in rej if r.kind != "missing"]
    assert old.location == str(VPT / "data" / f"{OLD}.jsonl") + " line 0"
    assert old.reason.startswith("no hotbar field (recorder < 6.11)") and "\n" not in old.message


def test_keep_null_and_skip_fix_read_every_line() -> None:
    eps, rej = read(VPT / "index.json", keep_null=True, missing_hotbar="skip_fix")
    assert sorted(e.episode_id for e in eps) == sorted(TRUTH["index"]["present"])
    assert {r.kind for r in rej} == {"missing"}
    for ep in eps:
        check_episode(ep, RECS[ep.episode_id]["kept_keep_null"])
    old = next(e for e in eps if e.episode_id == OLD)
    assert old.source["hotbar_fix"] is False and old.task == "free-play"


@pytest.mark.parametrize("relpath", sorted(RECS))
def test_the_rules_line_by_line(relpath) -> None:
    rec = RECS[relpath]
    parsed = parse_jsonl((VPT / rec["files"]["actions"]).read_bytes(), "x", "skip_fix")
    assert np.flatnonzero(parsed.null).tolist() == rec["null_lines"]
    assert np.flatnonzero(~parsed.null).tolist() == rec["kept_default"]
    assert parsed.stuck_lines == rec["attack_stuck_lines"]
    assert [c[0] for c in parsed.cursors] == rec["gui_open_lines"]
    # issue #54: the float camera differs from the reference's truncated one where it should
    for line, truncated in rec["camera_truncated_by_reference"].items():
        assert parsed.camera[int(line)].tolist() != truncated


@pytest.mark.parametrize("relpath", [r for r in sorted(RECS) if RECS[r]["cursor_boxes"]])
def test_the_cursor_is_drawn_in_its_box_on_gui_frames(relpath) -> None:
    rec = RECS[relpath]
    parsed = parse_jsonl((VPT / rec["files"]["actions"]).read_bytes(), "x", "skip_fix")
    keep = np.ones(rec["lines"], bool)
    video = str(VPT / rec["files"]["video"])
    plain = decode_frames(video, rec["lines"], keep, [], None).astype(int)
    drawn = decode_frames(video, rec["lines"], keep, parsed.cursors, None).astype(int)
    changed = (plain != drawn).any(axis=-1)
    for line in range(rec["lines"]):
        box = rec["cursor_boxes"].get(str(line))
        ys, xs = np.nonzero(changed[line])
        if box is None:
            assert not len(xs), line
            continue
        x0, y0, w, h = box
        assert xs.min() == x0 and ys.min() == y0  # the arrow's tip is the box corner
        assert xs.max() < x0 + w and ys.max() < y0 + h
        assert xs.max() >= x0 + min(w, 10) - 1 and ys.max() >= y0 + min(h, 15) - 1


def test_folder_mode_reports_a_jsonl_without_video_as_skipped() -> None:
    for folder, want in TRUTH["folders"].items():
        eps, rej = read(VPT / folder, missing_hotbar="skip_fix")
        assert [e.episode_id for e in eps] == want["recordings"]
        assert sorted(r.location.rsplit(" [", 1)[1][:-1] for r in rej) == \
            want["jsonl_without_video"]
        assert all(r.kind == "missing" for r in rej)


def test_the_trailing_frame_has_no_step() -> None:
    rec = RECS["6.13/mellow-slate-finch-121a96a25106-20220117-190042"]
    assert rec["frames"] == rec["lines"] + 1
    eps, _ = read(VPT / rec["folder"], keep_null=True)
    assert eps[0].length == rec["lines"]


def test_tokens_turn_back_into_minerl_actions() -> None:
    (ep,) = [e for e in read(VPT / "index.json")[0] if e.episode_id.startswith("8.0/")]
    tk = EpisodeTokenizer(TokenizeSettings(image_size=(128, 128)))
    discrete, camera = tk.decode_mixed_actions(tk.tokenize(ep), 23)
    actions = minerl_actions(discrete, camera)
    rec = RECS[ep.episode_id]
    for a, line in zip(actions, rec["kept_default"], strict=True):
        want = rec["actions"][str(line)]
        assert sorted(b for b in BUTTONS if a[b]) == want["buttons"]
        assert set(a) == {*BUTTONS, "camera"}
        # the bin centre: within 1 % of the degrees (a zero camera decodes to +-1e-4 degrees)
        assert np.abs(a["camera"] - want["camera"]).max() <= \
            0.01 * np.abs(want["camera"]).max() + 3e-3
    with pytest.raises(SourceError, match="expected"):
        minerl_actions(discrete[:, :5], camera)
    clipped = minerl_actions(np.zeros((1, 23), np.int64), np.float32([[180.95, -180.95]]))
    assert clipped[0]["camera"].tolist() == [180.0, -180.0]


def test_frame_size_resizes_while_decoding() -> None:
    eps, _ = read(VPT / "data" / "8.0", frame_size=[128, 128])
    rec = RECS[eps[0].episode_id]
    frames = eps[0].observations["image"]
    assert frames.shape[1:] == (128, 128, 3)
    means = frames.reshape(len(frames), -1, 3).mean(axis=1)
    assert np.abs(means - np.array(rec["frame_mean_rgb"])[rec["kept_default"]]).max() < 3.0


def test_unknown_options_are_refused() -> None:
    with pytest.raises(SourceError, match="vpt option 'keep_nulls'"):
        open_source("vpt", str(VPT / "index.json"), options={"keep_nulls": True})


def test_index_on_gcs(gcs) -> None:
    uri = gcs.upload(VPT, "vpt")
    eps, rej = read(f"{uri}/index.json")
    assert sorted(e.episode_id for e in eps) == sorted(set(TRUTH["index"]["present"]) - {OLD})
    assert sorted(r.kind for r in rej) == ["missing", "missing", "unit"]
    for ep in eps:
        check_episode(ep, RECS[ep.episode_id]["kept_default"])


# --- bad input: mutated copies, never a crash ---------------------------------------------------

GOOD = "7.6/brisk-amber-otter-2fb9581649fd-20220412-101503"


def copy_recording(tmp_path: Path, relpath: str = GOOD) -> tuple[Path, Path]:
    folder = tmp_path / relpath.split("/")[0]
    folder.mkdir(parents=True, exist_ok=True)
    stem = relpath.split("/")[1]
    for suffix in (".mp4", ".jsonl"):
        shutil.copy(VPT / "data" / f"{relpath}{suffix}", folder / f"{stem}{suffix}")
    return folder / f"{stem}.mp4", folder / f"{stem}.jsonl"


def lines_of(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text().splitlines()]


def write_lines(path: Path, lines: list) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def one_rejection(folder: Path, **options) -> Rejected:
    eps, rej = read(folder, **options)
    assert not eps and len(rej) == 1 and "\n" not in rej[0].message
    return rej[0]


def test_null_mouse_or_keyboard_is_no_input_on_that_tick(tmp_path) -> None:
    mp4, jsonl = copy_recording(tmp_path)
    lines = lines_of(jsonl)
    lines[0]["keyboard"] = None  # line 0: forward + camera; keyboard lost -> camera only
    lines[1]["mouse"] = None  # line 1: forward + camera; mouse lost -> forward only
    write_lines(jsonl, lines)
    (ep,) = read(mp4.parent, keep_null=True)[0]
    assert ep.source["null_input_lines"] == 2
    want = RECS[GOOD]["actions"]
    assert [b for b, v in zip(BUTTONS, ep.actions[0, :23], strict=True) if v] == ["hotbar.4"]
    np.testing.assert_allclose(ep.actions[0, 23:], want["0"]["camera"], rtol=1e-6)
    assert [b for b, v in zip(BUTTONS, ep.actions[1, :23], strict=True) if v] == ["forward"]
    assert (ep.actions[1, 23:] == 0).all()


@pytest.mark.parametrize("mutate, where, words", [
    (lambda ls: ls.__setitem__(7, "not json"), "line 7", "not JSON (Expecting value"),
    (lambda ls: ls.__setitem__(8, "[" * 100_000 + "]" * 100_000), "line 8",
     "nested too deeply"),
    (lambda ls: ls.__setitem__(3, [1, 2]), "line 3", "a line must be a JSON object, got list"),
    (lambda ls: ls[4]["mouse"].__setitem__("dx", "12"), "line 4", "field 'mouse.dx' must be int "
     "or float, got str"),
    (lambda ls: ls[4]["mouse"].__setitem__("dy", float("nan")), "line 4", "field 'mouse.dy' "
     "must be a finite number, got nan"),
    (lambda ls: ls[5]["keyboard"].__setitem__("keys", [3]), "line 5", "field 'keyboard.keys' "
     "must be a list of str"),
    (lambda ls: ls[6].pop("isGuiOpen"), "line 6", "no 'isGuiOpen' field"),
    (lambda ls: ls[9].pop("hotbar"), "line 9", "field 'hotbar' is present on some lines only"),
    (lambda ls: ls[2].__setitem__("hotbar", 9), "line 2", "must be a slot 0..8, got 9"),
])
def test_bad_lines_quarantine_the_recording(tmp_path, mutate, where, words) -> None:
    mp4, jsonl = copy_recording(tmp_path)
    lines = lines_of(jsonl)
    mutate(lines)
    jsonl.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    r = one_rejection(mp4.parent)
    assert r.location == f"{jsonl} {where}" and words in r.reason and r.kind == "unit"


def test_a_video_shorter_than_its_jsonl_is_quarantined(tmp_path) -> None:
    mp4, jsonl = copy_recording(tmp_path)
    shutil.copy(VPT / "data" / f"{OLD}.mp4", mp4)  # 30 frames for 50 lines
    r = one_rejection(mp4.parent, keep_null=True)
    assert r.location == str(mp4)
    assert r.reason == "the video has 30 frames but the jsonl has 50 lines (frame i is line i): " \
                       "a truncated video"


def test_an_unreadable_mp4_is_quarantined(tmp_path) -> None:
    mp4, _ = copy_recording(tmp_path)
    mp4.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    r = one_rejection(mp4.parent)
    # opened by the shared video reader (sources/video.py): FFmpeg's reason without errno/path
    assert r.location == str(mp4) and \
        r.reason == "cannot open video: Invalid data found when processing input"


def test_a_recording_of_null_steps_only_is_quarantined(tmp_path) -> None:
    mp4, jsonl = copy_recording(tmp_path)
    write_lines(jsonl, [lines_of(jsonl)[3]] * 4)
    r = one_rejection(mp4.parent)
    assert r.reason.startswith("every one of the 4 lines is a null step")


@pytest.mark.parametrize("index, words", [
    ("[1, 2]", "an index must be a JSON object"),
    ('{"basedir": "data/", "relpaths": ["../x"]}', "relpaths[0] must be a relative path"),
    ("{nope", "not a JSON index: Expecting property name"),
    ("[" * 5000 + "]" * 5000, "JSON nested deeper than the limit"),
])
def test_bad_index_files_name_the_index(tmp_path, index, words) -> None:
    path = tmp_path / "index.json"
    path.write_text(index)
    with pytest.raises(SourceError) as e:
        read(path)
    assert str(path) in str(e.value) and words in str(e.value)


def test_an_empty_folder_names_the_folder(tmp_path) -> None:
    with pytest.raises(SourceError, match="no VPT recordings"):
        read(tmp_path)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (what fsspec's HTTP reads need); quiet."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start, _, end = rng.removeprefix("bytes=").partition("-")
        a, b = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {a}-{b}/{len(data)}")
        self.send_header("Content-Length", str(b - a + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[a:b + 1])


def test_index_with_an_http_basedir(tmp_path) -> None:
    handler = functools.partial(_RangeHandler, directory=str(VPT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/data/"
        index = json.loads((VPT / "index.json").read_text()) | {"basedir": base}
        (tmp_path / "index.json").write_text(json.dumps(index))
        eps, rej = read(tmp_path / "index.json")
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(e.episode_id for e in eps) == sorted(set(TRUTH["index"]["present"]) - {OLD})
    assert sorted(r.kind for r in rej) == ["missing", "missing", "unit"]
    for ep in eps:
        assert ep.source["uri"].startswith(base)
        check_episode(ep, RECS[ep.episode_id]["kept_default"])

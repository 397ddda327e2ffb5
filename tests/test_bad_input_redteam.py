"""Red-team pass on issue 12: inputs that still read *cleanly but wrongly* (no traceback, yet a
silent choice), found by probes built outside the adversarial corpus and the fuzzer.

The class: a value the file declares as a flag, a discount, a step marker, or a name tying two
members together, was taken on trust (``astype(bool)``, ``== 0``, "the .txt wins"). Each input
here is a trimmed good fixture (``make_corpus.build_clean``) with one such value broken; the
outcome must be a rejection that names the file, the field and the reason, with every other
record read unchanged. See docs/reliability.md, "Red-team pass".
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "adversarial"))
from make_corpus import (  # noqa: E402
    RLDS_SHARD,
    RLU_FILE,
    build_clean,
    frame,
    parse_example,
    read_tfrecord,
    serialize_example,
    write_tfrecord,
)

from test_bad_input_classes import read, texts  # noqa: E402
from trajcorpus.cli import main  # noqa: E402
from trajcorpus.errors import SourceError  # noqa: E402
from trajcorpus.sources.metadata import discount_array, flag_array  # noqa: E402


def clean(kind: str, tmp_path: Path, variant: str = ""):
    built = build_clean(kind, tmp_path / "in", variant)
    good = read(kind, built.uri, built.options)
    assert all(r.kind == "missing" for r in good[1]) and good[2] is None  # img2dataset's 404
    return built.uri, good[0]


def same_except(episodes, good, dropped: set[str]) -> None:
    """The survivors are exactly the good records minus ``dropped``, unchanged."""
    want = [e for e in good if e.episode_id not in dropped]
    assert [e.episode_id for e in episodes] == [e.episode_id for e in want]
    for a, b in zip(episodes, want, strict=True):
        assert np.array_equal(a.rewards, b.rewards) and a.return_ == b.return_


# -- the shared gates ------------------------------------------------------------------------------

@pytest.mark.parametrize("values, expect", [
    (np.array([True, False]), [True, False]),
    (np.array([0, 1, 1], np.int64), [False, True, True]),
    (np.array([0.0, 1.0], np.float32), [False, True]),
    (np.zeros((0,), np.uint8), []),
])
def test_flag_array_accepts_bools_and_exact_zero_one(values, expect):
    assert flag_array(values, "f").tolist() == expect


@pytest.mark.parametrize("values, reason", [
    (np.array([0, 2]), "flag value 2 at step 1 is not 0 or 1"),
    (np.array([0.5, 0.0]), "flag value 0.5 at step 0 is not 0 or 1"),
    (np.array([0.0, np.nan]), "flag value nan at step 1 is not 0 or 1"),
    (np.array([-1, 0]), "flag value -1 at step 0 is not 0 or 1"),
    (np.array([b"1"]), "flags must be booleans or 0/1, got dtype |S1"),
])
def test_flag_array_refuses_what_astype_bool_would_invent(values, reason):
    with pytest.raises(SourceError) as e:
        flag_array(values, "f.h5", key="terminals")
    assert str(e.value) == f"f.h5 [terminals]: {reason}"


def test_flag_array_names_rows_of_a_flat_file_slice():
    with pytest.raises(SourceError, match=r"flag value 3 at row 102 is not 0 or 1"):
        flag_array(np.array([0, 0, 3]), "f.h5", first=100, unit="row")


@pytest.mark.parametrize("value", [np.nan, np.inf, -0.5, 1.5])
def test_discount_array_refuses_non_discounts(value):
    with pytest.raises(SourceError, match=r"discount .* at step 1 is not in \[0, 1\]"):
        discount_array(np.array([1.0, value, 0.0]), "f")
    assert discount_array(np.array([1.0, 0.25, 0.0]), "f").dtype == np.float32


# -- flags stored as numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [("terminations", 0.5), ("truncations", 2)])
def test_minari_flag_that_is_not_zero_or_one_is_quarantined(tmp_path, name, value):
    uri, good = clean("minari", tmp_path)
    path = next(Path(tmp_path / "in").rglob("main_data.hdf5"))
    with h5py.File(path, "r+") as f:
        g = f["episode_3"]
        flags = g[name][()].astype(np.float64 if isinstance(value, float) else np.int64)
        flags[0] = value
        del g[name]
        g.create_dataset(name, data=flags)
    episodes, rejected, error = read("minari", uri)
    assert error is None and len(rejected) == 1
    assert rejected[0].message == (f"{path} [episode_3/{name}]: flag value {value!r} at step 0 "
                                   "is not 0 or 1")
    same_except(episodes, good, {good[3].episode_id})


@pytest.mark.parametrize("name, value", [("terminals", 0.5), ("timeouts", 7)])
def test_d4rl_flag_that_is_not_zero_or_one_is_refused_naming_the_row(tmp_path, name, value):
    uri, _ = clean("d4rl", tmp_path)
    with h5py.File(uri, "r+") as f:
        flags = f[name][()].astype(np.float32 if isinstance(value, float) else np.int64)
        flags[20] = value
        del f[name]
        f.create_dataset(name, data=flags)
    episodes, rejected, error = read("d4rl", uri)
    assert f"{uri} [{name}]: flag value {value!r} at row 20 is not 0 or 1" in texts(rejected,
                                                                                     error)


def _edit_records(path: Path, index: int, edit) -> None:
    frames, gz = read_tfrecord(path)
    ex = parse_example(frames[index])
    edit(ex)
    frames = list(frames)
    frames[index] = serialize_example(ex)
    write_tfrecord(path, [frame(r) for r in frames], gz)


def _set(key: str, change):
    def edit(ex: dict) -> None:
        kind, values = ex[key]
        values = np.array(values, copy=True)
        change(values)
        ex[key] = (kind, values)
    return edit


@pytest.mark.parametrize("key, change, reason", [
    ("steps/is_terminal", lambda v: v.fill(5), "flag value 5 at step 0 is not 0 or 1"),
    ("steps/is_first", lambda v: v.__setitem__(0, 2), "flag value 2 at step 0 is not 0 or 1"),
    ("steps/is_first", lambda v: v.__setitem__(0, 0),
     "the first stored step is not marked is_first"),
    ("steps/is_first", lambda v: v.__setitem__(10, 1),
     "step 10 is marked is_first: a new episode starts inside this record"),
    ("steps/is_last", lambda v: v.__setitem__(10, 1),
     "step 10 is marked is_last, before the last stored step"),
])
def test_rlds_step_markers_must_say_one_episode(tmp_path, key, change, reason):
    uri, good = clean("rlds", tmp_path)
    _edit_records(Path(uri) / RLDS_SHARD, 1, _set(key, change))
    episodes, rejected, error = read("rlds", uri)
    assert error is None and len(rejected) == 1
    assert f"{RLDS_SHARD} @ offset" in rejected[0].message
    assert f"[{key}]: {reason}" in rejected[0].message
    same_except(episodes, good, {good[1].episode_id})


@pytest.mark.parametrize("change, reason", [
    (lambda v: v.__setitem__(3, np.nan), "discount nan at step 3 is not in [0, 1]"),
    (lambda v: v.fill(2.0), "discount 2.0 at step 0 is not in [0, 1]"),
    (lambda v: v.__setitem__(3, 0.0), "discount 0 (episode end) at step 3, before the last"),
])
def test_rlu_discounts_are_checked_before_they_decide_the_end(tmp_path, change, reason):
    uri, good = clean("rlu-atari", tmp_path)
    _edit_records(Path(uri) / RLU_FILE, 1, _set("discounts", change))
    episodes, rejected, error = read("rlu-atari", uri)
    assert error is None and len(rejected) == 1
    assert "[discounts]: " + reason in rejected[0].message
    same_except(episodes, good, {good[1].episode_id})


# -- an incomplete Minari Arrow episode ------------------------------------------------------------

@pytest.mark.parametrize("damage, reason", [
    ("drop", "episode 3: no part-0.arrow file (an incomplete copy?)"),
    ("gap", "episode 3: parts [0, 2] are not numbered 0..1 (a part is missing)"),
])
def test_minari_arrow_episode_folder_without_its_parts_is_not_skipped(tmp_path, damage, reason):
    uri, good = clean("minari", tmp_path, "arrow")
    folder = next(p for p in Path(tmp_path / "in").rglob("3") if p.is_dir())
    part = folder / "part-0.arrow"
    if damage == "drop":
        part.unlink()
    else:
        part.rename(folder / "part-2.arrow")
        (folder / "part-0.arrow").write_bytes((folder / "part-2.arrow").read_bytes())
    episodes, rejected, error = read("minari", uri)
    assert error is None and len(rejected) == 1
    assert rejected[0].message == f"{folder}: {reason}"
    same_except(episodes, good, {e.episode_id for e in good if e.episode_id.endswith("_3")})


def test_cli_names_the_incomplete_arrow_episode_in_one_line(tmp_path, capsys):
    uri, _ = clean("minari", tmp_path, "arrow")
    folder = next(p for p in Path(tmp_path / "in").rglob("3") if p.is_dir())
    (folder / "part-0.arrow").unlink()
    assert main(["episodes", "--kind", "minari", "--input", uri, "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"trajcorpus: error: {folder}: episode 3: no part-0.arrow file (an incomplete copy?)"


# -- names that tie two things together --------------------------------------------------------------

def test_coco_file_shared_by_two_image_ids_is_never_paired(tmp_path):
    uri, good = clean("coco-captions", tmp_path)
    ann = Path(uri) / "annotations" / "captions_train2017.json"
    doc = json.loads(ann.read_text())
    a, b = doc["images"][0], doc["images"][1]
    b["file_name"] = a["file_name"]
    ann.write_text(json.dumps(doc))
    episodes, rejected, error = read("coco-captions", uri)
    assert error is None
    for img, other in ((a, b), (b, a)):
        n = sum(1 for x in doc["annotations"] if x["image_id"] == img["id"])
        hits = [r for r in rejected if f"image_id {img['id']}'s file_name" in r.reason]
        assert len(hits) == n and n >= 1
        assert all(f"is also the file of image id(s) [{other['id']}]" in r.reason for r in hits)
        assert all(f"{ann} [annotation " in r.location for r in hits)
    bad = {str(a["id"]), str(b["id"])}
    assert all(e.source.get("image_id", e.episode_id) not in bad for e in episodes)
    assert len(episodes) + len(rejected) == len(good)


def _edit_member(uri: str, name: str, edit) -> None:
    path = Path(uri) / "00000.tar"
    with tarfile.open(path) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    with tarfile.open(path, "w") as t:
        for m, data in members:
            if m.name == name:
                data = edit(data)
                m.size = len(data)
            t.addfile(m, None if data is None else io.BytesIO(data))


@pytest.mark.parametrize("field, value, reason", [
    ("key", "0000005", "[0000001.json]: the member's own key '0000005' differs from its name"),
    ("caption", "A different picture.", "[0000001]: 0000001.txt and 0000001.json hold different "
                                        "captions"),
])
def test_img2dataset_member_json_of_another_sample_is_quarantined(tmp_path, field, value, reason):
    uri, good = clean("img2dataset", tmp_path)

    def edit(data: bytes) -> bytes:
        meta = json.loads(data)
        meta[field] = value
        return json.dumps(meta).encode()
    _edit_member(uri, "0000001.json", edit)
    episodes, rejected, error = read("img2dataset", uri)
    assert error is None
    hits = [r for r in rejected if r.kind != "missing"]
    assert len(hits) == 1 and reason in hits[0].message
    same_except(episodes, good, {"0000001"})

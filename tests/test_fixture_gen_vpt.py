"""The VPT fixture generator is deterministic and the committed fixture is what it writes.

Only the text half (jsonl, options, index, ground truth) is regenerated here; the mp4 files need
x264 time and are checked by the reader's tests against ground_truth.json.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "vpt"


def _generator():
    spec = importlib.util.spec_from_file_location("vpt_recordings", REPO / "tools" / "fixture-gen" / "vpt_recordings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _text_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".jsonl", ".json")}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    gen = _generator()
    a, b = tmp_path_factory.mktemp("vpt_a"), tmp_path_factory.mktemp("vpt_b")
    gen.write_fixture(a, videos=False)
    gen.write_fixture(b, videos=False)
    return a, b


def test_same_bytes_twice(generated):
    a, b = generated
    files_a, files_b = _text_files(a), _text_files(b)
    assert len(files_a) == 12  # 4 recordings x (jsonl + options), a partial upload's 2, index, truth
    assert files_a == files_b


def test_committed_fixture_matches_generator(generated):
    a, _ = generated
    fresh, committed = _text_files(a), _text_files(FIXTURE)
    assert set(fresh) == set(committed)
    for name, data in fresh.items():
        if name != "ground_truth.json":
            assert data == committed[name], name
    truth_new = json.loads(fresh["ground_truth.json"])
    truth_old = json.loads(committed["ground_truth.json"])
    for rec in truth_new["recordings"].values():  # float means may differ in the last digit elsewhere
        old = truth_old["recordings"][rec["relpath"]]
        np.testing.assert_allclose(rec.pop("frame_mean_rgb"), old.pop("frame_mean_rgb"), atol=1e-3)
    assert truth_new == truth_old
    for rec in truth_old["recordings"].values():
        assert (FIXTURE / rec["files"]["video"]).stat().st_size > 0


def test_ground_truth_follows_the_scripts():
    """Spot checks of the traps the fixture exists for, stated independently of the generator."""
    truth = json.loads((FIXTURE / "ground_truth.json").read_text())
    recs = {r["recorder_version"]: r for r in truth["recordings"].values()}
    a, b, c, d = recs["7.6"], recs["8.0"], recs["6.13"], recs["6.9"]
    assert a["actions"]["0"] == {"buttons": ["forward", "hotbar.4"], "camera": [0.0, 5.625]}
    assert a["camera_truncated_by_reference"]["0"] == [0, 5]  # issue #54
    assert 10 in a["null_lines"] and a["actions"]["10"]["buttons"] == ["hotbar.6"]  # scroll on a null tick
    assert a["actions"]["15"]["buttons"] == ["forward", "hotbar.5"]  # scroll while walking
    assert c["attack_stuck_lines"] == list(range(11)) and c["actions"]["11"]["buttons"] == ["attack"]
    assert c["frames"] == c["lines"] + 1 and c["kept_keep_null"] == list(range(c["lines"]))
    assert b["cursor_boxes"]["27"] == [635, 354, 5, 6]
    assert d["hotbar_field"] == "absent" and d["reference_loader"].startswith("KeyError")
    missing = truth["index"]["missing"]
    assert len(missing) == 2 and all("video" in parts for parts in missing.values())
    assert sorted(missing) == sorted(set(truth["index"]["relpaths"]) - set(truth["index"]["present"]))
    for rec in truth["recordings"].values():
        assert rec["kept_default"] == [i for i in range(rec["lines"]) if i not in rec["null_lines"]]
        assert len(rec["frame_mean_rgb"]) == rec["frames"]

"""``trajcorpus run --dataset demo-vpt``: shards with image patches, discrete button tokens and
continuous camera tokens (issue 16); the card and the trainer info decode the mixed actions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from trajcorpus.cli import main
from trajcorpus.tokenizers import CONTINUOUS_OFFSET, NUM_BINS, PATCH, Modality

REPO = Path(__file__).resolve().parents[1]
TRUTH = json.loads((REPO / "tests/fixtures/vpt/ground_truth.json").read_text())
ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vpt") / "out"
    assert main(["run", "--catalog", str(REPO / "catalog.yaml"), "--dataset", "demo-vpt",
                 "--output", str(out), "--quiet", *ONE_WORKER]) == 0
    return out


def examples(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    rows = []
    for f in manifest["files"]:
        if f["config"] == "demo-vpt" and f["format"] == "parquet":
            rows += pq.read_table(out / f["path"]).to_pylist()
    return rows


def test_the_shards_hold_patches_buttons_and_camera_tokens(out) -> None:
    rows = examples(out)
    assert rows
    steps = 0
    for r in rows:
        tokens, modality = np.asarray(r["tokens"]), np.asarray(r["modality"])
        patches = np.frombuffer(r["patches"], np.uint8).reshape(r["patches_shape"])
        assert patches.shape[1:] == (PATCH, PATCH, 3)
        assert (modality == Modality.IMAGE).sum() == patches.shape[0]
        sep = np.flatnonzero(modality == Modality.SEPARATOR)
        steps += len(sep)
        for s in sep:
            assert (modality[s - 64:s] == Modality.IMAGE).all()  # 128x128 = 8 x 8 patches
            act = tokens[s + 1:s + 26]
            assert (modality[s + 1:s + 26] == Modality.ACTION).all()
            assert set(act[:23].tolist()) <= {0, 1}
            assert ((act[23:] >= CONTINUOUS_OFFSET) &
                    (act[23:] < CONTINUOUS_OFFSET + NUM_BINS)).all()
    kept = sum(len(TRUTH["recordings"][p]["kept_default"]) for p in TRUTH["index"]["present"]
               if TRUTH["recordings"][p]["hotbar_field"] == "present")
    assert steps == kept  # every kept step once (no prompts: tasks hold one episode each)


def test_the_audit_lists_the_skipped_and_the_quarantined(out) -> None:
    rows = [json.loads(s) for s in (out / "audit/demo-vpt.rejected.jsonl").read_text().split("\n")
            if s]
    kinds = sorted(r["kind"] for r in rows)
    assert kinds == ["missing", "missing", "unit"]
    (unit,) = [r for r in rows if r["kind"] == "unit"]
    assert "no hotbar field (recorder < 6.11)" in unit["reason"]


def test_trainer_info_and_card_decode_mixed_actions(out) -> None:
    from trajcorpus.cards.decode import decode_example
    from trajcorpus.shards.stats import load_stats

    info = load_stats(str(out), "demo-vpt")
    rows = examples(out)
    row = next(r for r in rows if json.loads(r["meta"])["task"] == "build-house")
    tokens, modality = np.asarray(row["tokens"]), np.asarray(row["modality"])
    act = tokens[modality == Modality.ACTION].reshape(-1, 25)
    decoded = info.decode_actions(act, "build-house")
    assert decoded.names[:2] == ["ESC", "attack"] and decoded.names[-2:] == ["camera/pitch",
                                                                             "camera/yaw"]
    assert (decoded.values[:, :23] == act[:, :23]).all()
    rec = TRUTH["recordings"]["8.0/quiet-linen-heron-879997e26d5f-20220315-122354"]
    first = json.loads(row["meta"])["first_step"]
    want = np.array([rec["actions"][str(k)]["camera"] for k in rec["kept_default"]])
    want = want[first:first + len(act)]
    assert np.abs(decoded.values[:, 23:] - want).max() <= 0.01 * np.abs(want).max() + 3e-3
    ex = {k: row[k] for k in ("tokens", "modality", "is_prompt", "meta")}
    ex["patches"] = np.frombuffer(row["patches"], np.uint8).reshape(row["patches_shape"])
    ex["patch_position"] = np.asarray(row["patch_position"]).reshape(-1, 2)
    seq = decode_example(ex)
    step = next(s for s in seq.steps if len(s.actions))
    assert step.action_kind == "mixed" and step.actions.dtype == np.float32
    assert (out / "README.md").read_text().count("demo-vpt") > 0


def test_the_manifest_has_statistics_of_the_mixed_actions(out) -> None:
    from trajcorpus.shards.stats import load_stats

    info = load_stats(str(out), "demo-vpt")
    s = info.field("actions", "build-house")
    rec = TRUTH["recordings"]["8.0/quiet-linen-heron-879997e26d5f-20220315-122354"]
    kept = [rec["actions"][str(k)] for k in rec["kept_default"]]
    camera = np.array([a["camera"] for a in kept])
    presses = np.array([[b in a["buttons"] for b in info.names("build-house", "actions")[:23]]
                        for a in kept], float)
    np.testing.assert_allclose(s["mean"][23:], camera.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(s["mean"][:23], presses.mean(axis=0), rtol=1e-6)
    assert s["count"] == len(kept)


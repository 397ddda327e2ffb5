"""The job writes what a trainer needs (issue 18), on the bundled demo configs of catalog.yaml.

Every config with actions gets, per kept task: raw-value statistics equal to NumPy's over the
kept episodes' arrays as the reader returns them; reference scores with their source (the corpus's
own expert return and threshold always, random and expert/human ends where the catalog or the
source's metadata has them); names for every continuous dimension and every discrete action, with
their source. The examples' ``meta`` carries the normalised score, the loaders decode action tokens
into named actions, the card shows the tables, and one or two workers give the same statistics.
The output is the session's demo output (conftest's ``demo_workspace``: every config with actions
and an image-caption one); docs/statistics-and-semantics.md's snippets run in tests/test_docs_run.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import DEMO_CONFIGS
from trajcorpus.pipelines import run_job
from trajcorpus.schemas.catalog import load_catalog
from trajcorpus.schemas.stats import QUANTILE_NAMES, QUANTILES
from trajcorpus.semantics.atari import ALE_ACTIONS
from trajcorpus.shards import ShardDataset, load_stats
from trajcorpus.sources import open_source
from trajcorpus.tokenizers.scheme import Modality

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "catalog.yaml"
TWO = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
WITH_ACTIONS = ("demo-minari", "demo-d4rl", "demo-dqn-replay", "demo-rlu-atari", "demo-rlds")
LITERATURE = {"demo-d4rl", "demo-dqn-replay", "demo-rlu-atari"}  # catalog reference blocks
MINARI_META = REPO / "tests/fixtures/mujoco/minari/trajcorpus-fixtures"


@pytest.fixture(scope="module")
def out(demo_workspace) -> Path:
    assert set(DEMO_CONFIGS) >= {*WITH_ACTIONS, "demo-hf-image-parquet"}
    return demo_workspace.out


@pytest.fixture(scope="module")
def manifest(out) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _info(manifest: dict, config: str) -> dict:
    return manifest["configs"][config]["info"]


def _kept(out: Path, config: str) -> set[str]:
    rows = (out / "audit" / f"{config}.episodes.jsonl").read_text().splitlines()
    return {r["episode_id"] for r in map(json.loads, rows) if r["kept"]}


def _episodes(config: str) -> list:
    cat = load_catalog(str(CATALOG))
    entry = cat.get(config)
    return list(open_source(entry.kind, cat.uri_of(entry), dataset=config, options=entry.options,
                            task_template=entry.task, agent_template=entry.agent).episodes())


def _examples(out: Path, manifest: dict, config: str) -> list[dict]:
    rows = []
    for f in manifest["files"]:
        if f["config"] == config and f["format"] == "parquet":
            rows += pq.read_table(out / f["path"]).to_pylist()
    return rows


@pytest.mark.parametrize("config", ["demo-minari", "demo-d4rl", "demo-rlds"])
def test_statistics_equal_numpy_over_the_kept_episodes(out, manifest, config):
    stats = _info(manifest, config)["statistics"]
    kept = _kept(out, config)
    by_task: dict[str, list] = {}
    for ep in _episodes(config):
        if ep.episode_id in kept:
            by_task.setdefault(ep.task, []).append(ep)
    assert sorted(stats["tasks"]) == sorted(by_task)
    for task, eps in by_task.items():
        fields = {n for n, k in eps[0].observation_kinds.items() if k == "continuous"}
        assert set(stats["tasks"][task]) == fields | {"actions"}
        for field in fields | {"actions"}:
            x = np.concatenate([np.asarray(e.actions if field == "actions" else
                                           e.observations[field], np.float64).reshape(e.length, -1)
                                for e in eps])
            s = stats["tasks"][task][field]
            assert s["count"] == x.shape[0] and s["quantiles"] == "exact"
            np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(s["min"], x.min(0))
            np.testing.assert_array_equal(s["max"], x.max(0))
            for name, q in zip(QUANTILE_NAMES, QUANTILES, strict=True):
                np.testing.assert_array_equal(s[name],
                                              np.quantile(x, q, axis=0, method="inverted_cdf"))


@pytest.mark.parametrize("config", WITH_ACTIONS)
def test_reference_scores_and_names_for_every_demo_config(out, manifest, config):
    info = _info(manifest, config)
    audit = json.loads((out / "audit" / f"{config}.json").read_text())
    ref = info["reference"]
    assert sorted(ref) == sorted(audit)
    for task, r in ref.items():
        assert r["expert_return"] == audit[task]["expert_return"] is not None
        assert r["threshold"] == audit[task]["threshold"]
        if config in LITERATURE or config == "demo-minari":
            assert r["random"] is not None and r["expert"] is not None
            assert r["source"], (config, task)
    sem = info["semantics"]
    assert sorted(sem) == sorted(info["statistics"]["tasks"]) and sem
    for task, fields in sem.items():
        assert "actions" in fields
        for name, d in fields.items():
            if d["kind"] in ("continuous", "discrete") and d["shape"] is not None:
                assert d["names"] and d["source"], (config, task, name)
            if d["kind"] == "continuous":
                assert len(d["names"]) == math.prod(d["shape"]), (config, task, name)


def test_source_specific_semantics_and_references(manifest):
    minari = _info(manifest, "demo-minari")
    hopper_meta = json.loads((MINARI_META / "hopper/mixed-v0/data/metadata.json").read_text())
    r = minari["reference"]["Hopper-v5"]
    assert (r["random"], r["expert"]) == (hopper_meta["ref_min_score"],
                                         hopper_meta["ref_max_score"])
    assert "Minari dataset metadata" in r["source"]
    obs = minari["semantics"]["Hopper-v5"]["observation"]
    assert obs["names"][0] == "rootz position" and obs["units"][0] == "m"
    assert obs["names"][5] == "rootx velocity" and "Gymnasium" in obs["source"]
    assert minari["semantics"]["HalfCheetah-v5"]["actions"]["names"][0] == "bthigh torque"
    d4rl = _info(manifest, "demo-d4rl")["reference"]["hopper-mixed-v2"]
    assert (d4rl["random"], d4rl["expert"]) == (-20.272305, 3234.3) and "D4RL" in d4rl["source"]
    atari = _info(manifest, "demo-dqn-replay")
    assert atari["semantics"]["Pong"]["actions"]["names"] == [
        "NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert atari["semantics"]["Breakout"]["actions"]["names"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert atari["reference"]["Pong"]["expert_kind"] == "human"
    rlds = _info(manifest, "demo-rlds")["semantics"]["dmc_jaco_stack_2_bricks_vision"]
    assert rlds["actions"]["names"][0] == "jaco_arm/joint_1"
    assert rlds["pinch_site_pos"]["units"] == ["m", "m", "m"]
    assert rlds["image"]["description"] == "front_close RGB camera"  # features.json
    assert rlds["joints_vel"]["names"] == [f"joints_vel[{i}]" for i in range(6)]
    assert rlds["joints_vel"]["source"].startswith("index")


def test_image_caption_configs_have_no_statistics(manifest):
    info = _info(manifest, "demo-hf-image-parquet")
    assert info["statistics"]["tasks"] == {} and info["statistics"]["config"] == {}
    assert info["semantics"] == {}


def test_meta_has_the_normalized_score(out, manifest):
    gt = json.loads((MINARI_META / "hopper/mixed-v0/ground_truth.json").read_text())
    returns = {e["index"]: e["return"] for e in gt["episodes"]}
    meta = json.loads((MINARI_META / "hopper/mixed-v0/data/metadata.json").read_text())
    lo, hi = meta["ref_min_score"], meta["ref_max_score"]
    seen = 0
    for row in _examples(out, manifest, "demo-minari"):
        m = json.loads(row["meta"])
        if m["task"] != "Hopper-v5":
            continue
        ret = returns[int(m["episode_id"].rsplit("_", 1)[1])]
        assert m["normalized_score"] == pytest.approx(100 * (ret - lo) / (hi - lo), rel=1e-12)
        seen += 1
    assert seen
    for row in _examples(out, manifest, "demo-rlds"):  # no reference: null
        assert json.loads(row["meta"])["normalized_score"] is None


def _own_actions(row: dict) -> np.ndarray:
    mod, prompt = np.asarray(row["modality"]), np.asarray(row["is_prompt"])
    return np.asarray(row["tokens"])[(mod == Modality.ACTION) & (prompt == 0)]


def test_action_tokens_decode_to_named_environment_actions(out, manifest):
    stats = ShardDataset(str(out), "demo-minari").stats
    eps = {e.episode_id: e for e in _episodes("demo-minari")}
    row = next(r for r in _examples(out, manifest, "demo-minari")
               if json.loads(r["meta"])["task"] == "Hopper-v5")
    m = json.loads(row["meta"])
    decoded = stats.decode_actions(_own_actions(row), "Hopper-v5")
    raw = eps[m["episode_id"]].actions[m["first_step"]:m["last_step"] + 1]
    assert decoded.values.shape == raw.shape
    np.testing.assert_allclose(decoded.values, raw, atol=1 / 1024 + 1e-6)  # half a linear bin
    step = decoded.as_dicts()[0]
    assert list(step) == ["thigh_joint torque", "leg_joint torque", "foot_joint torque"]

    atari = load_stats(str(out), "demo-dqn-replay")
    row = _examples(out, manifest, "demo-dqn-replay")[0]
    m = json.loads(row["meta"])
    tokens = _own_actions(row)
    decoded = atari.decode_actions(tokens, m["task"])
    raw = next(e for e in _episodes("demo-dqn-replay") if e.episode_id == m["episode_id"])
    np.testing.assert_array_equal(decoded.values, raw.actions[m["first_step"]:m["last_step"] + 1])
    minimal = {"Pong": (0, 1, 3, 4, 11, 12), "Breakout": (0, 1, 3, 4)}[m["task"]]
    assert decoded.names == [ALE_ACTIONS[minimal[i]] for i in decoded.values]


def test_card_shows_the_tables(out):
    card = (out / "README.md").read_text()
    section = card.split("## Statistics, reference scores and semantics", 1)[1].split("\n## ")[0]
    assert "| `observation` | 0 | rootz position | m |" in section
    assert "0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT, 4 RIGHTFIRE, 5 LEFTFIRE" in section
    assert "Minari dataset metadata ref_min_score/ref_max_score" in section
    assert "Badia et al." in section


def test_two_workers_give_the_same_statistics(out, manifest, tmp_path):
    # the demo's settings (both formats, default shard size), two worker processes
    run_job(catalog=str(CATALOG), dataset="demo-minari", output=str(tmp_path / "two"),
            beam_args=TWO, progress=False)
    two = json.loads((tmp_path / "two/manifest.json").read_text())
    for key in ("statistics", "reference", "semantics", "statistics_state"):
        assert _info(two, "demo-minari")[key] == _info(manifest, "demo-minari")[key], key
    ours = {f["path"]: f["sha256"] for f in manifest["files"] if f["config"] == "demo-minari"}
    assert {f["path"]: f["sha256"] for f in two["files"]} == ours  # meta included

"""A Mixture's statistics are those of the union of its configs' data (issue 18).

Summaries do not merge (a q99 of a union is no function of the parts' q99s; lerobot #4156), so the
job writes each config's mergeable state beside the manifest and ``Mixture.stats`` merges those.
Two builds of the Minari fixture that keep different episodes of Hopper-v5 (one filtered, one
unfiltered and Hopper only) are mixed; the expected numbers are NumPy's over the concatenated
kept episodes as the reader returns them, never read from the job's output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from trajcorpus.errors import TrajcorpusError
from trajcorpus.pipelines import run_job
from trajcorpus.schemas.stats import QUANTILE_NAMES, QUANTILES
from trajcorpus.shards import Mixture, ShardDataset
from trajcorpus.shards.manifest import verify_output
from trajcorpus.sources import open_source

REPO = Path(__file__).resolve().parents[1]
CONFIG = "demo-minari"
ARGS = ["--direct_num_workers=1", "--direct_running_mode=in_memory", "--shard_bytes=2000000"]


@pytest.fixture(scope="module")
def outs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mixstats")
    cat = yaml.safe_load((REPO / "catalog.yaml").read_text())
    for e in cat["datasets"]:
        if e["id"] == CONFIG:
            e["uri"] = str(REPO / e["uri"])
            e["filter"] = {"enabled": False}
    unfiltered = root / "catalog.yaml"
    unfiltered.write_text(yaml.safe_dump(cat))
    a, b = root / "A", root / "B"
    run_job(catalog=str(REPO / "catalog.yaml"), dataset=CONFIG, output=str(a), fmt="parquet",
            beam_args=ARGS, progress=False)
    run_job(catalog=str(unfiltered), dataset=CONFIG, output=str(b), fmt="parquet",
            options={"datasets": ["hopper/mixed-v0"]}, beam_args=ARGS, progress=False)
    return a, b


def _kept(out: Path) -> set[str]:
    rows = (out / "audit" / f"{CONFIG}.episodes.jsonl").read_text().splitlines()
    return {r["episode_id"] for r in map(json.loads, rows) if r["kept"]}


def _union(outs, task: str, field: str) -> np.ndarray:
    src = open_source("minari", str(REPO / "tests/fixtures/mujoco/minari/trajcorpus-fixtures"),
                      options={"datasets": ["hopper/mixed-v0", "halfcheetah/mixed-v0"]})
    eps = [e for e in src.episodes() if e.task == task]
    parts = []
    for out in outs:
        kept = _kept(out)
        parts += [np.asarray(e.actions if field == "actions" else e.observations[field],
                             np.float64).reshape(e.length, -1) for e in eps if e.episode_id in kept]
    return np.concatenate(parts)


def test_mixture_statistics_are_the_union_of_the_configs(outs):
    a, b = outs
    assert _kept(a) != _kept(b)  # the two builds keep different Hopper episodes
    mix = Mixture({"filtered": ShardDataset(str(a), CONFIG), "all": ShardDataset(str(b), CONFIG)})
    info = mix.stats
    assert info.tasks == ["HalfCheetah-v5", "Hopper-v5"]
    assert info.statistics["method"]["merged_from"] == [CONFIG, CONFIG]
    for field in ("actions", "observation"):
        x = _union(outs, "Hopper-v5", field)
        s = info.field(field, "Hopper-v5")
        assert s["count"] == x.shape[0] and s["quantiles"] == "exact"
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-12, atol=1e-12)
        for name, q in zip(QUANTILE_NAMES, QUANTILES, strict=True):
            np.testing.assert_array_equal(s[name], np.quantile(x, q, axis=0,
                                                               method="inverted_cdf"))
    # HalfCheetah is in one config only: its statistics are that config's, unchanged
    assert info.field("actions", "HalfCheetah-v5") == \
        ShardDataset(str(a), CONFIG).stats.field("actions", "HalfCheetah-v5")
    # across the whole mixture, the two robots' actions differ in shape: named, not averaged
    with pytest.raises(TrajcorpusError, match="pass task="):
        info.field("actions")


def test_the_state_file_is_verified_and_a_changed_one_refused(outs, tmp_path):
    import shutil

    a, _ = outs
    c = tmp_path / "C"
    shutil.copytree(a, c)
    entry = json.loads((c / "manifest.json").read_text())["configs"][CONFIG]["info"]
    state = c / entry["statistics_state"]["path"]
    assert verify_output(str(c)).ok
    state.write_bytes(state.read_bytes()[:-1] + b"\0")
    report = verify_output(str(c))
    assert any(entry["statistics_state"]["path"] in p for p in report.problems)
    with pytest.raises(TrajcorpusError, match="sha256"):
        _ = Mixture([ShardDataset(str(c), CONFIG)]).stats

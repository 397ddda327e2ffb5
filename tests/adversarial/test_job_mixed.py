"""The Beam job over corpora that mix good and bad inputs: nothing lost, nothing changed.

For two source kinds, the job runs twice over the same input folder (so every lineage path is the
same): first with only the good inputs, then with bad inputs added beside them. The second run must

* account for every input: per task, read = kept + filtered + rejected;
* list every bad input in ``OUT/audit/{config}.rejected.jsonl`` with where it is and why;
* write the good episodes exactly as the clean run did: the shard files are byte-identical.

Minari covers bad *episodes* inside a good file (missing dataset, NaN observation, length
mismatch); DQN Replay covers bad *units* (a truncated checkpoint in another game, a run whose
action file is a pickled object array - which must not run).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
from make_corpus import (
    DQN_LOGS,
    FIXTURES,
    _dqn,
    _minari,
    dqn_name,
    pickle_npy,
    write_gz,
)

from trajcorpus.pipelines import run_job

BEAM = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _catalog(path: Path, kind: str, uri: str, tokenize: str) -> Path:
    path.write_text(f"version: 1\ndatasets:\n  - id: mixed\n    kind: {kind}\n    uri: {uri}\n"
                    f"    license: CC-BY-4.0\n    tokenize: {tokenize}\n", encoding="utf-8")
    return path


def _run(catalog: Path, out: Path):
    return run_job(catalog=str(catalog), dataset="mixed", output=str(out), seed=7, fmt="both",
                   progress=False, beam_args=BEAM)


def _shards(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert files and all(p.startswith("data/mixed/") for p in files)
    return files


def _rejected(out: Path) -> list[dict]:
    lines = (out / "audit" / "mixed.rejected.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _check_accounting(out: Path, result) -> dict:
    audit = json.loads((out / "audit" / "mixed.json").read_text())
    assert audit == result.audit
    for task, a in audit.items():
        assert a["read"] == a["kept"] + a["filtered"] + a["rejected"], (task, a)
    return audit


def _same_output(clean: Path, mixed: Path) -> None:
    a, b = _shards(clean), _shards(mixed)
    assert a == b, "good episodes' shards differ between the clean and the mixed run"
    for rel in a:  # and the bytes on disk are the ones the manifests describe
        assert (clean / rel).read_bytes() == (mixed / rel).read_bytes(), rel


# --- minari: bad episodes inside a good dataset ------------------------------------------------

BAD_EPISODES = {
    7: ("missing", r"main_data\.hdf5 \[episode_7/rewards\]: missing dataset"),
    9: ("nan", r"episode_9.*non-finite value nan"),
    12: ("short", r"main_data\.hdf5 \[episode_12/observations\]: has \d+ rows"),
}


def _break_episode(group: h5py.Group, how: str) -> None:
    if how == "missing":
        del group["rewards"]
    elif how == "nan":
        obs = group["observations"][...]
        obs[3, 0] = np.nan
        del group["observations"]
        group.create_dataset("observations", data=obs)
    else:
        obs = group["observations"][:-3]
        del group["observations"]
        group.create_dataset("observations", data=obs)


def test_minari_bad_episodes_are_quarantined_and_change_nothing(tmp_path: Path):
    built = _minari(FIXTURES, tmp_path / "in")
    h5 = Path(built.uri) / "hopper" / "mixed-v0" / "data" / "main_data.hdf5"
    pristine = h5.read_bytes()
    with h5py.File(h5, "r+") as f:  # the clean corpus: the bad episodes are simply not there
        for ep in BAD_EPISODES:
            del f[f"episode_{ep}"]
    catalog = _catalog(tmp_path / "catalog.yaml", "minari", built.uri,
                       "{mu_law: true, mu_law_exempt: [actions]}")
    clean = tmp_path / "clean"
    clean_result = _run(catalog, clean)
    assert clean_result.total("rejected") == 0 and clean_result.total("read") == 37

    h5.write_bytes(pristine)  # the mixed corpus: the same good episodes, and the bad ones
    with h5py.File(h5, "r+") as f:
        for ep, (how, _) in BAD_EPISODES.items():
            _break_episode(f[f"episode_{ep}"], how)
    mixed = tmp_path / "mixed"
    result = _run(catalog, mixed)

    audit = _check_accounting(mixed, result)
    assert audit["Hopper-v5"]["read"] == 40 and audit["Hopper-v5"]["rejected"] == 3
    assert {k: v for k, v in audit["Hopper-v5"].items() if k not in ("read", "rejected")} == \
        {k: v for k, v in clean_result.audit["Hopper-v5"].items() if k not in ("read", "rejected")}
    rejected = _rejected(mixed)
    assert len(rejected) == 3
    for _, pattern in BAD_EPISODES.values():
        assert sum(bool(re.search(pattern, f"{r['location']}: {r['reason']}"))
                   for r in rejected) == 1, (pattern, rejected)
    assert all(r["task"] == "Hopper-v5" and r["kind"] == "episode" for r in rejected)
    _same_output(clean, mixed)


# --- dqn-replay: bad units beside good ones ----------------------------------------------------

def test_dqn_bad_units_are_quarantined_and_change_nothing(tmp_path: Path):
    built = _dqn(FIXTURES, tmp_path / "in")
    root = Path(built.uri)
    catalog = _catalog(tmp_path / "catalog.yaml", "dqn-replay", built.uri,
                       "{image_size: [80, 80]}")
    clean = tmp_path / "clean"
    clean_result = _run(catalog, clean)
    assert clean_result.total("read") == 9 and clean_result.total("rejected") == 0

    # a second run of Breakout whose action file is a pickled object array (would create marker)
    marker = tmp_path / "PWNED"
    run2 = root / "Breakout" / "2" / "replay_logs"
    shutil.copytree(root / DQN_LOGS, run2)
    write_gz(run2 / dqn_name("action"), pickle_npy(marker))
    # another game whose observation checkpoint was cut short in transit (before any whole episode)
    pong = root / "Pong" / "1" / "replay_logs"
    shutil.copytree(root / DQN_LOGS, pong)
    obs = pong / dqn_name("observation")
    obs.write_bytes(obs.read_bytes()[:3000])
    mixed = tmp_path / "mixed"
    result = _run(catalog, mixed)

    assert not marker.exists()
    audit = _check_accounting(mixed, result)
    assert audit["Breakout"]["rejected"] == 1 and audit["Breakout"]["kept"] == \
        clean_result.audit["Breakout"]["kept"]
    assert audit["Pong"]["kept"] == 0 and audit["Pong"]["rejected"] >= 1
    rejected = _rejected(mixed)
    texts = [f"{r['location']}: {r['reason']}" for r in rejected]
    assert any(re.search(r"Breakout/2/replay_logs/\$store\$_action_ckpt\.0\.gz @ offset 0: "
                         r"bad \.npy header: object dtype", t) for t in texts), texts
    assert any(re.search(r"Pong/1/replay_logs/\$store\$_observation_ckpt\.0\.gz @ offset \d+: "
                         r"truncated gzip", t) for t in texts), texts
    assert {r["kind"] for r in rejected} == {"unit"}
    _same_output(clean, mixed)

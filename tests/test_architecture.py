"""The promises of docs/architecture.md, checked (issue #14).

* A new source kind is one module: a throwaway kind written in one file of a plugin package
  (installed by a ``*.dist-info`` with a ``trajcorpus.sources`` entry point, as pip would),
  plus a catalog entry and its fixture, runs through ``trajcorpus run`` and gets a complete card
  (its description, hub task categories and tags), with no file of this repository touched.
* A new output format is one codec: a throwaway codec registered in a test writes and reads
  shards through the same layout, writer and stream as the built-in ones.
* The pure pipeline stages import without Beam.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

PLUGIN = '''
"""A throwaway source kind: episodes stored as one JSON document (the test's own format)."""

import json

import numpy as np

from trajcorpus import fs
from trajcorpus.sources.base import Source, SourceOptions, Unit


class TinyOptions(SourceOptions):
    task: str = "tiny-task"


class TinySource(Source):
    kind = "tiny-json"
    description = "Tiny JSON episodes: one document, a list of {obs, actions, rewards}"
    task_categories = ("robotics",)
    tags = ("tiny-plugin-tag",)
    carries_text = False
    Options = TinyOptions

    def units(self):
        return [Unit(key=self.uri, uri=self.uri)]

    def read_unit(self, unit):
        with fs.open_uri(unit.uri, "rb") as f:
            doc = json.load(f)
        for i, ep in enumerate(doc["episodes"]):
            rewards = np.asarray(ep["rewards"], np.float32)
            episode = Episode(
                dataset=self.dataset, task=self.task_name(task=self.opts.task),
                agent=self.agent_name(agent="scripted"), episode_id=f"ep{i}", order=(0, i),
                observations={"state": np.asarray(ep["obs"], np.float32)},
                observation_kinds={"state": "continuous"},
                actions=np.asarray(ep["actions"], np.float32), action_kind="continuous",
                rewards=rewards, is_terminal=True, is_truncated=False,
                return_=float(np.sum(rewards, dtype=np.float64)), source={"uri": unit.uri})
            yield self.checked(episode, f"{unit.uri} [episode {i}]")


from trajcorpus.schemas.episode import Episode  # noqa: E402
'''


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (SRC, *paths))
    return env


def _install_plugin(site: Path) -> None:
    """The plugin package as pip installs it: its module and a dist-info naming the entry point."""
    site.mkdir()
    (site / "tinykind.py").write_text(PLUGIN)
    info = site / "tinykind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinykind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[trajcorpus.sources]\ntiny-json = tinykind\n")


def _fixture(path: Path, rng: np.random.Generator) -> list[float]:
    episodes, returns = [], []
    for n in (12, 9, 15, 11, 10, 14):
        rewards = rng.uniform(0, 1, n).astype(np.float32)
        episodes.append({"obs": rng.uniform(-1, 1, (n, 3)).tolist(),
                         "actions": rng.uniform(-1, 1, (n, 2)).tolist(),
                         "rewards": rewards.tolist()})
        returns.append(float(np.sum(rewards, dtype=np.float64)))
    path.write_text(json.dumps({"episodes": episodes}))
    return returns


def test_a_kind_in_one_plugin_module_runs_through_trajcorpus_run_and_gets_a_full_card(tmp_path):
    before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                            text=True).stdout
    site = tmp_path / "site"
    _install_plugin(site)
    returns = _fixture(tmp_path / "tiny.json", np.random.default_rng(5))
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump({"version": 1, "datasets": [{
        "id": "tiny", "kind": "tiny-json", "uri": "tiny.json", "license": "CC-BY-4.0",
        "options": {"task": "reach"}, "filter": {"enabled": False},
        "sequence": {"length": 64, "prompt_tokens": 0}}]}))
    out = tmp_path / "OUT"
    proc = subprocess.run(
        [sys.executable, "-m", "trajcorpus", "run", "--catalog", "catalog.yaml", "--dataset",
         "tiny", "--output", str(out), "--direct_num_workers=1",
         "--direct_running_mode=in_memory"],
        cwd=tmp_path, env=_env(site), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    info = json.loads((out / "manifest.json").read_text())["configs"]["tiny"]["info"]
    assert info["source"] == {
        "kind": "tiny-json", "carries_text": False, "task_categories": ["robotics"],
        "tags": ["tiny-plugin-tag"],
        "description": "Tiny JSON episodes: one document, a list of {obs, actions, rewards}"}
    audit = json.loads((out / "audit" / "tiny.json").read_text())
    assert audit["reach"]["read"] == audit["reach"]["kept"] == len(returns)
    rows = [json.loads(r) for r in (out / "audit/tiny.episodes.jsonl").read_text().splitlines()]
    assert sorted(r["return"] for r in rows) == sorted(returns)

    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["task_categories"] == ["robotics"]
    assert "tiny-plugin-tag" in front["tags"]
    assert "| format | Tiny JSON episodes: one document, a list of {obs, actions, rewards} |" \
        in card
    assert "see the catalog" not in card
    after = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                           text=True).stdout
    assert after == before, "the run touched files of the repository"


def test_the_plugin_kind_is_checked_like_a_builtin_one(tmp_path):
    """Its Options model refuses a misspelt option at catalog time, naming entry and field; the
    registry lists it beside the package's own kinds."""
    site = tmp_path / "site"
    _install_plugin(site)
    code = textwrap.dedent("""
        from trajcorpus.errors import CatalogError
        from trajcorpus.schemas.catalog import parse_catalog
        from trajcorpus.sources import registered_kinds
        assert "tiny-json" in registered_kinds() and "minari" in registered_kinds()
        text = "datasets:\\n  - id: t\\n    kind: tiny-json\\n    uri: x\\n    license: MIT\\n" \\
               "    options: {tsak: reach}\\n"
        try:
            parse_catalog(text, "cat.yaml")
        except CatalogError as e:
            print(e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=_env(site), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == ("cat.yaml:6: entry 't' field 'options.tsak': unknown "
                                   "tiny-json option 'tsak' (known: ['task'])")


def test_a_broken_plugin_is_one_line_naming_its_entry_point(tmp_path):
    site = tmp_path / "site"
    _install_plugin(site)
    (site / "tinykind.py").write_text("raise RuntimeError('half-installed')\n")
    proc = subprocess.run([sys.executable, "-m", "trajcorpus", "catalog", "validate",
                           str(REPO / "catalog.yaml")], env=_env(site),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "trajcorpus: error: entry point trajcorpus.sources:tiny-json = tinykind: cannot load: "
        "RuntimeError: half-installed"]


@pytest.mark.parametrize("module", ["filter", "prompts", "sequences"])
def test_pure_stages_import_without_beam(module):
    code = (f"import sys, trajcorpus.pipelines.{module}; "
            "assert 'apache_beam' not in sys.modules, 'Beam was imported'")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# --- output formats -------------------------------------------------------------------------------

def test_builtin_codecs_and_the_format_choices():
    from trajcorpus.shards.codecs import extensions, format_choices, formats_for, registered_codecs

    assert [c.name for c in registered_codecs()] == ["parquet", "webdataset"]  # preferred first
    assert extensions() == {"parquet": "parquet", "tar.gz": "webdataset"}
    assert format_choices() == ["parquet", "webdataset", "both"]
    assert formats_for("both") == ("parquet", "webdataset")
    assert formats_for("webdataset") == ("webdataset",)


def test_a_new_codec_writes_and_reads_through_layout_writer_and_stream(tmp_path, monkeypatch):
    """A JSON-lines format registered in one place is written by write_shard, named by the
    layout, listed by the manifest and streamed back by ShardDataset."""
    from trajcorpus.shards import ShardDataset, write_manifest, write_shard
    from trajcorpus.shards import codecs as codecs_mod  # the module
    from trajcorpus.shards.layout import parse_relpath, shard_relpath
    from trajcorpus.tokenizers.scheme import Modality

    def write(rows, sink) -> int:
        n = 0
        for ex in rows:
            doc = {k: ({"shape": list(v.shape), "data": v.ravel().tolist()}
                       if isinstance(v, np.ndarray) else v) for k, v in ex.items()}
            sink.write((json.dumps(doc) + "\n").encode())
            n += 1
        return n

    def read(source, uri, wanted):
        lines = source.read().decode().splitlines()
        for i, line in enumerate(lines):
            if wanted is not None and not wanted[i]:
                yield i, None
                continue
            doc = json.loads(line)
            ex = {k: v for k, v in doc.items() if k in ("__key__", "meta")}
            for field, dtype in FIELD_DTYPES.items():
                ex[field] = np.asarray(doc[field]["data"], dtype=dtype).reshape(
                    doc[field]["shape"])
            yield i, ex

    from trajcorpus.shards.example import FIELD_DTYPES

    jsonl = codecs_mod.Codec(name="jsonl", extension="jsonl", rank=5, hub_builder="json",
                             write=write, read=read, estimate=lambda sizes, key: sum(sizes))
    monkeypatch.setitem(codecs_mod._REGISTRY, "jsonl", jsonl)
    assert codecs_mod.format_choices() == ["jsonl", "parquet", "webdataset", "both"]

    examples = [_example(f"k{i}", i, Modality) for i in range(3)]
    rel = shard_relpath("cfg", "train", "jsonl", 0, 1)
    assert rel == "data/cfg/train-00000-of-00001.jsonl" and parse_relpath(rel).format == "jsonl"
    shard = write_shard(examples, str(tmp_path), rel, "jsonl")
    write_manifest(str(tmp_path), [shard], "cfg", {})
    got = list(ShardDataset(str(tmp_path), "cfg", fmt="jsonl").stream())
    assert [g["__key__"] for g in got] == ["k0", "k1", "k2"]
    for g, ex in zip(got, examples, strict=True):
        for field in FIELD_DTYPES:
            np.testing.assert_array_equal(g[field], ex[field])


def _example(key: str, i: int, modality) -> dict:
    """A valid example of 8 discrete tokens (no image patches)."""
    n = 8
    return {"__key__": key, "meta": json.dumps({"i": i}),
            "tokens": np.arange(n, dtype=np.int32) + i,
            "modality": np.full(n, modality.DISCRETE, np.uint8),
            "loss_mask": np.ones(n, np.uint8), "local_position": np.arange(n, dtype=np.int16),
            "is_prompt": np.zeros(n, np.uint8), "patches": np.zeros((0, 16, 16, 3), np.uint8),
            "patch_position": np.zeros((0, 2), np.int16)}

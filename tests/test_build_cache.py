"""The build cache (#19 parts 2-3, docs/build-cache.md): a killed build resumes, a grown corpus
reuses its cached units, both byte-identical to clean builds; keys change exactly when a unit's
inputs, a token setting or the code change; entries are whole or absent."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, child_env
from support.killjob import kill_group_when
from support.reuse import assert_same_but_reuse
from trajcorpus.errors import TrajcorpusError
from trajcorpus.pipelines import buildcache
from trajcorpus.pipelines.buildcache import BuildCache, cache_root, cached, decode, encode

DQN = FIXTURES / "atari_dqn_replay"
ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
REUSE_FACTS = "audit/dqn.build.json"


# --- helpers ------------------------------------------------------------------------------------

def _input(root: Path, games: tuple[str, ...]) -> Path:
    """A DQN Replay input holding the fixture's runs of ``games`` (copied, so mtimes are ours)."""
    for game in games:
        shutil.copytree(DQN / game, root / game)
    return root


def _catalog(path: Path, uri: Path, seed_note: str = "") -> Path:
    """The input named relative to the catalog (as the bundled catalog does), so builds of
    copies in other folders record the same input and are byte-identical."""
    path.write_text(f"version: 1\ndatasets:\n  - id: dqn\n    kind: dqn-replay\n"
                    f"    uri: {uri.relative_to(path.parent)}\n    license: CC-BY-4.0\n"
                    "    tokenize: {image_size: [48, 48]}\n", encoding="utf-8")
    return path


def _run(catalog: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trajcorpus", "run", "--catalog", str(catalog), "--dataset",
           "dqn", "--output", str(out), "--format", "parquet", "--quiet", *ONE_WORKER, *extra]
    env = {**child_env(), "TRAJCORPUS_RUN_CHILD": "1"}  # the job itself, no supervisor
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]


def _tree(out: Path) -> dict[str, str]:
    """sha256 of every file of the output (the cache folder is not output)."""
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()
            and not p.relative_to(out).as_posix().startswith(buildcache.CACHE_DIR + "/")}


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob(buildcache.RECORDS)) if root.exists() else []


def _same_but_reuse(got: Path, want: Path, reused: int, units: int) -> None:
    """Every file byte-identical except the card's build-cache line and the reuse facts."""
    assert_same_but_reuse(got, _tree(got), want, _tree(want), "dqn", reused)
    assert f'"units": {units}' in (got / REUSE_FACTS).read_text()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """Breakout (3 checkpoints) and its clean build without a cache (the reference)."""
    root = tmp_path_factory.mktemp("cache")
    inp = _input(root / "in", ("Breakout",))
    catalog = _catalog(root / "catalog.yaml", inp)
    ref = root / "ref"
    _finish(_run(catalog, ref, "--cache_dir", "none"))
    assert not (ref / buildcache.CACHE_DIR).exists() and not (ref / REUSE_FACTS).exists()
    return {"root": root, "input": inp, "catalog": catalog, "ref": ref}


# --- resume and grow, end to end ----------------------------------------------------------------

def test_killed_build_resumes_byte_identical(base, tmp_path):
    out = tmp_path / "out"
    proc = _run(base["catalog"], out)
    cache = out / buildcache.CACHE_DIR
    kill_group_when(proc, lambda: bool(_entries(cache)), "a cache entry appeared", 600)
    done = len(_entries(cache))
    assert 1 <= done <= 3 and not (out / "manifest.json").exists()
    # the same command again: the killed build's leftovers are not a finished output
    _finish(_run(base["catalog"], out))
    assert len(_entries(cache)) == 3
    _same_but_reuse(out, base["ref"], done, 3)


def test_grown_corpus_reuses_cached_units_byte_identical(base, tmp_path):
    inp = _input(tmp_path / "in", ("Breakout",))
    catalog = _catalog(tmp_path / "catalog.yaml", inp)
    out = tmp_path / "out"
    _finish(_run(catalog, out))  # Breakout: 3 units, all read
    assert not (out / REUSE_FACTS).exists()
    assert len(_entries(out / buildcache.CACHE_DIR)) == 3
    # a cold cache writes every byte a build without a cache writes
    assert _tree(out) == _tree(base["ref"])
    _input(inp, ("Pong",))  # a new game: 3 more checkpoints
    refused = _run(catalog, out)
    refused.communicate(timeout=600)
    assert refused.returncode == 2  # a finished output still needs --overwrite
    _finish(_run(catalog, out, "--overwrite"))
    assert len(_entries(out / buildcache.CACHE_DIR)) == 6
    clean = tmp_path / "clean"
    _finish(_run(catalog, clean, "--cache_dir", "none"))
    _same_but_reuse(out, clean, 3, 6)


# --- keys: what invalidates what ----------------------------------------------------------------

def _plan(uri: Path, seed: int = 0, image_size: list | None = None, root: str = "/c"
          ) -> dict[str, str]:
    import dataclasses

    from trajcorpus.pipelines.job import make_spec
    from trajcorpus.schemas.catalog import load_catalog

    cat = _catalog(uri.parent / f"catalog-{seed}.yaml", uri)
    entry = load_catalog(str(cat)).get("dqn")
    if image_size:
        entry = entry.model_copy(update={"tokenize": entry.tokenize.model_copy(
            update={"image_size": tuple(image_size)})})
    spec = make_spec(entry, str(uri), "/o", seed, "parquet", 0, 1 << 20, False)
    source = spec.open_source()
    units = source.planned_units()
    spec = dataclasses.replace(spec, num_units=len(units))
    plan = buildcache.plan_cache(spec, source, units, root)
    assert plan is not None and plan.root == root
    return plan.digests


def test_keys_change_exactly_with_inputs_settings_and_code(tmp_path, monkeypatch):
    inp = _input(tmp_path / "in", ("Breakout", "Pong"))
    first = _plan(inp)
    assert len(first) == 6 and len(set(first.values())) == 6
    assert _plan(inp) == first  # stable
    # a changed token setting or seed: every unit misses
    for other in (_plan(inp, seed=1), _plan(inp, image_size=[32, 32])):
        assert not set(other.values()) & set(first.values())
    # a touched file (same bytes, new mtime) of Pong's run: Pong's 3 units, none of Breakout's
    f = next((inp / "Pong").rglob("$store$_reward_ckpt.1.gz"))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = _plan(inp)
    changed = sorted(k for k in first if touched[k] != first[k])
    assert changed == ["Pong/1/ckpt.0", "Pong/1/ckpt.1", "Pong/1/ckpt.2"]
    # a changed file: the same
    f.write_bytes(f.read_bytes())  # rewritten: a new mtime again
    before = _plan(inp)
    assert {k for k in first if before[k] != first[k]} == set(changed)
    assert {k for k in first if before[k] != touched[k]} == set(changed)
    # a new run elsewhere keeps every existing key (what a grown corpus reuses)
    shutil.copytree(DQN / "Breakout" / "1", inp / "Breakout" / "2")
    grown = _plan(inp)
    assert len(grown) == 9 and all(grown[k] == before[k] for k in before)
    # the code version: any change of the package's sources
    buildcache.code_version.cache_clear()
    monkeypatch.setattr(buildcache, "code_version", lambda: "another version")
    assert not set(_plan(inp).values()) & set(grown.values())


def test_a_kind_without_its_own_unit_inputs_keys_on_the_whole_input(tmp_path):
    from trajcorpus.sources.base import Source

    assert Source.unit_inputs.__qualname__ == "Source.unit_inputs"

    class Whole(Source):  # not registered: no kind
        def units(self):
            return []

        def read_unit(self, unit):
            return iter(())

    src = Whole.__new__(Whole)
    src.uri = "/data/in"
    assert src.unit_inputs(object()) == ("/data/in",)


def test_cache_root_options(tmp_path):
    assert cache_root("/o", None) == "/o/.trajcorpus-cache"
    assert cache_root("/o", "") == "/o/.trajcorpus-cache"
    assert cache_root("/o", "none") is None and cache_root("/o", "NONE") is None
    assert cache_root("/o", "gs://b/cache/") == "gs://b/cache"
    with pytest.raises(TrajcorpusError, match="--cache_dir"):
        cache_root("/o", "gs://YOUR-BUCKET/cache")


# --- records round trip, entries whole or absent ------------------------------------------------

def _records() -> list:
    import apache_beam as beam

    from trajcorpus.pipelines.spec import EpisodeWindows, WindowRef
    from trajcorpus.pipelines.stats import episode_record
    from trajcorpus.schemas.episode import EpisodeSummary
    from trajcorpus.sources import open_source

    src = open_source("dqn-replay", str(DQN), dataset="d", options={},
                      task_template="{game}", agent_template="{run}")
    ep = next(e for e in src.read_unit_safely(src.planned_units()[0]) if hasattr(e, "task"))
    ref = WindowRef("k", "Pong", "1", "e", -3.5, False, 0, 0, 9, 100, 12, True, "/c/x/spill", 8,
                    90, 1234, '{"a": 1}')
    summary = EpisodeSummary("d", "Pong", "1", "e", (1, 2), float("nan"), 10, False)
    bundle = (EpisodeWindows("Pong", "1", "e", -3.5, False, "/c/x/spill", '{"a": 1',
                             ((0, 0, 9, 100, 12, True, 8, 90, 1234),
                              (1, 10, 19, 80, 12, False, 98, 70, 999))),)
    return [ref, beam.pvalue.TaggedOutput("summary", summary),
            beam.pvalue.TaggedOutput("rejected", ("Pong", 1)),
            beam.pvalue.TaggedOutput("rawstats", episode_record(ep)),
            {"set": {1, 2}, 3: np.arange(4, dtype="<f4"), "b": b"\x00", "s": np.int64(7)},
            bundle]


def _same(a, b) -> bool:
    import json

    return json.dumps(encode(a), sort_keys=True) == json.dumps(encode(b), sort_keys=True)


def test_records_round_trip_exactly():
    import json

    records = _records()
    doc = json.loads(json.dumps([encode(r, "/c/x/spill") for r in records]))
    back = [decode(d, "/elsewhere/spill") for d in doc]
    assert back[0].uri == "/elsewhere/spill" and back[0]._replace(uri="/c/x/spill") == records[0]
    assert type(back[1].value).__name__ == "EpisodeSummary" and back[1].tag == "summary"
    assert np.isnan(back[1].value.return_) and back[1].value.order == (1, 2)
    assert back[2].value == ("Pong", 1)
    stats, orig = back[3].value.stats, records[3].value.stats
    assert stats.to_state() == orig.to_state() and stats.summary() == orig.summary()
    assert back[4]["set"] == {1, 2} and back[4][3].dtype == np.float32
    assert back[4]["s"] == 7 and type(back[4]["s"]) is np.int64
    ew = back[5][0]  # a unit's bundle: its spill uri moves with the entry, windows exact
    assert ew.uri == "/elsewhere/spill" and ew._replace(uri="/c/x/spill") == records[5][0]
    assert [r.meta for r in ew.refs()] == [
        '{"a": 1, "first_step": 0, "last_step": 9, "window": 0}',
        '{"a": 1, "first_step": 10, "last_step": 19, "window": 1}']
    assert all(_same(a, b) for a, b in zip(back[1:5], records[1:5], strict=True))


def test_decode_builds_only_trajcorpus_classes():
    with pytest.raises(ValueError, match="not a trajcorpus class"):
        decode({"O": "os:system", "v": {"d": []}})
    with pytest.raises(TypeError, match="cannot store"):
        encode(Path("/x"))


class _Spec:
    def __init__(self, tmp: Path, cache: BuildCache | None):
        self.tmp, self.cache, self.progress, self.num_units, self.config = tmp, cache, False, 1, "c"

    def unit_file(self, unit, suffix: str) -> str:
        return str(self.tmp / f"{unit.index:06d}.{suffix}")


def _compute(calls: list, fail_at: int | None = None):
    from trajcorpus.pipelines.spill import SpillWriter
    from trajcorpus.tokenizers.tokenized import TokenizedEpisode

    def run(spill: str):
        calls.append(spill)
        w = SpillWriter(spill)
        tok = TokenizedEpisode(np.arange(6, dtype="<i4"), np.zeros(6, "|u1"), np.ones(6, "|u1"),
                               np.arange(6, dtype="<i2"), np.array([0, 3, 6], "<i8"),
                               np.zeros((0, 4), "|u1"), np.zeros((0, 2), "<i2"),
                               np.zeros(3, "<i8"))
        for i in range(3):
            if i == fail_at:
                w.abort()
                raise RuntimeError("killed")
            off, n = w.write(tok)
            yield ("window", spill, off, n)
        w.close()
        (Path(_Spec.last.tmp) / "000000.episodes.jsonl").write_text('{"e": 1}\n')

    return run


def _unit():
    from trajcorpus.sources.base import Unit

    return Unit(key="u", uri="/in/u", index=0)


@pytest.mark.parametrize("where", ["local", "gs"])
def test_entry_is_whole_or_absent_and_reused(tmp_path, where, request):
    if where == "gs":
        request.getfixturevalue("gcs")  # the suite's local GCS emulator
        root = f"gs://trajcorpus-test/cache-{os.getpid()}"
    else:
        root = str(tmp_path / "cache")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    spec = _Spec(tmp, BuildCache(root, {"u": "digest"}))
    _Spec.last = spec
    unit, calls = _unit(), []
    with pytest.raises(RuntimeError, match="killed"):  # a worker that dies mid-unit
        list(cached(spec, unit, "read", "", _compute(calls, fail_at=1), files=("episodes.jsonl",)))
    from trajcorpus import fs

    entry = spec.cache.entry("u", "read")
    assert not fs.exists(fs.join(entry, buildcache.RECORDS))  # nothing a rerun would trust
    first = list(cached(spec, unit, "read", "", _compute(calls), files=("episodes.jsonl",)))
    assert len(calls) == 2 and calls[-1] == fs.join(entry, "spill")
    (tmp / "000000.episodes.jsonl").unlink()
    again = list(cached(spec, unit, "read", "", _compute(calls), files=("episodes.jsonl",)))
    assert len(calls) == 2 and again == first  # a hit: nothing recomputed
    assert (tmp / "000000.episodes.jsonl").read_text() == '{"e": 1}\n'
    assert buildcache.reused_units(str(tmp)) == 1
    # another text model (or stage) is another entry
    list(cached(spec, unit, "read", "other-model", _compute(calls), files=("episodes.jsonl",)))
    assert len(calls) == 3
    # an entry whose spill file went away is recomputed, not trusted
    fs.remove(fs.join(entry, "spill"))
    list(cached(spec, unit, "read", "", _compute(calls), files=("episodes.jsonl",)))
    assert len(calls) == 4
    assert buildcache.cache_summary(root)[0] == 2
    buildcache.clear_cache(root)
    assert buildcache.cache_summary(root) == (0, 0)


def test_without_a_cache_the_unit_spills_to_the_run_folder(tmp_path):
    spec = _Spec(tmp_path, None)
    _Spec.last = spec
    calls: list = []
    list(cached(spec, _unit(), "read", "", _compute(calls)))
    assert calls == [str(tmp_path / "000000.spill")] and not buildcache.reused_units(str(tmp_path))


def test_cli_lists_and_clears_the_cache(tmp_path, capsys):
    from trajcorpus.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = "".join(capsys.readouterr().out.split())
    assert "--cache_dirURI" in help_text and "(default:OUTPUT/.trajcorpus-cache;none=nocache)" \
        in help_text
    entry = tmp_path / "out" / buildcache.CACHE_DIR / "ab" / "abc"
    entry.mkdir(parents=True)
    (entry / buildcache.RECORDS).write_bytes(b"x" * 10)
    assert main(["cache", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.endswith(": 1 entries, 0.0 MB\n")
    assert main(["cache", str(tmp_path / "out"), "--clear"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert not (tmp_path / "out" / buildcache.CACHE_DIR).exists()


def test_check_output_and_publish_leave_the_cache_alone(tmp_path):
    from trajcorpus.pipelines.inputs import check_output
    from trajcorpus.shards.hub import upload_files

    out = tmp_path / "out"
    (out / buildcache.CACHE_DIR / "ab").mkdir(parents=True)
    (out / buildcache.CACHE_DIR / "ab" / "f").write_text("x")
    check_output(str(out), "dqn", overwrite=False)  # a killed build's cache is no stranger
    (out / "README.md").write_text("card")
    assert [rel for rel, _ in upload_files(str(out))] == ["README.md"]

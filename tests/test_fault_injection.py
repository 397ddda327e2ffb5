"""Faults in the middle of a run, and damaged shards afterwards.

* A worker exception while shards are being written, and a SIGKILL of the whole job process while
  a shard's temporary file is open: neither leaves a manifest, a truncated file under a shard name
  or (after the exception) a temporary file; the folder reads as unfinished. Rerunning into the
  same folder gives a tree byte-identical to an undisturbed run.
* A reader given a truncated or tampered shard fails with an error naming the file and why, or,
  with ``skip_bad=True``, skips it and counts what it lost.

The corpus is the small DQN Replay checkpoint of the adversarial corpus (9 Breakout episodes);
a tiny ``--shard_bytes`` gives several shards per format, so a fault can land between them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adversarial.make_corpus import build_clean
from support.killjob import kill_group_when
from support.reuse import assert_same_but_reuse
from trajcorpus.errors import ShardError, TrajcorpusError
from trajcorpus.pipelines import run_job
from trajcorpus.shards import ShardDataset, StreamStats, verify_output

BEAM = ["--direct_num_workers=1", "--direct_running_mode=in_memory", "--shard_bytes=4000"]
CONFIG = "faults"
TEMP = ".tmp-"


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run(catalog: Path, out: Path) -> None:
    run_job(catalog=str(catalog), dataset=CONFIG, output=str(out), seed=3, fmt="both",
            progress=False, beam_args=BEAM)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The input, its catalog and an undisturbed run (the reference every rerun must equal)."""
    base = tmp_path_factory.mktemp("faults")
    built = build_clean("dqn-replay", base / "in")
    catalog = base / "catalog.yaml"
    catalog.write_text(f"version: 1\ndatasets:\n  - id: {CONFIG}\n    kind: dqn-replay\n"
                       f"    uri: {built.uri}\n    license: CC-BY-4.0\n"
                       "    tokenize: {image_size: [80, 80]}\n", encoding="utf-8")
    ref = base / "reference"
    _run(catalog, ref)
    tree = _tree(ref)
    shards = [p for p in tree if p.startswith(f"data/{CONFIG}/")]
    assert len(shards) >= 4 and "manifest.json" in tree  # several shards per format
    return {"catalog": catalog, "ref": ref, "tree": tree, "base": base}


def _assert_rebuilt(out: Path, corpus: dict) -> None:
    """The rerun equals the undisturbed run byte for byte, but for what says that it took every
    unit the failed run had read from the build cache (the card's line and its facts file)."""
    units = assert_same_but_reuse(out, _tree(out), corpus["ref"], corpus["tree"], CONFIG)
    assert f'"units": {units}' in (out / f"audit/{CONFIG}.build.json").read_text()


def _assert_unfinished(out: Path, reference: dict[str, str]) -> list[str]:
    """No manifest, no file under a shard name (temporary names only); returns the temporary
    files left under data/."""
    assert not (out / "manifest.json").exists()
    with pytest.raises(ShardError, match="no manifest"):
        ShardDataset(str(out), CONFIG)
    assert not verify_output(str(out)).ok
    temps = []
    for p in sorted((out / "data").rglob("*")) if (out / "data").exists() else []:
        rel = p.relative_to(out).as_posix()
        if TEMP in p.name:
            temps.append(rel)
        elif p.is_file():
            # shards are staged under .trajcorpus-tmp/ and moved into place only at the end
            raise AssertionError(f"{rel}: a failed run left a file under a shard name")
    return temps


def test_worker_exception_mid_shard(corpus: dict, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch):
    from trajcorpus.shards import codecs

    tar = codecs.get_codec("webdataset")  # the writer calls the registered codec's write
    real = tar.write
    calls = []

    def failing_write_tar(rows, sink):  # the second tar shard dies after its first bytes
        calls.append(1)
        if len(calls) == 2:
            sink.write(b"\0" * 1536)
            raise RuntimeError("injected writer failure")
        return real(rows, sink)

    monkeypatch.setitem(codecs._REGISTRY, "webdataset",
                        dataclasses.replace(tar, write=failing_write_tar))
    out = tmp_path / "out"
    with pytest.raises(TrajcorpusError, match="injected writer failure"):
        _run(corpus["catalog"], out)
    assert len(calls) == 2
    assert _assert_unfinished(out, corpus["tree"]) == []  # the failed temp file was removed

    monkeypatch.setitem(codecs._REGISTRY, "webdataset", tar)
    _run(corpus["catalog"], out)
    _assert_rebuilt(out, corpus)
    assert verify_output(str(out)).ok


KILLED_JOB = """
import dataclasses, sys, time
from trajcorpus.pipelines import run_job
from trajcorpus.shards import codecs

parquet = codecs.get_codec("parquet")  # the writer calls the registered codec's write
real = parquet.write

def slow_write_parquet(rows, sink):  # writes the shard, then hangs before it is renamed
    n = real(rows, sink)
    sink.flush()
    print("WRITING", flush=True)
    time.sleep(120)
    return n

codecs._REGISTRY["parquet"] = dataclasses.replace(parquet, write=slow_write_parquet)
run_job(catalog=sys.argv[1], dataset=sys.argv[2], output=sys.argv[3], seed=3, fmt="both",
        progress=False, beam_args=sys.argv[4:])
"""


def test_sigkill_while_a_shard_is_open(corpus: dict, tmp_path: Path):
    script = tmp_path / "killed_job.py"
    script.write_text(textwrap.dedent(KILLED_JOB), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(script), str(corpus["catalog"]), CONFIG,
                             str(out), *BEAM], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    staging = out / ".trajcorpus-tmp" / CONFIG / "staged"
    kill_group_when(proc, lambda: staging.exists() and any(staging.rglob(f"*{TEMP}*")),
                    "a shard temp file appeared")
    assert proc.returncode == -signal.SIGKILL
    assert not _assert_unfinished(out, corpus["tree"])  # nothing at all under data/
    staged = [p.relative_to(out).as_posix()
              for p in (out / ".trajcorpus-tmp" / CONFIG / "staged").rglob(f"*{TEMP}*")]
    assert staged and all(name.startswith(f".trajcorpus-tmp/{CONFIG}/staged/data/{CONFIG}/train-")
                          for name in staged), staged

    _run(corpus["catalog"], out)
    _assert_rebuilt(out, corpus)  # no temp file survives the rerun either


# --- damaged shards, read back ------------------------------------------------------------------

def _damaged_copy(corpus: dict, tmp_path: Path, fmt: str, damage) -> tuple[Path, str, int]:
    out = tmp_path / "out"
    shutil.copytree(corpus["ref"], out)
    manifest = json.loads((out / "manifest.json").read_text())
    files = [f for f in manifest["files"] if f["format"] == fmt]
    victim = files[1]
    p = out / victim["path"]
    p.write_bytes(damage(p.read_bytes()))
    return out, victim["path"], victim["examples"]


def _count(stream) -> int:
    return sum(1 for _ in stream)


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_truncated_shard_fails_or_is_skipped_and_counted(corpus: dict, tmp_path: Path, fmt: str):
    out, rel, lost = _damaged_copy(corpus, tmp_path, fmt, lambda b: b[: len(b) // 2])
    ds = ShardDataset(str(out), CONFIG, fmt=fmt)
    total = len(ds)
    with pytest.raises(ShardError, match=rf"{rel}: truncated"):
        _count(ds.stream())
    with pytest.raises(ShardError, match=rf"{rel}: truncated"):  # also without the size check
        _count(ds.stream(verify=False))
    stats = StreamStats()
    assert _count(ds.stream(skip_bad=True, stats=stats)) == total - lost
    assert [u for u, _ in stats.bad_shards] == [str(out / rel)]
    assert stats.lost_examples == lost
    report = verify_output(str(out))
    assert not report.ok and report.mismatched == [rel]


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_tampered_shard_fails_or_is_skipped_and_counted(corpus: dict, tmp_path: Path, fmt: str):
    def tamper(b: bytes) -> bytes:  # same size, 32 bytes inverted in the middle
        mid = len(b) // 2
        return b[:mid] + bytes(x ^ 0xFF for x in b[mid: mid + 32]) + b[mid + 32:]

    out, rel, lost = _damaged_copy(corpus, tmp_path, fmt, tamper)
    ds = ShardDataset(str(out), CONFIG, fmt=fmt)
    with pytest.raises(ShardError, match=rf"{rel}: sha256 .* does not match"):
        _count(ds.stream())
    stats = StreamStats()
    assert _count(ds.stream(skip_bad=True, stats=stats)) == len(ds) - lost
    assert len(stats.bad_shards) == 1 and "sha256" in stats.bad_shards[0][1]
    assert stats.lost_examples == lost
    report = verify_output(str(out))
    assert not report.ok and report.mismatched == [rel]

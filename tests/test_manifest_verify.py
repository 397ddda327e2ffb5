"""``trajcorpus verify``: the sidecar files (episode index, statistics state) are checked like the
shards, and the report's counts and text are exact (found by mutation testing:
docs/mutation-testing.md). Digests and sizes come from hashlib and the bytes written here."""

from __future__ import annotations

import hashlib
from pathlib import Path

from test_shards_synth import make_examples
from test_shards_write import write_config
from trajcorpus.shards import verify_output, write_manifest
from trajcorpus.shards.manifest import sha256_of


def sidecar(out: Path, rel: str, data: bytes) -> dict:
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_bytes(data)
    return {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def make_output(out: Path) -> tuple[list, dict]:
    files = write_config(out, "c", make_examples(4, seed=3), 2, formats=("parquet",))
    info = {"index": sidecar(out, "index/c.parquet", b"index bytes"),
            "statistics_state": sidecar(out, "stats/c.json", b'{"state": 1}')}
    write_manifest(str(out), files, "c", info)
    return files, info


def test_sidecars_are_counted_and_a_clean_report_is_exact(tmp_path):
    files, info = make_output(tmp_path)
    report = verify_output(str(tmp_path))
    total = files[0].bytes + files[1].bytes + len(b"index bytes") + len(b'{"state": 1}')
    assert report.ok and (report.checked, report.bytes) == (4, total)
    assert report.render() == f"{tmp_path}: OK, 4 files, {total} bytes match manifest.json"


def test_an_output_named_with_a_trailing_slash_or_a_file_uri(tmp_path):
    out = tmp_path / "OUTX"
    make_output(out)
    assert verify_output(f"{out}/").ok and verify_output(f"file://{out}").ok


def test_a_changed_or_missing_sidecar_is_a_problem(tmp_path):
    make_output(tmp_path)
    (tmp_path / "stats" / "c.json").write_bytes(b'{"state": 2}')  # same size, other digest
    (tmp_path / "index" / "c.parquet").unlink()
    report = verify_output(str(tmp_path))
    digest = hashlib.sha256(b'{"state": 2}').hexdigest()
    assert report.mismatched == ["stats/c.json"] and report.missing == ["index/c.parquet"]
    assert report.problems == [
        "missing: index/c.parquet: listed in manifest.json, not on disk",
        f"changed: stats/c.json: 12 bytes sha256 {digest[:16]}..., manifest says 12 bytes"]
    assert report.render() == "\n".join([f"{tmp_path}: 2 problem(s)",
                                         *[f"  {p}" for p in report.problems]])
    (tmp_path / "stats" / "c.json").write_bytes(b"{}")  # shorter
    assert verify_output(str(tmp_path)).mismatched == ["stats/c.json"]


def test_changed_and_extra_shards_are_reported_exactly(tmp_path):
    files, _ = make_output(tmp_path)
    path = tmp_path / files[0].path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    (tmp_path / "data" / "c" / "stray.tmp").write_bytes(b"x")
    report = verify_output(str(tmp_path))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    assert report.problems == [
        "extra: data/c/stray.tmp: not listed in manifest.json",
        f"changed: {files[0].path}: {len(data)} bytes sha256 {digest[:16]}..., manifest says "
        f"{files[0].bytes} bytes sha256 {files[0].sha256[:16]}..."]


def test_a_missing_shard_does_not_stop_the_other_checks(tmp_path):
    files, _ = make_output(tmp_path)
    extra = write_config(tmp_path, "d", make_examples(3, seed=4), 2, formats=("parquet",))
    write_manifest(str(tmp_path), extra, "d", {})
    (tmp_path / extra[0].path).unlink()
    report = verify_output(str(tmp_path))
    assert report.missing == [extra[0].path] and report.checked == 5
    assert report.problems == [f"missing: {extra[0].path}: listed in manifest.json, not on disk"]


def test_sha256_of_a_file_longer_than_one_read(tmp_path):
    data = bytes(range(256)) * (8 * 4096 + 1)  # 8 MiB + 256 bytes: two reads
    (tmp_path / "big").write_bytes(data)
    assert sha256_of(str(tmp_path / "big")) == (hashlib.sha256(data).hexdigest(), len(data))

"""Shard writers, manifest, verify, hub configs and publish (issue 8).

Readers are checked against the synthetic input examples, never against the writer's own output.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from test_shards_synth import assert_same_example, make_example, make_examples
from trajcorpus.cli import main as cli_main
from trajcorpus.errors import ShardError
from trajcorpus.shards import (
    EXAMPLE_FIELDS,
    ShardFile,
    check_example,
    example_nbytes,
    hub_configs,
    parse_relpath,
    publish,
    read_manifest,
    safe_key,
    shard_relpath,
    verify_output,
    webdataset_data_files,
    webdataset_features,
    write_manifest,
    write_shard,
)
from trajcorpus.shards.parquetcodec import HF_FEATURES, iter_parquet
from trajcorpus.shards.tarcodec import iter_tar, write_tar

FORMATS = ("webdataset", "parquet")


def write_config(out: Path | str, config: str, examples: list[dict], shards: int,
                 formats=FORMATS, split: str = "train") -> list[ShardFile]:
    files = []
    for fmt in formats:
        for i in range(shards):
            part = examples[i::shards]
            files.append(write_shard(part, str(out), shard_relpath(config, split, fmt, i, shards),
                                     fmt))
    return files


def write_readme(out: Path) -> None:
    configs = hub_configs(read_manifest(str(out)))
    (out / "README.md").write_text("---\n" + yaml.safe_dump({"configs": configs}) + "---\n# x\n")


# ------------------------------------------------------------------------- example contract

def test_check_example_names_field_and_reason():
    ex = make_examples(1, seed=1)[0]
    check_example(ex)
    cases = [
        ("tokens", ex["tokens"].astype(np.int64), "dtype int64, expected int32"),
        ("modality", ex["modality"][:-1], "length"),
        ("patches", ex["patches"][..., :1].repeat(5, axis=3) if ex["patches"].size else
         np.zeros((0, 16, 16, 5), np.uint8), "C in 1..4"),
        ("patch_position", np.zeros((ex["patches"].shape[0] + 1, 2), np.int16), "shape"),
        ("meta", "{not json", "not valid JSON"),
        ("meta", "[1, 2]", "JSON object"),
        ("__key__", "a.b", "no '.' or '/'"),
        ("loss_mask", np.full_like(ex["loss_mask"], 2), "0 or 1"),
    ]
    for field, value, reason in cases:
        bad = dict(ex, **{field: value})
        with pytest.raises(ShardError) as e:
            check_example(bad)
        assert repr(field) in str(e.value) and reason in str(e.value), (field, str(e.value))
    bad = dict(ex)
    del bad["is_prompt"]
    with pytest.raises(ShardError, match="'is_prompt'.*missing"):
        check_example(bad)
    # one patch per image slot, -1 at the slots
    ex2 = next(e for e in make_examples(10, seed=2) if e["patches"].shape[0] > 1)
    with pytest.raises(ShardError, match="patches for .* image-patch slots"):
        check_example(dict(ex2, patches=ex2["patches"][1:], patch_position=ex2["patch_position"][1:]))
    tok = ex2["tokens"].copy()
    tok[np.flatnonzero(ex2["modality"] == 2)[0]] = 5
    with pytest.raises(ShardError, match="image-patch slots must hold -1"):
        check_example(dict(ex2, tokens=tok))


def test_safe_key_and_relpaths():
    assert safe_key("Pong-1-000003") == "Pong-1-000003"
    k1, k2 = safe_key("Pong/1/ckpt.0/3"), safe_key("Pong/1/ckpt_0/3")
    assert k1 != k2 and "." not in k1 and "/" not in k1
    assert len(safe_key("x" * 300)) <= 76
    rel = shard_relpath("demo-dqn-replay", "train", "parquet", 3, 12)
    assert rel == "data/demo-dqn-replay/train-00003-of-00012.parquet"
    name = parse_relpath(rel)
    assert (name.config, name.split, name.format, name.index, name.count) == (
        "demo-dqn-replay", "train", "parquet", 3, 12)
    assert shard_relpath("c", "test", "webdataset", 0, 1).endswith("test-00000-of-00001.tar.gz")
    for bad in [("c", "train", "zip", 0, 1), ("c", "train", "parquet", 2, 2),
                ("../c", "train", "parquet", 0, 1), ("c", "tr-ain", "parquet", 0, 1)]:
        with pytest.raises(ShardError):
            shard_relpath(*bad)
    with pytest.raises(ShardError):
        parse_relpath("elsewhere/train-00000-of-00001.tar.gz")


def test_example_nbytes_tracks_encoded_size(tmp_path):
    exs = make_examples(40, seed=3, channels=3)
    for fmt in FORMATS:
        f = write_shard(exs, str(tmp_path), shard_relpath("c", "train", fmt, 0, 1), fmt)
        est = sum(example_nbytes(e, fmt) for e in exs)
        # random pixels do not compress: the estimate must be close, not off by a domain factor
        assert 0.6 < est / f.bytes < 1.6, (fmt, est, f.bytes)
    big = make_example(np.random.default_rng(0), "k", length=200, images_per_step=6)
    small = make_example(np.random.default_rng(0), "k", length=200, images_per_step=0)
    assert example_nbytes(big) > example_nbytes(small) + 20 * 256


# ------------------------------------------------------------------------- writers

@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_both_formats(tmp_path, channels):
    exs = make_examples(30, seed=channels, channels=channels)
    for fmt in FORMATS:
        rel = shard_relpath("c", "train", fmt, 0, 1)
        f = write_shard(exs, str(tmp_path), rel, fmt)
        assert (f.path, f.examples, f.config, f.split, f.format) == (rel, 30, "c", "train", fmt)
        assert f.bytes == (tmp_path / rel).stat().st_size
        with open(tmp_path / rel, "rb") as fh:
            rows = list((iter_parquet if fmt == "parquet" else iter_tar)(fh, rel))
        assert [i for i, _ in rows] == list(range(30))
        for (_, got), want in zip(rows, exs, strict=True):
            assert_same_example(got, want)
    # the same tar stream without its gzip layer (plain .tar shards) reads the same
    plain = io.BytesIO(gzip.decompress((tmp_path / shard_relpath("c", "train", "webdataset", 0,
                                                                 1)).read_bytes()))
    for (_, got), want in zip(iter_tar(plain, "plain.tar"), exs, strict=True):
        assert_same_example(got, want)


def test_tar_layout_is_webdataset_with_fixed_metadata(tmp_path):
    exs = make_examples(3, seed=4)
    rel = shard_relpath("c", "train", "webdataset", 0, 1)
    write_shard(exs, str(tmp_path), rel, "webdataset")
    with tarfile.open(tmp_path / rel) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:8] == sorted(f"{exs[0]['__key__']}.{f}" for f in [
        "tokens.npy.zst", "modality.npy.zst", "loss_mask.npy.zst", "local_position.npy.zst",
        "is_prompt.npy.zst", "patches.npy.zst", "patch_position.npy.zst", "meta.txt"])
    assert len(names) == 8 * 3
    assert {m.mtime for m in members} == {0} and {m.uname for m in members} == {"trajcorpus"}
    # a gzip stream with no file name and mtime 0 (RFC 1952 header), so bytes depend on data only
    head = (tmp_path / rel).read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08" and head[3] == 0 and head[4:8] == bytes(4)


def test_tar_bytes_equal_webdatasets_own_writer():
    """Our stdlib writer keeps webdataset.TarWriter's conventions byte for byte (shards written
    before it replaced TarWriter stay identical), and writing never imports webdataset or torch."""
    import subprocess
    import sys

    import zstandard
    from webdataset import TarWriter

    from trajcorpus.shards import tarcodec

    exs = make_examples(4, seed=11)
    ours = io.BytesIO()
    write_tar(exs, ours)
    theirs = io.BytesIO()
    compressor = zstandard.ZstdCompressor(level=tarcodec.ZSTD_LEVEL, write_content_size=True)
    with gzip.GzipFile(fileobj=theirs, mode="wb", compresslevel=tarcodec.GZIP_LEVEL, mtime=0,
                       filename="") as stream:
        writer = TarWriter(stream, encoder=False, mtime=0, user="trajcorpus",
                           group="trajcorpus", mode=0o444)
        for ex in exs:
            writer.write(tarcodec.encode_members(ex, compressor))
        writer.tarstream.close()
    assert ours.getvalue() == theirs.getvalue()
    code = ("import io, sys\nfrom test_shards_synth import make_examples\n"
            "from trajcorpus.shards.tarcodec import write_tar\n"
            "write_tar(make_examples(2, seed=1), io.BytesIO())\n"
            "print(sorted(m for m in ('torch', 'webdataset') if m in sys.modules))")
    tests = Path(__file__).parent
    env = {"PYTHONPATH": f"{tests.parent / 'src'}:{tests}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_tar_shards_are_compact():
    """Eight members per example cost >= 8 KiB as a plain tar; the gzip stream must not."""
    exs = make_examples(40, seed=6, channels=1)
    for ex in exs:  # Atari-like: few distinct pixel values, so the payload itself is small
        ex["patches"] = (ex["patches"] // 64) * 64
    buf = io.BytesIO()
    write_tar(exs, buf)
    plain = 8 * 2 * 512 * len(exs)  # header + at least one data block per member
    assert len(buf.getvalue()) < plain / 3, (len(buf.getvalue()), plain)


@pytest.mark.parametrize(("est", "target", "floor", "want"), [
    (0, 256 << 20, 16, 1),                    # nothing yet: one (empty) shard
    (3 << 20, 256 << 20, 16, 1),              # under MIN_SHARD_BYTES: never split
    (31 << 20, 256 << 20, 16, 7),             # small corpus: split, >= 4 MiB each
    (600 << 20, 256 << 20, 16, 16),           # the floor
    (600 << 20, 256 << 20, 1, 3),             # floor off: by the byte target only
    (10 << 30, 256 << 20, 16, 40),            # big corpus: by the byte target
    (50_000, 4_000, 16, 13),                  # tiny targets still split by bytes
])
def test_plan_num_shards(est, target, floor, want):
    from trajcorpus.shards.layout import plan_num_shards

    assert plan_num_shards(est, target, floor) == want
    with pytest.raises(ShardError, match="must be positive"):
        plan_num_shards(est, 0, floor)


def test_parquet_schema_is_typed_and_row_grouped(tmp_path):
    exs = make_examples(50, seed=5)
    rel = shard_relpath("c", "train", "parquet", 0, 1)
    from trajcorpus.shards import parquetcodec

    with open(tmp_path / "x.parquet", "wb") as fh:
        parquetcodec.write_parquet(exs, fh, row_group_bytes=10_000)
    meta = pq.ParquetFile(tmp_path / "x.parquet").metadata
    assert meta.num_row_groups > 3 and meta.num_rows == 50
    write_shard(exs, str(tmp_path), rel, "parquet")
    schema = pq.read_schema(tmp_path / rel)
    assert str(schema.field("tokens").type) == "list<element: int32 not null>"
    assert str(schema.field("patches").type) == "binary"
    assert meta.row_group(0).column(1).compression == "ZSTD"
    feats = datasets.Features.from_arrow_schema(schema)
    assert feats.to_dict() == HF_FEATURES


def test_writes_are_deterministic_and_atomic(tmp_path):
    exs = make_examples(12, seed=6, channels=3)
    for fmt in FORMATS:
        rel = shard_relpath("c", "train", fmt, 0, 1)
        a = write_shard(exs, str(tmp_path / "a"), rel, fmt)
        b = write_shard(exs, str(tmp_path / "b"), rel, fmt)
        assert a == b and (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    # a bad example midway: no file under the shard name, no temporary left behind
    bad = [*exs[:5], dict(exs[5], tokens=exs[5]["tokens"].astype(np.int64)), *exs[6:]]
    for fmt in FORMATS:
        rel = shard_relpath("d", "train", fmt, 0, 1)
        with pytest.raises(ShardError, match="dtype int64"):
            write_shard(bad, str(tmp_path), rel, fmt)
        assert not (tmp_path / "data" / "d").exists() or not list((tmp_path / "data" / "d").iterdir())
    with pytest.raises(ShardError, match="ascending"):
        write_shard(exs[::-1], str(tmp_path), shard_relpath("e", "train", "parquet", 0, 1),
                    "parquet")


# ------------------------------------------------------------------------- manifest, verify

def test_manifest_merges_configs_and_verify_finds_problems(tmp_path, capsys):
    a = write_config(tmp_path, "alpha", make_examples(10, seed=7, prefix="a"), 2)
    b = write_config(tmp_path, "beta", make_examples(7, seed=8, prefix="b", channels=3), 3,
                     formats=("parquet",))
    write_manifest(str(tmp_path), a, "alpha", {"seed": 1, "catalog_entry": {"id": "alpha"}})
    uri = write_manifest(str(tmp_path), b, "beta", {"seed": 2})
    m = read_manifest(str(tmp_path))
    assert uri.endswith("manifest.json") and sorted(m.configs) == ["alpha", "beta"]
    assert m.configs["alpha"]["seed"] == 1 and len(m.files) == 4 + 3
    assert m.totals("alpha")["parquet"]["train"]["examples"] == 10
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert all({"path", "bytes", "sha256", "examples"} <= set(f) for f in raw["files"])
    # rewriting one config replaces its entry and keeps the other
    write_manifest(str(tmp_path), a[2:], "alpha", {"seed": 3})
    m = read_manifest(str(tmp_path))
    assert m.configs["alpha"]["seed"] == 3 and len(m.files_of("alpha")) == 2
    assert len(m.files_of("beta")) == 3
    write_manifest(str(tmp_path), a, "alpha", {"seed": 1})

    assert verify_output(str(tmp_path)).ok
    assert cli_main(["verify", str(tmp_path)]) == 0
    assert "OK, 7 files" in capsys.readouterr().out

    changed = tmp_path / a[0].path
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    (tmp_path / b[1].path).unlink()
    (tmp_path / "data" / "beta" / "train-00009-of-00010.parquet").write_bytes(b"x")
    (tmp_path / "README.md").write_text("card")  # outside data/: not a shard
    report = verify_output(str(tmp_path))
    assert not report.ok
    assert report.mismatched == [a[0].path]
    assert report.missing == [b[1].path]
    assert report.extra == ["data/beta/train-00009-of-00010.parquet"]
    assert cli_main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "changed: " + a[0].path in out and "missing: " + b[1].path in out


def test_manifest_refuses_bad_records(tmp_path):
    files = write_config(tmp_path, "c", make_examples(6, seed=9), 3, formats=("parquet",))
    with pytest.raises(ShardError, match="complete 00000..n-1"):
        write_manifest(str(tmp_path), files[:2], "c", {})
    with pytest.raises(ShardError, match="not 'd'"):
        write_manifest(str(tmp_path), files, "d", {})
    assert not (tmp_path / "manifest.json").exists()
    report = verify_output(str(tmp_path))
    assert not report.ok and "no manifest" in report.render()


# ------------------------------------------------------------------------- hub

def _hf_rows(out, *args, streaming, **kw):
    ds = datasets.load_dataset(str(out), *args, split="train", streaming=streaming,
                               cache_dir=str(out.parent / "hf-cache"), **kw)
    return ds, list(ds)


@pytest.mark.parametrize("streaming", [True, False])
def test_load_dataset_parquet_config(tmp_path, streaming):
    out = tmp_path / "out"
    exs = {"a": make_examples(9, seed=10, prefix="a"),
           "b": make_examples(5, seed=11, prefix="b", channels=3)}
    for name, e in exs.items():
        write_manifest(str(out), write_config(out, name, e, 2), name, {})
    configs = hub_configs(read_manifest(str(out)))
    assert configs == [
        {"config_name": "a", "data_files": [{"split": "train", "path": "data/a/train-*.parquet"}]},
        {"config_name": "b", "data_files": [{"split": "train", "path": "data/b/train-*.parquet"}]},
    ]
    write_readme(out)
    for name in ("a", "b"):
        ds, rows = _hf_rows(out, name, streaming=streaming)
        assert ds.features.to_dict() == HF_FEATURES
        by_key = {r["__key__"]: r for r in rows}
        assert sorted(by_key) == sorted(e["__key__"] for e in exs[name])
        for want in exs[name]:
            r = by_key[want["__key__"]]
            got = {f: np.asarray(r[f], dtype=want[f].dtype) for f in
                   ("tokens", "modality", "loss_mask", "local_position", "is_prompt")}
            got["patches"] = np.frombuffer(r["patches"], np.uint8).reshape(r["patches_shape"])
            got["patch_position"] = np.asarray(r["patch_position"], np.int16).reshape(-1, 2)
            assert_same_example(dict(got, __key__=r["__key__"], meta=r["meta"]), want)


@pytest.mark.parametrize("streaming", [True, False])
def test_load_dataset_webdataset(tmp_path, streaming):
    exs = make_examples(11, seed=12)
    exs[0]["meta"] = json.dumps({"prompt": None, "lineage": {"uri": "u"}})
    # both formats written: the tar loads with the generic builder
    out = tmp_path / "both"
    write_manifest(str(out), write_config(out, "c", exs, 2), "c", {})
    m = read_manifest(str(out))
    files = {s: str(out / p) for s, p in webdataset_data_files(m, "c").items()}
    assert files == {"train": str(out / "data/c/train-*.tar.gz")}
    ds = datasets.load_dataset("webdataset", data_files=files, split="train",
                               streaming=streaming, features=webdataset_features(),
                               cache_dir=str(tmp_path / "hf-cache"))
    _check_webdataset_rows(list(ds), exs)
    # only WebDataset written: the folder's configs point at the tar shards
    out2 = tmp_path / "tar-only"
    write_manifest(str(out2), write_config(out2, "c", exs, 3, formats=("webdataset",)), "c", {})
    assert hub_configs(read_manifest(str(out2)))[0]["data_files"][0]["path"] == \
        "data/c/train-*.tar.gz"
    write_readme(out2)
    ds2, rows = _hf_rows(out2, "c", streaming=streaming)
    assert ds2.features["tokens.npy.zst"] == datasets.List(datasets.Value("int32"))
    _check_webdataset_rows(rows, exs)


def _check_webdataset_rows(rows, exs):
    by_key = {r["__key__"]: r for r in rows}
    assert sorted(by_key) == [e["__key__"] for e in exs]
    for want in exs:
        r = by_key[want["__key__"]]
        got = {f: np.asarray(r[f"{f}.npy.zst"], dtype=want[f].dtype).reshape(want[f].shape)
               for f in EXAMPLE_FIELDS if f != "meta"}
        assert_same_example(dict(got, __key__=r["__key__"], meta=r["meta.txt"]), want)


def test_hub_configs_refuse_folders_without_a_common_format(tmp_path):
    write_manifest(str(tmp_path), write_config(tmp_path, "p", make_examples(2, seed=1), 1,
                                               formats=("parquet",)), "p", {})
    write_manifest(str(tmp_path), write_config(tmp_path, "w", make_examples(2, seed=2), 1,
                                               formats=("webdataset",)), "w", {})
    with pytest.raises(ShardError, match="no format in common"):
        hub_configs(read_manifest(str(tmp_path)))


def test_publish_uploads_a_verified_folder(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(
        ("create_repo", repo_id, kw, self.token)) or f"https://huggingface.co/datasets/{repo_id}")
    monkeypatch.setattr(HfApi, "create_commit", lambda self, **kw: calls.append(
        ("create_commit", kw)))
    out = tmp_path / "out"
    write_manifest(str(out), write_config(out, "c", make_examples(4, seed=13), 2), "c", {})
    with pytest.raises(ShardError, match="dataset card"):
        publish(str(out), "org/name")
    write_readme(out)
    url = publish(str(out), "org/name", private=True, token="hf_x")
    assert url == "https://huggingface.co/datasets/org/name"
    assert calls[0] == ("create_repo", "org/name",
                        {"repo_type": "dataset", "private": True, "exist_ok": True}, "hf_x")
    up = calls[1][1]  # one commit: every file of the folder, temporaries left out
    assert up["repo_id"] == "org/name" and up["repo_type"] == "dataset"
    uploaded = sorted(op.path_in_repo for op in up["operations"])
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                     if p.is_file() and ".tmp-" not in p.name)
    assert uploaded == on_disk and "manifest.json" in uploaded
    # a damaged folder is never uploaded
    calls.clear()
    (out / "data/c/train-00000-of-00002.tar.gz").write_bytes(b"x")
    with pytest.raises(ShardError, match="refusing to publish"):
        publish(str(out), "org/name")
    assert calls == []
    with pytest.raises(ShardError, match="local folder"):
        publish("gs://bucket/out", "org/name")


def test_write_and_verify_on_gcs(gcs):
    from trajcorpus import fs

    out = "gs://trajcorpus-test/shards-write/out"
    exs = make_examples(9, seed=14, channels=3)
    files = write_config(out, "c", exs, 2)
    write_manifest(out, files, "c", {"seed": 0})
    assert verify_output(out).ok
    m = read_manifest(out)
    assert [f.path for f in m.files] == sorted(f.path for f in files)
    with fs.open_uri(f"{out}/{files[0].path}", "rb") as fh:
        rows = list(iter_tar(fh, files[0].path))
    for (_, got), want in zip(rows, exs[0::2], strict=True):
        assert_same_example(got, want)
    # a write that fails midway publishes nothing under the shard name
    bad = [*exs[:3], dict(exs[3], meta="{")]
    rel = shard_relpath("d", "train", "parquet", 0, 1)
    with pytest.raises(ShardError, match="not valid JSON"):
        write_shard(bad, out, rel, "parquet")
    assert not fs.exists(f"{out}/{rel}")
    # changed and extra objects are found
    with fs.open_uri(f"{out}/{files[1].path}", "wb") as fh:
        fh.write(b"not the shard")
    with fs.open_uri(f"{out}/data/c/stray.parquet", "wb") as fh:
        fh.write(b"x")
    report = verify_output(out)
    assert report.mismatched == [files[1].path]
    assert report.extra == ["data/c/stray.parquet"]


def test_config_info_is_one_typed_record_on_both_sides(tmp_path):
    """The manifest's per-config info is checked against shards.configinfo.ConfigInfo when it is
    written and when it is read: a misspelt key or a mistyped value is one error naming it."""
    from trajcorpus.shards.configinfo import ConfigInfo

    a = write_config(tmp_path, "alpha", make_examples(4, seed=3, prefix="a"), 1,
                     formats=("parquet",))
    with pytest.raises(ShardError, match=r"'info.num_shard'.*Extra inputs"):
        write_manifest(str(tmp_path), a, "alpha", {"num_shard": 1})
    with pytest.raises(ShardError, match=r"'info.index.sha256'"):
        write_manifest(str(tmp_path), a, "alpha", {"index": {"path": "i", "bytes": 1}})
    with pytest.raises(ShardError, match=r"'info.seed'"):
        write_manifest(str(tmp_path), a, "alpha", {"seed": "1"})
    assert not (tmp_path / "manifest.json").exists()  # nothing half-written
    write_manifest(str(tmp_path), a, "alpha", {"seed": 1, "num_shards": 1})
    # a reader meets a record some other writer changed by hand: refused at once, by name
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["configs"]["alpha"]["info"]["statistic"] = {}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ShardError, match=r"config 'alpha' field 'info.statistic'"):
        read_manifest(str(tmp_path))
    # every key the job writes is declared (the demo outputs of the other tests are read through
    # read_manifest, so a key the job adds without declaring it fails those tests too)
    assert {"command", "catalog_entry", "settings", "source", "statistics", "index",
            "statistics_state", "tokenization", "action_mapping"} <= set(ConfigInfo.model_fields)

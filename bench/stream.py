"""Streaming throughput of the shard readers against bare baselines, in one run (issue 8).

Corpus: the real tokenized Atari sequences the Beam job writes for ``demo-dqn-replay`` (DQN Replay
fixture, 80x80 grayscale frames -> 25 patches + separator + action = 27 tokens per step, 37 steps
per 1024-token sequence), re-sharded into ``--copies`` shards per format (one copy of every
sequence per shard, keys made unique), so each shard compresses exactly like the job's own.

Every figure is tokens (L = 1024 positions per example) per CPU-second of this process (all its
threads), the best of ``--repeat`` passes over page-cached local shards; wall-clock rates are
printed beside them. Run:

    .venv/bin/python -P bench/stream.py     # writes bench/data/stream-bench/, prints a table

(``-P``: optional, keeps bench/ off sys.path; formerly needed because bench/tokenize.py shadowed the standard
library's tokenize module.)
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import torch

from trajcorpus import fs
from trajcorpus.shards import (
    NumpyLoader,
    ShardDataset,
    ShardRef,
    TorchShardDataset,
    read_manifest,
    shard_relpath,
    write_manifest,
    write_shard,
)
from trajcorpus.shards.tarcodec import _decompress, decode_npy

REPO = Path(__file__).resolve().parents[1]
CONFIG = "demo-dqn-replay"


def job_output(path: Path) -> Path:
    """The Beam job's output for the bundled DQN fixture (run once, then reused)."""
    if not (path / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "trajcorpus", "run", "--catalog",
                        str(REPO / "catalog.yaml"), "--dataset", CONFIG, "--output", str(path),
                        "--format", "both", "--quiet"], check=True, cwd=REPO)
    return path


def build_corpus(src: Path, out: Path, copies: int) -> Path:
    if (out / "manifest.json").exists():
        m = read_manifest(str(out))
        tars = m.files_of(CONFIG, fmt="webdataset")
        if len(m.files_of(CONFIG, fmt="parquet")) == copies and tars and \
                tars[0].path == shard_relpath(CONFIG, "train", "webdataset", 0, copies):
            return out  # built by this version (the tar extension changed to .tar.gz)
    shutil.rmtree(out, ignore_errors=True)
    examples = []
    for batch in NumpyLoader(ShardDataset(str(src), CONFIG, fmt="parquet"), batch_size=1):
        n = int(batch["patch_count"][0])
        examples.append({
            "__key__": batch["__key__"][0], "meta": batch["meta"][0],
            **{f: batch[f][0] for f in ("tokens", "modality", "loss_mask", "local_position",
                                         "is_prompt")},
            "patches": batch["patches"][0, :n], "patch_position": batch["patch_position"][0, :n],
        })
    examples.sort(key=lambda e: e["__key__"])
    files = []
    for fmt in ("parquet", "webdataset"):
        for i in range(copies):
            copy = [dict(e, __key__=f"c{i:02d}-{e['__key__']}") for e in examples]
            files.append(write_shard(copy, str(out), shard_relpath(CONFIG, "train", fmt, i,
                                                                   copies), fmt))
    write_manifest(str(out), files, CONFIG, {"bench": "copies of the job's sequences"})
    (out / "README.md").write_text(
        "---\nconfigs:\n- config_name: demo-dqn-replay\n  data_files:\n  - split: train\n"
        "    path: data/demo-dqn-replay/train-*.parquet\n---\n")
    return out


def plain_tars(paths: list[str], out: Path) -> list[str]:
    """Uncompressed copies of the ``.tar.gz`` shards: the same tar stream, without gzip (the
    layout before gzip, and what 'bare tar iteration' costs with no decompression at all)."""
    out.mkdir(parents=True, exist_ok=True)
    plain = []
    for p in paths:
        dst = out / Path(p).name.removesuffix(".gz")
        if not dst.exists():
            dst.write_bytes(gzip.decompress(Path(p).read_bytes()))
        plain.append(str(dst))
    return plain


def measure(fn: Callable[[], int], repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        runs.append((time.process_time() - c0, time.perf_counter() - w0, n))
    cpu, wall, n = min(runs)
    return {"examples": n, "cpu_s": cpu, "wall_s": wall,
            "cpu_spread": max(r[0] for r in runs) / cpu}


# ----------------------------------------------------------------------------- the contenders

def bare_pyarrow(paths: list[str], batch: int) -> Callable[[], int]:
    """Record batches -> NumPy values -> torch tensors, nothing else (the baseline)."""
    def run() -> int:
        n = 0
        for p in paths:
            for rb in pq.ParquetFile(p).iter_batches(batch_size=batch):
                for col in rb.columns:
                    if hasattr(col, "values"):
                        torch.from_numpy(col.values.to_numpy())
                    elif hasattr(col, "buffers") and col.buffers()[-1] is not None:
                        torch.frombuffer(col.buffers()[-1], dtype=torch.uint8)
                n += rb.num_rows
        return n
    return run


def bare_tar(paths: list[str], decode: bool) -> Callable[[], int]:
    """tarfile iteration reading every member (and, with ``decode``, zstd + npy decoding)."""
    def run() -> int:
        n = 0
        for p in paths:
            with tarfile.open(p, "r:*") as tar:  # gzip or plain, as the file is
                for info in tar:
                    data = tar.extractfile(info).read()
                    if info.name.endswith(".tokens.npy.zst"):
                        n += 1
                    if decode and info.name.endswith(".npy.zst"):
                        field = info.name.split(".")[1]
                        decode_npy(_decompress(data, p), field, p)
        return n
    return run


def webdataset_lib_tar(paths: list[str]) -> Callable[[], int]:
    """The webdataset library's own tar iterator (tarfile underneath), members as bytes."""
    from webdataset.tariterators import tar_file_iterator

    def run() -> int:
        n = 0
        for p in paths:
            with open(p, "rb") as f:
                for member in tar_file_iterator(f):
                    n += member["fname"].endswith(".tokens.npy.zst")
        return n
    return run


def ours_torch(out: str, fmt: str, batch: int, shards: list | None = None, **kw
               ) -> Callable[[], int]:
    ds = ShardDataset(out, CONFIG, fmt=fmt) if shards is None else ShardDataset(shards=shards)

    def run() -> int:
        n = 0
        for b in TorchShardDataset(ds, batch_size=batch, **kw).loader(num_workers=0):
            n += b["tokens"].shape[0]
        return n
    return run


def ours_numpy(out: str, fmt: str, batch: int, **kw) -> Callable[[], int]:
    ds = ShardDataset(out, CONFIG, fmt=fmt)
    return lambda: sum(b["tokens"].shape[0] for b in NumpyLoader(ds, batch, **kw))


def hf_streaming(out: str, fmt_name: str, batch: int, data_files: dict | None = None
                 ) -> Callable[[], int]:
    import datasets

    datasets.disable_progress_bars()

    def run() -> int:
        if data_files:
            ds = datasets.load_dataset("webdataset", data_files=data_files, split="train",
                                       streaming=True)
        else:
            ds = datasets.load_dataset(out, CONFIG, split="train", streaming=True)
        n = 0
        for b in ds.with_format(fmt_name).iter(batch_size=batch):
            n += len(b["__key__"])
        return n
    return run


def machine() -> str:
    cpu = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.python_version()}, torch "
            f"{torch.__version__}, load average {os.getloadavg()[0]:.1f} at start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job-output", type=Path, default=REPO / "bench/data/stream-atari")
    ap.add_argument("--work", type=Path, default=REPO / "bench/data/stream-bench")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-hf-tar", action="store_true", help="skip the slow datasets-tar run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    src = job_output(args.job_output)
    out = build_corpus(src, args.work, args.copies)
    m = read_manifest(str(out))
    L = int(next(iter(NumpyLoader(ShardDataset(str(out), CONFIG), 1)))["tokens"].shape[1])
    pq_paths = [fs.join(str(out), f.path) for f in m.files_of(CONFIG, fmt="parquet")]
    tar_files = m.files_of(CONFIG, fmt="webdataset")
    tar_paths = [fs.join(str(out), f.path) for f in tar_files]
    plain_paths = plain_tars(tar_paths, args.work.parent / "stream-bench-plain-tar")
    plain_refs = [ShardRef(p, f.examples, "webdataset") for p, f in zip(plain_paths, tar_files,
                                                                          strict=True)]
    n_ex = sum(f.examples for f in m.files_of(CONFIG, fmt="parquet"))
    for p in pq_paths + tar_paths + plain_paths:  # page cache
        Path(p).read_bytes()

    sm = read_manifest(str(src))
    src_tokens = sum(f.examples for f in sm.files_of(CONFIG, fmt="parquet")) * L
    sizes = {fmt: sum(f.bytes for f in sm.files_of(CONFIG, fmt=fmt)) / src_tokens
             for fmt in ("parquet", "webdataset")}

    b = args.batch
    rows: list[tuple[str, dict]] = []

    def add(name: str, fn: Callable[[], int], repeat: int = args.repeat) -> dict:
        r = measure(fn, repeat)
        if r["examples"] != n_ex:
            raise SystemExit(f"{name}: read {r['examples']} of {n_ex} examples")
        rows.append((name, r))
        tok = r["examples"] * L
        print(f"{name:<58} {tok / r['cpu_s'] / 1e6:6.2f} M tok/CPU-s  "
              f"{tok / r['wall_s'] / 1e6:6.2f} M tok/wall-s  (spread {r['cpu_spread']:.2f})",
              flush=True)
        return r

    print(f"corpus: {n_ex} examples x {L} tokens in {len(pq_paths)} Parquet + "
          f"{len(tar_paths)} tar shards; {machine()}")
    print(f"bytes on disk per token (job output, {src_tokens // L} sequences): Parquet "
          f"{sizes['parquet']:.2f}, WebDataset tar {sizes['webdataset']:.2f}")
    base_pq = add("pyarrow record batches -> torch (baseline)", bare_pyarrow(pq_paths, b))
    ours_pq = add("ours Parquet -> torch batches", ours_torch(str(out), "parquet", b,
                                                              verify=False))
    add("ours Parquet -> torch batches, sha256 verified", ours_torch(str(out), "parquet", b))
    add("ours Parquet -> torch, shuffle buffer 256 + shards", ours_torch(
        str(out), "parquet", b, verify=False, shuffle_buffer=256, seed=1))
    add("ours Parquet -> NumPy batches (JAX path)", ours_numpy(str(out), "parquet", b,
                                                               verify=False))
    hf_np = add("datasets streaming of our Parquet, numpy format",
                hf_streaming(str(out), "numpy", b))
    hf_t = add("datasets streaming of our Parquet, torch format",
               hf_streaming(str(out), "torch", b))
    base_tar = add("bare tar iteration (tarfile, read members)", bare_tar(tar_paths, False))
    add("bare tar iteration + zstd/npy decode", bare_tar(tar_paths, True))
    add("webdataset library tar_file_iterator (members as bytes)", webdataset_lib_tar(tar_paths))
    ours_tar = add("ours WebDataset -> torch batches", ours_torch(str(out), "webdataset", b,
                                                                 verify=False))
    add("ours WebDataset -> torch, sha256 verified", ours_torch(str(out), "webdataset", b))
    base_plain = add("plain .tar copies: bare tar iteration", bare_tar(plain_paths, False))
    ours_plain = add("plain .tar copies: ours -> torch batches", ours_torch(
        str(out), "webdataset", b, shards=plain_refs))
    if not args.skip_hf_tar:
        add("datasets streaming of our tar (webdataset builder), numpy",
            hf_streaming(str(out), "numpy", b, data_files={
                "train": str(out / f"data/{CONFIG}/train-*.tar.gz")}), repeat=1)

    def rate(r: dict) -> float:
        return r["examples"] * L / r["cpu_s"]

    summary = {
        "ours_parquet_torch_Mtok_per_cpu_s": rate(ours_pq) / 1e6,
        "ours_vs_pyarrow": rate(ours_pq) / rate(base_pq),
        "datasets_parquet_numpy_Mtok_per_cpu_s": rate(hf_np) / 1e6,
        "datasets_parquet_torch_Mtok_per_cpu_s": rate(hf_t) / 1e6,
        "ours_tar_vs_bare_tar": rate(ours_tar) / rate(base_tar),
        "ours_tar_vs_bare_plain_tar": rate(ours_tar) / rate(base_plain),
        "ours_plain_tar_vs_bare_plain_tar": rate(ours_plain) / rate(base_plain),
        "bytes_per_token": sizes,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

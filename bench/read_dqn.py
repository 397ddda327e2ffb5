"""Read rate and peak memory of the dqn-replay reader on a full-size checkpoint (run by hand).

Compares, on the same observation file in the same run: ``gzip -dc FILE > /dev/null``, raw
decompression with Python's zlib and with ISA-L (python-isal), and the reader itself
(``DqnReplaySource.read_unit``), once with the inflate it uses by default and once forced onto
zlib. Each reader measurement runs in a fresh child process so its peak RSS is its own.

The checkpoint is either one written by the fixture generator
(``/work/shared/fixture-gen/atari_dqn_replay.py --replay-capacity 1000000``, which needs Dopamine
and TensorFlow) passed with ``--run-dir``, or one synthesised here in the very same on-disk format
(``np.save`` payload in a gzip at Dopamine's level 9) by tiling the real Pong fixture's slots:
its episodes, their zero padding, frames and actions repeat, so the compression ratio is the real
one.

    .venv/bin/python -P bench/read_dqn.py --run-dir bench/data/dopamine/Pong/1
    .venv/bin/python -P bench/read_dqn.py --synthesize --slots 1000000 --checkpoints 2


"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "atari_dqn_replay" / "Pong" / "1" / "replay_logs"
FRAME = (84, 84)


# -------------------------------------------------------------------------------------------------
# Synthesis (same format as Dopamine's OutOfGraphReplayBuffer.save + batch_rl's logging)
# -------------------------------------------------------------------------------------------------
def _load_fixture(name: str) -> np.ndarray:
    with gzip.open(FIXTURE / f"$store$_{name}_ckpt.0.gz") as f:
        return np.load(f, allow_pickle=False)


def _save_small(path: Path, array: np.ndarray) -> None:
    with gzip.GzipFile(path, "wb") as f:  # Dopamine: gzip.GzipFile(fileobj=...) + np.save
        np.save(f, array)


def synthesize(run_dir: Path, slots: int, checkpoints: int) -> None:
    """Suffix 0 = a first log (add_count C-1); later suffixes = regular logs (add_count kC+C-1)."""
    logs = run_dir / "replay_logs"
    logs.mkdir(parents=True, exist_ok=True)
    term = _load_fixture("terminal")
    period = int(np.flatnonzero(term[: len(term) - 1])[-1]) + 1  # slots 0.. last terminal
    obs = _load_fixture("observation")[:period]
    act, rew, term = (_load_fixture("action")[:period], _load_fixture("reward")[:period],
                      term[:period])
    c = slots
    for k in range(checkpoints):
        add_count = k * c + c - 1
        lo = add_count - c if k else 0  # global add of slot 0's content ... see below
        slot = np.arange(c)
        if k == 0:
            glob = slot.copy()  # slots [0, C-1) hold adds [0, C-1); slot C-1 never written
        else:
            glob = np.where(slot == c - 1, lo, lo + 1 + slot)  # C-1 is the oldest add
        src = glob % period
        written = slot < c - 1 if k == 0 else np.ones(c, bool)
        _save_small(logs / f"$store$_action_ckpt.{k}.gz", np.where(written, act[src], 0))
        _save_small(logs / f"$store$_reward_ckpt.{k}.gz",
                    np.where(written, rew[src], 0).astype(np.float32))
        _save_small(logs / f"$store$_terminal_ckpt.{k}.gz",
                    np.where(written, term[src], 0).astype(np.uint8))
        _save_small(logs / f"add_count_ckpt.{k}.gz", np.array(add_count, np.int64))
        cursor = add_count % c
        _save_small(logs / f"invalid_range_ckpt.{k}.gz",
                    np.array([(cursor - 1 + i) % c for i in range(5)], np.int64))
        t = time.perf_counter()
        with gzip.GzipFile(logs / f"$store$_observation_ckpt.{k}.gz", "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "|u1", "fortran_order": False, "shape": (c, *FRAME)})
            step = 4096
            for a in range(0, c, step):
                block = obs[src[a:a + step]]
                block[~written[a:a + step]] = 0
                f.write(np.ascontiguousarray(block).tobytes())
        print(f"wrote checkpoint {k}: {c} slots in {time.perf_counter() - t:.0f} s", flush=True)


# -------------------------------------------------------------------------------------------------
# Measurements
# -------------------------------------------------------------------------------------------------
def time_gzip_cli(path: Path) -> float:
    t = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["gzip", "-dc", str(path)], stdout=null, check=True)
    return time.perf_counter() - t


def time_raw(path: Path, module) -> tuple[float, int]:
    t = time.perf_counter()
    d = module.decompressobj(16 + zlib.MAX_WBITS)
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 18):
            while chunk:
                n += len(d.decompress(chunk, 1 << 23))
                chunk = d.unconsumed_tail
    return time.perf_counter() - t, n


def peak_rss_mb() -> float:
    """This process's own high-water mark: VmHWM (ru_maxrss survives exec from a big parent)."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_read(run_dir: str, suffix: int, inflate: str) -> None:
    """Runs in a fresh process: read one unit, print JSON with time, counts and peak RSS."""
    from trajcorpus.schemas.episode import Rejected
    from trajcorpus.sources import dqn_replay, gzipnpy

    if inflate == "zlib":
        gzipnpy._inflate = zlib
    src = dqn_replay.DqnReplaySource(run_dir)
    unit = next(u for u in src.units() if u.param("suffix") == suffix)
    base_mb = peak_rss_mb()  # interpreter + imports
    t = time.perf_counter()
    episodes = steps = rejected = longest = 0
    for item in src.read_unit(unit):
        if isinstance(item, Rejected):
            rejected += 1
            continue
        episodes += 1
        steps += item.length
        longest = max(longest, item.length)
    dt = time.perf_counter() - t
    print(json.dumps({"seconds": dt, "episodes": episodes, "steps": steps,
                      "rejected": rejected, "longest_episode": longest,
                      "peak_rss_mb": peak_rss_mb(), "rss_after_imports_mb": base_mb,
                      "inflate": gzipnpy._inflate.__name__}))


def run_child(run_dir: Path, suffix: int, inflate: str) -> dict:
    out = subprocess.run([sys.executable, "-P", __file__, "--child", str(run_dir), "--suffix",
                          str(suffix), "--inflate", inflate], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                     if line.startswith("Model name"))
    except (StopIteration, OSError):
        model = platform.processor()
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, help="GAME/RUN folder with replay_logs/")
    p.add_argument("--synthesize", action="store_true")
    p.add_argument("--slots", type=int, default=1_000_000)
    p.add_argument("--checkpoints", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "data" / "dqn_synth" / "Pong" / "1")
    p.add_argument("--suffix", type=int, default=0, help="checkpoint (unit) to read")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--inflate", default="default", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_read(args.child, args.suffix, args.inflate)
        return 0
    run_dir = args.run_dir
    if args.synthesize:
        if args.out.exists():
            shutil.rmtree(args.out)
        synthesize(args.out, args.slots, args.checkpoints)
        run_dir = args.out
    if run_dir is None:
        p.error("give --run-dir or --synthesize")
    obs = run_dir / "replay_logs" / f"$store$_observation_ckpt.{args.suffix}.gz"
    with gzip.open(obs) as f:
        version = np.lib.format.read_magic(f)
        assert version == (1, 0), version
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
    payload = 0
    results: dict = {"machine": machine(), "file": str(obs), "compressed_mb": obs.stat().st_size / 1e6,
                     "slots": shape[0]}
    results["gzip_cli_s"] = time_gzip_cli(obs)
    results["zlib_raw_s"], payload = time_raw(obs, zlib)
    try:
        from isal import isal_zlib

        results["isal_raw_s"], _ = time_raw(obs, isal_zlib)
    except ImportError:
        results["isal_raw_s"] = None
    results["payload_mb"] = payload / 1e6
    results["reader"] = run_child(run_dir, args.suffix, "default")
    results["reader_zlib"] = run_child(run_dir, args.suffix, "zlib")
    mb = payload / 1e6
    for key in ("gzip_cli_s", "zlib_raw_s", "isal_raw_s"):
        if results[key]:
            results[key.replace("_s", "_mb_per_s")] = mb / results[key]
    for key in ("reader", "reader_zlib"):
        r = results[key]
        r["mb_per_s"] = mb / r["seconds"]
        r["slots_per_s"] = shape[0] / r["seconds"]
        r["ratio_to_gzip_cli"] = results["gzip_cli_s"] / r["seconds"]
        r["ratio_to_zlib_raw"] = results["zlib_raw_s"] / r["seconds"]
    truth = run_dir / "ground_truth.json"
    if truth.exists():  # the generator's own rollout record: the reader must agree with it
        ck = json.loads(truth.read_text())["checkpoints"][args.suffix]
        r = results["reader"]
        results["matches_ground_truth"] = (
            r["episodes"] == ck["complete_episodes_within"]
            and r["steps"] == ck["num_real_transitions"] - ck["trailing_incomplete_transitions"]
            and r["rejected"] == (1 if ck["trailing_incomplete_transitions"] else 0))
    results["load_average"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The 1/1000 DQN Replay sample of docs/scale.md's check: build it, run the job on it (by hand).

    .venv/bin/python -P bench/scale_sample.py --root /tmp/dqn-sample --build
    .venv/bin/python -P bench/scale_sample.py --root /tmp/dqn-sample --runner DirectRunner
    .venv/bin/python -P bench/scale_sample.py --root /tmp/dqn-sample --runner DaskRunner

The whole dataset is 60 games x 5 runs x 50 checkpoints of 1M transitions; 1/1000 of it is 15
full-size checkpoints. The sample lays them out as the dataset does: Pong runs 1 and 2 and
Breakout run 1, five consecutive checkpoints each (suffixes 0-4), 1,000,000 slots per checkpoint,
so 12 of the 15 units stitch their last episode into the next checkpoint as real units do. Frames,
actions and episode lengths are the real Pong and Breakout fixtures' slots tiled (as
``bench/read_dqn.py``'s ``synthesize``), in Dopamine's on-disk format: one gzip member per file,
deflate level 9. Compressing 7 GB per checkpoint at level 9 would take ~4 CPU-minutes each, so the
periodic frames are deflated once per game (each whole period after a full flush) and the
compressed period is repeated; a reader sees an ordinary single-member gzip file with the same
payload bytes as ``synthesize`` writes (checked by ``--check``). Pong run 2 links to run 1's
files: the same bytes under another run, as the job reads them.

Each runner run is the whole job (``run_job``, Parquet, 2 workers) in a fresh child process; a
sampler records, per process of the tree, peak RSS and CPU seconds (user + sys from
``/proc/PID/stat``), so per-core rates come from CPU time and do not depend on how loaded the
shared machine was (wall time and load average are reported beside them).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "atari_dqn_replay"
FRAME = (84, 84)
LAYOUT = (("Pong", ("1", "2")), ("Breakout", ("1",)))  # game, runs; run 2 links to run 1


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- building the sample -----------------------------------------------------------------------

def _fixture(game: str, name: str) -> np.ndarray:
    with gzip.open(FIXTURES / game / "1" / "replay_logs" / f"$store$_{name}_ckpt.0.gz") as f:
        return np.load(f, allow_pickle=False)


def _deflate(data: bytes, final: bool) -> bytes:
    """Raw deflate at gzip's level 9; a full flush ends the piece on a byte boundary with no
    reference back, so pieces compressed apart can be concatenated into one stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


def _slot_sources(k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Which add each slot of checkpoint ``k`` holds and whether it was written (as synthesize)."""
    slot = np.arange(c)
    if k == 0:
        return slot.copy(), slot < c - 1
    lo = k * c - 1
    return np.where(slot == c - 1, lo, lo + 1 + slot), np.ones(c, bool)


class _Game:
    """One game's periodic slots, with its whole-period frames deflated once."""

    def __init__(self, game: str):
        term = _fixture(game, "terminal")
        self.period = p = int(np.flatnonzero(term[: len(term) - 1])[-1]) + 1
        self.obs = _fixture(game, "observation")[:p]
        self.act, self.rew, self.term = (_fixture(game, "action")[:p],
                                         _fixture(game, "reward")[:p], term[:p])
        self.period_bytes = self.obs.tobytes()
        self.period_z = _deflate(self.period_bytes, final=False)
        self.period_crc = zlib.crc32(self.period_bytes)

    def observation_file(self, path: Path, k: int, c: int) -> None:
        """``$store$_observation_ckpt.k.gz``: header and frames up to the first period boundary,
        whole periods (the precompressed piece), the rest; CRC and size over the payload."""
        glob, written = _slot_sources(k, c)
        src = glob % self.period
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            head, {"descr": "|u1", "fortran_order": False, "shape": (c, *FRAME)})
        # slots 0..c-2 run through consecutive phases; slot c-1 is one frame apart
        first = min(c - 1, (self.period - src[0]) % self.period)
        whole = (c - 1 - first) // self.period
        rest = c - 1 - first - whole * self.period
        last = self.obs[src[c - 1]] if written[c - 1] else np.zeros(FRAME, np.uint8)
        lead = head.getvalue() + self.obs[src[0]:src[0] + first].tobytes()
        tail = self.obs[:rest].tobytes() + last.tobytes()
        crc = zlib.crc32(lead)
        for _ in range(whole):
            crc = zlib.crc32(self.period_bytes, crc)
        crc = zlib.crc32(tail, crc)
        size = len(lead) + whole * len(self.period_bytes) + len(tail)
        with open(path, "wb") as f:
            f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip, no name, level 9
            f.write(_deflate(lead, final=False))
            for _ in range(whole):
                f.write(self.period_z)
            f.write(_deflate(tail, final=True))
            f.write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))

    def checkpoint(self, logs: Path, k: int, c: int) -> None:
        save = _bench("read_dqn")._save_small
        glob, written = _slot_sources(k, c)
        src = glob % self.period
        save(logs / f"$store$_action_ckpt.{k}.gz", np.where(written, self.act[src], 0))
        save(logs / f"$store$_reward_ckpt.{k}.gz",
             np.where(written, self.rew[src], 0).astype(np.float32))
        save(logs / f"$store$_terminal_ckpt.{k}.gz",
             np.where(written, self.term[src], 0).astype(np.uint8))
        add_count = k * c + c - 1
        save(logs / f"add_count_ckpt.{k}.gz", np.array(add_count, np.int64))
        cursor = add_count % c
        save(logs / f"invalid_range_ckpt.{k}.gz",
             np.array([(cursor - 1 + i) % c for i in range(5)], np.int64))
        self.observation_file(logs / f"$store$_observation_ckpt.{k}.gz", k, c)


def build(root: Path, capacity: int, checkpoints: int) -> None:
    for game, runs in LAYOUT:
        g = _Game(game)
        first = root / game / runs[0] / "replay_logs"
        first.mkdir(parents=True, exist_ok=True)
        for k in range(checkpoints):
            t = time.process_time()
            g.checkpoint(first, k, capacity)
            print(f"{game}/{runs[0]} checkpoint {k}: {capacity:,} slots, "
                  f"{time.process_time() - t:.1f} CPU s", flush=True)
        for run in runs[1:]:
            logs = root / game / run / "replay_logs"
            logs.mkdir(parents=True, exist_ok=True)
            for f in first.iterdir():
                if not (logs / f.name).exists():
                    (logs / f.name).symlink_to(f)


def check(work: Path, capacity: int, checkpoints: int) -> None:
    """The payload of every file equals what ``synthesize`` writes for the same slots."""
    ours, theirs = work / "ours", work / "theirs" / "Pong" / "1"
    shutil.rmtree(work, ignore_errors=True)
    g = _Game("Pong")
    (ours / "replay_logs").mkdir(parents=True)
    for k in range(checkpoints):
        g.checkpoint(ours / "replay_logs", k, capacity)
    _bench("read_dqn").synthesize(theirs, capacity, checkpoints)
    for f in sorted((theirs / "replay_logs").iterdir()):
        a = gzip.decompress((ours / "replay_logs" / f.name).read_bytes())
        if a != gzip.decompress(f.read_bytes()):
            raise SystemExit(f"{f.name}: payload differs from synthesize's")
    print(f"check: {checkpoints} x {capacity:,} slots, every payload equals synthesize's")
    shutil.rmtree(work, ignore_errors=True)


# --- running the job on it ---------------------------------------------------------------------

def _stat(pid: int) -> tuple[float, str] | None:
    """(user + sys CPU seconds, command name) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), name


class TreeCpuRss(threading.Thread):
    """Per process of this process's tree: last CPU seconds seen and peak RSS (0.5 s samples)."""

    def __init__(self, interval: float = 0.5, snapshot: Path | None = None):
        super().__init__(daemon=True)
        self.interval, self._halt, self.snapshot = interval, False, snapshot
        self.procs: dict[int, dict] = {}
        self.mem = _bench("pipeline")

    def run(self) -> None:
        me, last = os.getpid(), 0.0
        while not self._halt:
            todo = [me]
            while todo:
                pid = todo.pop()
                st, rss = _stat(pid), self.mem._rss_kb(pid)
                if st is not None:
                    p = self.procs.setdefault(pid, {"name": st[1], "cpu_s": 0.0, "rss_mb": 0.0})
                    p["cpu_s"] = max(p["cpu_s"], st[0])
                    p["rss_mb"] = max(p["rss_mb"], rss / 1024)
                todo.extend(self.mem._children(pid))
            if self.snapshot and time.monotonic() - last > 30:  # a long run can be followed
                self.snapshot.write_text(json.dumps(self.procs))
                last = time.monotonic()
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt = True
        self.join()


def child(root: Path, work: Path, runner: str, workers: int) -> dict:
    from trajcorpus.pipelines import run_job

    pipeline = _bench("pipeline")
    cat = pipeline._catalog(root / "Pong" / "1", work)
    if runner == "DaskRunner":
        pipeline._local_dask_cluster(workers)
        args: list[str] = []
    else:
        args = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    tree = TreeCpuRss(snapshot=work.parent / f"{runner}.cpu.json")
    tree.start()
    load0, t, cpu0 = os.getloadavg(), time.perf_counter(), os.times()
    res = run_job(catalog=str(cat), dataset=pipeline.ID, output=str(work / "out"),
                  fmt="parquet", runner=runner, beam_args=args, progress=True)
    seconds, cpu1, load1 = time.perf_counter() - t, os.times(), os.getloadavg()
    tree.stop()
    me = os.getpid()
    driver = tree.procs.pop(me, {})
    steps = sum(json.loads(line)["length"] for line in
                (work / "out" / "audit" / f"{pipeline.ID}.episodes.jsonl").read_text().splitlines())
    return {"runner": runner, "seconds": seconds, "load_start": load0, "load_end": load1,
            "steps": steps, "episodes": res.total("read"), "rejected": res.total("rejected"),
            "kept": res.total("kept"), "sequences": res.total("sequences"),
            "tokens": sum(res.tokens().values()),
            "shards": sorted(f["bytes"] for f in res.files),
            "driver_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
            "driver_rss_mb": driver.get("rss_mb", 0.0),
            "waited_children_cpu_s": (cpu1.children_user + cpu1.children_system)
            - (cpu0.children_user + cpu0.children_system),
            "processes": sorted(tree.procs.values(), key=lambda p: -p["cpu_s"])}


def run(root: Path, runner: str, workers: int, work: Path, log: Path | None) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = log or work.parent / f"{runner}.log"
    with open(log, "w") as err:  # progress lines as they come, so a long run can be followed
        out = subprocess.run([sys.executable, "-P", __file__, "--root", str(root), "--child",
                              runner, "--workers", str(workers), "--work", str(work)],
                             check=True, stdout=subprocess.PIPE, stderr=err, text=True).stdout
    shutil.rmtree(work, ignore_errors=True)
    res = json.loads(out.strip().splitlines()[-1])
    text, scale = log.read_text(), _bench("scale")  # its patterns for the progress lines
    read_re, wrote_re = scale.READ, scale.WROTE
    reads = [float(m.group(2)) for m in read_re.finditer(text)]
    writes = [float(m.group(4)) for m in wrote_re.finditer(text)]
    res.update(read_task_s=reads, write_task_s=writes)
    return res


def summary(r: dict) -> str:
    workers = [p for p in r["processes"] if p["cpu_s"] > 5]
    cpus, rss = [p["cpu_s"] for p in workers], [p["rss_mb"] for p in workers]
    cpu = sum(cpus)
    shards = r["shards"]
    return "\n".join([
        f"{r['runner']}: {r['steps']:,} transitions, {r['episodes']:,} episodes "
        f"({r['rejected']} rejected), {r['sequences']:,} sequences, {r['tokens']:,} tokens",
        f"  wall {r['seconds']:.0f} s, load average {r['load_start'][0]:.1f} -> "
        f"{r['load_end'][0]:.1f}",
        f"  worker CPU {cpu:.0f} s over {len(workers)} process(es) "
        f"({', '.join(f'{c:.0f}' for c in cpus)}): "
        f"{r['steps'] / cpu:,.0f} transitions per CPU-second, "
        f"{1e6 * cpu / r['steps']:.1f} CPU-us per transition",
        f"  driver CPU {r['driver_cpu_s']:.0f} s, peak RSS driver {r['driver_rss_mb']:.0f} MB, "
        f"workers {', '.join(f'{m:.0f}' for m in rss)} MB",
        f"  {len(shards)} shards, {sum(shards) / 1e6:.1f} MB "
        f"({shards[0] / 1e6:.2f}-{shards[-1] / 1e6:.2f} MB each)",
        f"  tasks: {len(r['read_task_s'])} reads {sum(r['read_task_s']):.0f} s wall, "
        f"{len(r['write_task_s'])} shard writes {sum(r['write_task_s']):.0f} s wall"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="the sample's ROOT folder")
    p.add_argument("--build", action="store_true", help="write the sample under --root")
    p.add_argument("--check", type=Path, help="compare with synthesize in this scratch folder")
    p.add_argument("--capacity", type=int, default=1_000_000, help="slots per checkpoint")
    p.add_argument("--checkpoints", type=int, default=5, help="per run")
    p.add_argument("--runner", help="DirectRunner or DaskRunner: run the job on the sample")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--log", type=Path, help="keep the job's progress lines here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.root, a.work, a.child, a.workers)))
        return 0
    if a.check:
        check(a.check, a.capacity, a.checkpoints)
    if a.build:
        build(a.root, a.capacity, a.checkpoints)
    if a.runner:
        r = run(a.root, a.runner, a.workers, a.root.parent / f"work-{a.runner}", a.log)
        print(summary(r), flush=True)
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

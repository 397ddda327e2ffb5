"""The whole Beam job on DQN Replay data: transitions/s, ratio to a plain loop, peak RSS (by hand).

    .venv/bin/python -P bench/pipeline.py                      # synthesise if needed, then run
    .venv/bin/python -P bench/pipeline.py --checkpoints 4 --slots 250000 --workers 2
    .venv/bin/python -P bench/pipeline.py --runners DirectRunner,DaskRunner --skip-baseline
    .venv/bin/python -P bench/pipeline.py --profile loop       # cProfile's top entries instead
    .venv/bin/python -P bench/pipeline.py --kind minari --copies 10   # MuJoCo (or: captions)

Data: DQN Replay checkpoints in Dopamine's on-disk format, synthesised by ``bench/read_dqn.py``'s
``synthesize`` (the real Pong fixture's slots tiled, gzip level 9) under ``bench/data/pipeline/``
(git-ignored). The "large" corpus is ``--checkpoints`` x ``--slots`` transitions, the "small" one
the same number of checkpoints of ``--slots / --checkpoints`` each: both keep every worker busy,
so their peak memory compares 1x and Nx the transitions with the same parallelism. ``--run-dir`` runs the job on another replay run instead
(e.g. the real 1M-slot Dopamine checkpoint ``bench/data/dopamine/Pong/1``: one unit).
``--kind minari`` / ``captions``: the bundled Minari (Hopper + HalfCheetah) or COCO-layout
fixtures copied ``--copies`` times under distinct dataset / image ids, job (and for Minari the
stage limit) only.

Each measurement runs in a fresh child process; peak RSS is sampled every 0.1 s over the child and
all its descendants (the DirectRunner's worker processes, or the DaskRunner's local cluster:
``--workers`` single-threaded worker processes started for the run), summed, and per process; CPU
time is user+sys of the child and every descendant it waited for. The **stage limit** is read +
tokenize of the same units in ``--workers`` plain processes (one unit per task), nothing else:
what the job would cost if everything between the stages were free. The baseline is the same work
with the same library functions in one plain Python loop (read, tokenize, cut windows, spill,
filter, prompt candidates, prompts, Parquet shards by the same byte target), no Beam.
``--profile loop|job`` runs the loop, or the job with its workers in this process (DirectRunner
``in_memory``), under cProfile on the first corpus and prints the top entries.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# --- memory ------------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """Child processes of every thread of ``pid`` (Beam starts its workers from a thread)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeRss(threading.Thread):
    """Peak of the summed RSS of this process and all its descendants, and of each alone."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval, self.peak_kb, self.peak_self_kb, self._halt = interval, 0, 0, False
        self.peak_child_kb = 0  # the largest single descendant (a Beam worker)

    def run(self) -> None:
        me = os.getpid()
        while not self._halt:
            todo, total = [me], 0
            while todo:
                pid = todo.pop()
                rss = _rss_kb(pid)
                total += rss
                if pid != me:
                    self.peak_child_kb = max(self.peak_child_kb, rss)
                todo.extend(_children(pid))
            self.peak_kb = max(self.peak_kb, total)
            self.peak_self_kb = max(self.peak_self_kb, _rss_kb(me))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt = True
        self.join()


# --- data (bench/pipeline_data.py) -------------------------------------------------------------

def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_data = _load("pipeline_data")
ID, ensure_data, _catalog = _data.ID, _data.ensure_data, _data.catalog


# --- children ----------------------------------------------------------------------------------

def _local_dask_cluster(workers: int) -> None:
    """Size the job's own local cluster: ``workers`` single-threaded processes, like the
    DirectRunner's (the job's default is one per core)."""
    import dask.distributed as ddist

    real = ddist.LocalCluster

    def sized(*args, **kwargs):
        kwargs["n_workers"] = workers
        return real(*args, **kwargs)

    ddist.LocalCluster = sized


def child_job(run_dir: Path, work: Path, workers: int, fmt: str, shard_bytes: int,
              min_shards: int, runner: str = "DirectRunner",
              mode: tuple[str, ...] = ("--direct_running_mode=multi_processing",),
              kind: str = "dqn") -> dict:
    from trajcorpus.pipelines import run_job

    cat = _catalog(run_dir, work, kind)
    if runner == "DaskRunner":
        _local_dask_cluster(workers)
        args = []
    else:
        args = [f"--direct_num_workers={workers}", *mode]
    rss = TreeRss()
    rss.start()
    t = time.perf_counter()
    res = run_job(catalog=str(cat), dataset=ID, output=str(work / "out"), fmt=fmt,
                  runner=runner, beam_args=[*args, f"--shard_bytes={shard_bytes}",
                                            f"--min_shards={min_shards}"],
                  progress=True)
    seconds = time.perf_counter() - t
    rss.stop()
    steps = rejected_steps = 0
    for line in (work / "out" / "audit" / f"{ID}.episodes.jsonl").read_text().splitlines():
        steps += json.loads(line)["length"]
    return {"runner": runner, "seconds": seconds, "steps": steps,
            "episodes": res.total("read"),
            "rejected": res.total("rejected"), "kept": res.total("kept"),
            "sequences": res.total("sequences"), "bytes": sum(f["bytes"] for f in res.files),
            "files": len(res.files), "peak_rss_mb": rss.peak_kb / 1024,
            "peak_rss_driver_mb": rss.peak_self_kb / 1024,
            "peak_rss_worker_mb": rss.peak_child_kb / 1024, "rejected_steps": rejected_steps}


def child_loop(run_dir: Path, work: Path, shard_bytes: int, min_shards: int) -> dict:
    """The same work as the job, one process, no Beam: the baseline."""
    import numpy as np

    from trajcorpus.pipelines import prompts
    from trajcorpus.pipelines.filter import filter_task, is_kept
    from trajcorpus.pipelines.sequences import assemble, cut_windows, join_steps, step_sizes
    from trajcorpus.pipelines.spill import SpillReader, SpillWriter
    from trajcorpus.pipelines.stages import sequence_key, shard_of
    from trajcorpus.schemas.catalog import load_catalog
    from trajcorpus.schemas.episode import EpisodeSummary, Rejected
    from trajcorpus.shards.example import example_nbytes
    from trajcorpus.shards.layout import plan_num_shards, shard_relpath
    from trajcorpus.shards.writer import write_shard
    from trajcorpus.sources import open_source
    from trajcorpus.tokenizers import EpisodeTokenizer

    entry = load_catalog(str(_catalog(run_dir, work))).get(ID)
    seq, seed = entry.sequence, 0
    rss = TreeRss()
    rss.start()
    t = time.perf_counter()
    src = open_source(entry.kind, entry.uri, dataset=entry.id, options=entry.options,
                      task_template=entry.task, agent_template=entry.agent)
    tokenizer = EpisodeTokenizer(entry.tokenize, None)
    summaries, refs, steps, est = [], [], 0, 0
    (work / "spill").mkdir(parents=True, exist_ok=True)
    for unit in src.units():
        writer = SpillWriter(str(work / "spill" / f"{unit.index}.spill"))
        for ep in src.read_unit_safely(unit):
            if isinstance(ep, Rejected):
                continue
            tok = tokenizer.tokenize(ep)
            sizes = step_sizes(tok)
            steps += ep.length
            summaries.append(EpisodeSummary(ep.dataset, ep.task, ep.agent, ep.episode_id,
                                            ep.order, ep.return_, ep.length))
            wins = cut_windows(sizes, seq.length, seq.prompt_tokens, lambda w, e=ep.episode_id:
                               prompts.wants_prompt(seed, e, w, seq.prompt_probability),
                               ep.episode_id)
            for w in wins:
                part = tok.span(w.start, w.stop)
                if w.index == 0:
                    ex = {"__key__": "k", **assemble(part, None, seq.length).as_dict(),
                          "meta": "{}"}
                    est += example_nbytes(ex) * len(wins)
                off, n = writer.write(part)
                refs.append((sequence_key(ep.episode_id, w.index), ep.task, ep.agent,
                             ep.episode_id, ep.return_, w, int(sizes[w.start:w.stop].max()),
                             writer.uri, off, n))
        writer.close()
    by_task = defaultdict(list)
    for s in summaries:
        by_task[s.task].append(s)
    thr = {task: filter_task(task, rows, entry.filter).threshold for task, rows in by_task.items()}
    kept = [r for r in refs if is_kept(r[4], thr[r[1]])]
    cands = defaultdict(list)
    for s in summaries:
        if is_kept(s.return_, thr[s.task]):
            cands[(s.task, s.agent)].append(s.episode_id)
    cands = {k: prompts.bottom_k(seed, v) for k, v in cands.items()}
    windows_of = defaultdict(list)
    for r in kept:
        if r[3] in cands[(r[1], r[2])]:
            windows_of[r[3]].append(r)
    reader = SpillReader()

    def prompt_for(r):
        if not r[5].wants_prompt:
            return None
        c = prompts.choose_prompt(seed, r[3], r[5].index, cands[(r[1], r[2])],
                                  seq.prompt_end_share)
        ws = sorted(windows_of[c.episode_id], key=lambda x: x[5].start)
        span = prompts.prompt_steps(c.mode, c.u, ws[-1][5].stop, max(x[6] for x in ws),
                                    seq.prompt_tokens)
        if span is None:
            return None
        cover = [x for x in ws if x[5].start < span[1] and x[5].stop > span[0]]
        return join_steps([(x[5].start, reader.read(x[7], x[8], x[9], cache=True))
                           for x in cover], span[0], span[1])

    n = plan_num_shards(est, shard_bytes, min_shards)
    files = []
    for s in range(n):
        mine = sorted((r for r in kept if shard_of(r[0], n) == s), key=lambda r: r[0])

        def examples(mine=mine):
            for r in mine:
                arrays = assemble(reader.read(r[7], r[8], r[9]), prompt_for(r), seq.length)
                yield {"__key__": r[0], **arrays.as_dict(),
                       "meta": json.dumps({"episode_id": r[3], "window": r[5].index})}

        files.append(write_shard(examples(), str(work / "out"),
                                 shard_relpath(ID, "train", "parquet", s, n), "parquet"))
    seconds = time.perf_counter() - t
    rss.stop()
    return {"seconds": seconds, "steps": steps, "sequences": len(kept),
            "bytes": sum(f.bytes for f in files), "files": len(files),
            "peak_rss_mb": rss.peak_kb / 1024, "peak_rss_driver_mb": rss.peak_self_kb / 1024,
            "check": int(np.int64(len(kept)))}


def _limit_unit(args: tuple[str, str, int]) -> tuple[int, float]:
    """Read and tokenize one unit, nothing else: (transitions, CPU seconds of this process)."""
    from trajcorpus.schemas.catalog import load_catalog
    from trajcorpus.schemas.episode import Rejected
    from trajcorpus.sources import open_source
    from trajcorpus.tokenizers import EpisodeTokenizer

    catalog, _, index = args
    entry = load_catalog(catalog).get(ID)
    src = open_source(entry.kind, entry.uri, dataset=entry.id, options=entry.options,
                      task_template=entry.task, agent_template=entry.agent)
    tokenizer = EpisodeTokenizer(entry.tokenize, None)
    c0, steps = time.process_time(), 0
    for ep in src.read_unit_safely(src.units()[index]):
        if not isinstance(ep, Rejected):
            tokenizer.tokenize(ep)
            steps += ep.length
    return steps, time.process_time() - c0


def child_limit(run_dir: Path, work: Path, workers: int, kind: str = "dqn") -> dict:
    """The stage limit: read + tokenize of the same units in ``workers`` plain processes (one
    unit per task, like the job's ReadUnit), nothing else: no windows, spill, prompts or shards."""
    import multiprocessing as mp

    from trajcorpus.schemas.catalog import load_catalog
    from trajcorpus.sources import open_source

    cat = str(_catalog(run_dir, work, kind))
    entry = load_catalog(cat).get(ID)
    units = open_source(entry.kind, entry.uri, dataset=entry.id, options=entry.options,
                        task_template=entry.task, agent_template=entry.agent).units()
    rss = TreeRss()
    rss.start()
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:
        done = pool.map(_limit_unit, [(cat, str(run_dir), u.index) for u in units], chunksize=1)
    seconds = time.perf_counter() - t
    rss.stop()
    return {"seconds": seconds, "steps": sum(s for s, _ in done), "units": len(units),
            "task_cpu_s": sum(c for _, c in done), "peak_rss_mb": rss.peak_kb / 1024}


def run_child(kind: str, run_dir: Path, workers: int, fmt: str, shard_bytes: int,
              min_shards: int, runner: str = "DirectRunner", corpus: str = "dqn") -> dict:
    work = Path(f"/tmp/trajcorpus-bench-{kind}-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = [sys.executable, "-P", __file__, "--child", kind, "--run-dir", str(run_dir),
           "--workers", str(workers), "--format", fmt, "--work", str(work),
           "--shard-bytes", str(shard_bytes), "--min-shards", str(min_shards),
           "--runners", runner, "--kind", corpus]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(work, ignore_errors=True)
    res = json.loads(out.strip().splitlines()[-1])
    # user+sys of the child and every descendant it waited for (Beam's workers, the pool)
    res["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return res


def profile(kind: str, run_dir: Path, shard_bytes: int, min_shards: int, top: int) -> int:
    """cProfile one run of the loop, or of the job with its workers in this process."""
    import cProfile
    import pstats

    work = Path(f"/tmp/trajcorpus-bench-profile-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prof = cProfile.Profile()
    prof.enable()
    if kind == "loop":
        res = child_loop(run_dir, work, shard_bytes, min_shards)
    else:
        res = child_job(run_dir, work, 1, "parquet", shard_bytes, min_shards, "DirectRunner",
                        ["--direct_running_mode=in_memory"])
    prof.disable()
    shutil.rmtree(work, ignore_errors=True)
    print(f"{kind}: {res['steps']:,} transitions in {res['seconds']:.1f}s under cProfile")
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return 0


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, nproc={os.cpu_count()}, "
            f"Python {platform.python_version()}, load average {load[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slots", type=int, default=250_000, help="transitions per checkpoint")
    p.add_argument("--checkpoints", type=int, default=4)
    p.add_argument("--run-dir", type=Path, help="run the job on this GAME/RUN folder only")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--format", default="parquet", choices=("parquet", "webdataset", "both"))
    p.add_argument("--shard-bytes", type=int, default=256 << 20, help="the job's --shard_bytes")
    p.add_argument("--min-shards", type=int, default=16, help="the job's --min_shards")
    p.add_argument("--skip-baseline", action="store_true", help="no plain loop")
    p.add_argument("--skip-limit", action="store_true", help="no stage limit")
    p.add_argument("--runners", default="DirectRunner",
                   help="comma-separated: DirectRunner, DaskRunner (a local cluster of --workers)")
    p.add_argument("--profile", choices=("loop", "job"),
                   help="instead: cProfile the plain loop or the job (in one process: "
                        "DirectRunner in_memory) on the first corpus, print the top entries")
    p.add_argument("--top", type=int, default=25, help="entries the profile prints")
    p.add_argument("--kind", default="dqn", choices=("dqn", "minari", "captions"),
                   help="corpus: DQN Replay (default), Minari MuJoCo or COCO captions, the last "
                        "two the bundled fixtures tiled --copies times (job + stage limit only)")
    p.add_argument("--copies", type=int, default=10, help="--kind minari/captions: tiling")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        if a.child == "job":
            res = child_job(a.run_dir, a.work, a.workers, a.format, a.shard_bytes, a.min_shards,
                            a.runners, kind=a.kind)
        elif a.child == "limit":
            res = child_limit(a.run_dir, a.work, a.workers, a.kind)
        else:
            res = child_loop(a.run_dir, a.work, a.shard_bytes, a.min_shards)
        print(json.dumps(res))
        return 0
    print(f"machine: {machine()}", flush=True)
    if a.kind != "dqn":
        synth = _data.synth_minari if a.kind == "minari" else _data.synth_captions
        corpora = {a.kind: synth(a.copies)}
        a.skip_baseline = True  # the plain loop is DQN Replay's (no text model, no packing)
        a.skip_limit = a.skip_limit or a.kind == "captions"  # needs the job's text model
    elif a.run_dir:
        corpora = {"run": a.run_dir.resolve()}
    else:
        small, large = ensure_data(a.slots, a.checkpoints)
        corpora = {"small": small, "large": large}
    if a.profile:
        return profile(a.profile, next(iter(corpora.values())), a.shard_bytes, a.min_shards,
                       a.top)
    rows = {}
    runners = a.runners.split(",")
    for name, run_dir in corpora.items():
        row = {}
        if not a.skip_limit:
            row["limit"] = lim = run_child("limit", run_dir, a.workers, "parquet", a.shard_bytes,
                                           a.min_shards, corpus=a.kind)
            print(f"{name} stage limit (read + tokenize, {a.workers} plain processes): "
                  f"{lim['steps']:,} transitions, {lim['seconds']:.1f}s = "
                  f"{lim['steps'] / lim['seconds']:,.0f}/s, CPU {lim['cpu_s']:.1f}s "
                  f"(tasks {lim['task_cpu_s']:.1f}s)", flush=True)
        for runner in runners:
            row[runner] = job = run_child("job", run_dir, a.workers, a.format, a.shard_bytes,
                                          a.min_shards, runner, a.kind)
            _print_job(f"{name} {runner}", job)
        row["job"] = row[runners[0]]
        if not a.skip_baseline:
            row["loop"] = run_child("loop", run_dir, 1, "parquet", a.shard_bytes, a.min_shards)
        rows[name] = row
        j = row["job"]
        for runner in runners[1:]:
            o = row[runner]
            print(f"{name}: {runner}/{runners[0]} throughput "
                  f"{j['seconds'] / o['seconds']:.2f}x, largest worker peak RSS "
                  f"{o['peak_rss_worker_mb'] / j['peak_rss_worker_mb']:.2f}x", flush=True)
        if "loop" in row:
            lp = row["loop"]
            print(f"{name}: plain loop {lp['seconds']:.1f}s = {lp['steps'] / lp['seconds']:,.0f}/s,"
                  f" peak RSS {lp['peak_rss_mb']:.0f} MB; job/loop throughput "
                  f"{lp['seconds'] / j['seconds']:.2f}x; CPU {lp['cpu_s']:.1f}s", flush=True)
        if "limit" in row:
            lim = row["limit"]
            print(f"{name}: job/stage limit throughput {lim['seconds'] / j['seconds']:.2f}x "
                  f"(wall), CPU time job/limit {j['cpu_s'] / lim['cpu_s']:.2f}x; CPU-time-based "
                  f"rate on {a.workers} cores: {j['steps'] * a.workers / j['cpu_s']:,.0f}/s",
                  flush=True)
    for runner in runners if "small" in rows and "large" in rows else ():
        s, g = rows["small"][runner], rows["large"][runner]
        print(f"{runner}: peak RSS growth {s['steps']:,} -> {g['steps']:,} transitions: "
              f"{g['peak_rss_mb'] / s['peak_rss_mb']:.2f}x (tree), "
              f"{g['peak_rss_driver_mb'] / s['peak_rss_driver_mb']:.2f}x (driver), "
              f"{g['peak_rss_worker_mb'] / s['peak_rss_worker_mb']:.2f}x (largest worker)")
    print(json.dumps(rows))
    return 0


def _print_job(name: str, j: dict) -> None:
    print(f"{name}: {j['steps']:,} transitions, job {j['seconds']:.1f}s = "
          f"{j['steps'] / j['seconds']:,.0f}/s, peak RSS {j['peak_rss_mb']:.0f} MB (tree), "
          f"{j['peak_rss_driver_mb']:.0f} MB (driver), {j['peak_rss_worker_mb']:.0f} MB "
          f"(largest worker); {j['sequences']:,} sequences, "
          f"{j['bytes'] / 1e6:.1f} MB in {j['files']} file(s); CPU {j['cpu_s']:.1f}s "
          f"(user+sys, all processes)", flush=True)


if __name__ == "__main__":
    sys.exit(main())

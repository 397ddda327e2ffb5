"""Per-token stage costs of the job by modality, on DirectRunner and DaskRunner (by hand).

    .venv/bin/python -P bench/scale.py                         # the demo configs, both runners
    .venv/bin/python -P bench/scale.py --datasets demo-minari --runners DaskRunner
    .venv/bin/python -P bench/scale.py --plan --atari-rate 9000     # the docs/scale.md tables

docs/scale.md extrapolates these to the whole DQN Replay Dataset and a Gato-scale mixture, and
checks the plan on a 1/1000 DQN sample (``bench/scale_sample.py``: CPU time per process). Each
run is the whole job (``run_job``, Parquet shards) in a fresh child process on one demo config;
the workers' own progress lines give the time each read task (read + tokenize + cut + spill) and
each shard task (read back, assemble, encode, write) took, so Beam's and Dask's fixed start-up
cost (which dominates a small demo's wall time) is left out of the per-token figures and
reported apart. Worker lines reach this process through stderr on both runners (the DaskRunner
here starts its local cluster, whose workers inherit stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMOS = ("demo-dqn-replay", "demo-minari", "demo-rlds", "demo-coco-captions")
READ = re.compile(r"\] read unit \d+/\d+ .*: (\d+) episodes, .* \(([\d.]+)s\)")
WROTE = re.compile(r"\] wrote (\S+): (\d+) examples, ([\d.]+) MB \(([\d.]+)s\)")


def child(dataset: str, runner: str, work: Path) -> dict:
    from trajcorpus.pipelines import run_job

    args = (["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
            if runner == "DirectRunner" else [])
    t = time.perf_counter()
    res = run_job(catalog=str(REPO / "catalog.yaml"), dataset=dataset, output=str(work / "out"),
                  fmt="parquet", runner=runner, beam_args=args, progress=True)
    seconds = time.perf_counter() - t
    steps = sum(json.loads(line)["length"] for line in
                (work / "out/audit" / f"{dataset}.episodes.jsonl").read_text().splitlines())
    return {"seconds": seconds, "steps": steps, "episodes": res.total("read"),
            "sequences": res.total("sequences"), "tokens": sum(res.tokens().values()),
            "bytes": sum(f["bytes"] for f in res.files), "shards": len(res.files)}


def measure(dataset: str, runner: str) -> dict:
    work = Path(f"/tmp/trajcorpus-scale-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-P", __file__, "--child", dataset, "--runners",
                           runner, "--work", str(work)], check=True, capture_output=True,
                          text=True)
    shutil.rmtree(work, ignore_errors=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    reads = [float(m.group(2)) for m in READ.finditer(proc.stderr)]
    writes = [float(m.group(4)) for m in WROTE.finditer(proc.stderr)]
    res.update(runner=runner, dataset=dataset, read_s=sum(reads), read_tasks=len(reads),
               write_s=sum(writes), write_tasks=len(writes))
    res["task_s"] = res["read_s"] + res["write_s"]
    res["fixed_s"] = res["seconds"] - res["task_s"] / 2  # 2 workers: what the tasks do not explain
    return res


# --- the plan (docs/scale.md): arithmetic on measured rates -----------------------------------

DQN_TRANSITIONS = 60 * 5 * 50 * 1_000_000  # games x runs x checkpoints x transitions
# (vCPU-hour, GB-hour, shuffle GB) Dataflow batch list prices assumed (see docs/scale.md)
DATAFLOW = (0.056, 0.003557, 0.011)
N2_STANDARD_16 = 0.7769  # $/hour, on demand, 16 vCPU 64 GB (assumed list price)


def plan(atari_rate: float, atari_out: float, atari_bytes: float, photo_rate: float,
         photo_bytes: float, mujoco_rate: float, mujoco_out: float, mujoco_bytes: float,
         workers: int, gb_per_vcpu: float = 4.0) -> list[dict]:
    """Rows: core-hours, wall hours on ``workers`` vCPUs, shard bytes and cost, per workload.

    Rates are per core (steps read/s for Atari and MuJoCo, records/s for image-caption);
    ``*_out`` are output tokens (whole sequences, after the return filter) per step read. The
    mixture is 1.5T output tokens split by the catalog's mixture weights (all 1.0: Atari 2/7,
    MuJoCo 2/7, image-caption 2/7, robot 1/7; robot priced as image-caption, its camera frames
    dominate). Shuffled bytes: ~20 per step (window references and summaries), ~600 per
    caption record."""
    rows = []

    def row(name, core_s, out_bytes, shuffle_gb):
        core_h = core_s / 3600
        df = core_h * (DATAFLOW[0] + gb_per_vcpu * DATAFLOW[1]) + shuffle_gb * DATAFLOW[2]
        rows.append({"workload": name, "core_hours": core_h, "wall_h": core_h / workers,
                     "shard_tb": out_bytes / 1e12, "shards": math.ceil(out_bytes / (256 << 20)),
                     "dataflow_usd": df, "dask_usd": core_h / 16 * N2_STANDARD_16})

    row("DQN Replay, all 60 games", DQN_TRANSITIONS / atari_rate,
        DQN_TRANSITIONS * atari_out * atari_bytes, DQN_TRANSITIONS * 20 / 1e9)
    total = 1.5e12
    atari_t, mujoco_t, photo_t, robot_t = (total * w / 7 for w in (2, 2, 2, 1))
    steps = atari_t / atari_out
    row("Gato mix: Atari (2/7)", steps / atari_rate, atari_t * atari_bytes, steps * 20 / 1e9)
    steps = mujoco_t / mujoco_out
    row("Gato mix: MuJoCo (2/7)", steps / mujoco_rate, mujoco_t * mujoco_bytes,
        steps * 20 / 1e9)
    for name, toks in (("Gato mix: image-caption (2/7)", photo_t), ("Gato mix: robot (1/7)",
                                                                      robot_t)):
        records = toks / 156  # 192x192 -> 144 patches + ~12 caption tokens
        row(name, records / photo_rate, toks * photo_bytes, records * 600 / 1e9)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DEMOS))
    p.add_argument("--runners", default="DirectRunner,DaskRunner")
    p.add_argument("--plan", action="store_true", help="print docs/scale.md's tables")
    p.add_argument("--atari-rate", type=float, default=9000, help="transitions/s per core")
    p.add_argument("--atari-out", type=float, default=7.72, help="output tokens per step read")
    p.add_argument("--atari-bytes", type=float, default=1.11, help="shard bytes per token")
    p.add_argument("--photo-rate", type=float, default=243, help="caption records/s per core")
    p.add_argument("--photo-bytes", type=float, default=187.5)
    p.add_argument("--mujoco-rate", type=float, default=16000, help="steps/s per core")
    p.add_argument("--mujoco-out", type=float, default=8.64, help="output tokens per step read")
    p.add_argument("--mujoco-bytes", type=float, default=1.33)
    p.add_argument("--workers", type=int, default=512, help="vCPUs for the wall time")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.runners, a.work)))
        return 0
    if a.plan:
        print(f"| workload | core-hours | wall h on {a.workers} vCPU | shards (TB) | "
              "256 MiB shards | Dataflow $ | Dask on n2-standard-16 $ |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in plan(a.atari_rate, a.atari_out, a.atari_bytes, a.photo_rate, a.photo_bytes,
                      a.mujoco_rate, a.mujoco_out, a.mujoco_bytes, a.workers):
            print(f"| {r['workload']} | {r['core_hours']:,.0f} | {r['wall_h']:,.1f} | "
                  f"{r['shard_tb']:,.2f} | {r['shards']:,} | {r['dataflow_usd']:,.0f} | "
                  f"{r['dask_usd']:,.0f} |")
        return 0
    print(f"load average {os.getloadavg()[0]:.1f}, nproc={os.cpu_count()}", flush=True)
    rows = []
    for dataset in a.datasets.split(","):
        for runner in a.runners.split(","):
            r = measure(dataset, runner)
            rows.append(r)
            print(f"{dataset:20s} {runner:12s} {r['steps']:>7,} steps {r['tokens']:>10,} tokens "
                  f"{r['sequences']:>5,} seqs | read {r['read_s']:6.2f}s in {r['read_tasks']} "
                  f"task(s), write {r['write_s']:6.2f}s in {r['write_tasks']} | "
                  f"{1e6 * r['task_s'] / r['tokens']:6.2f} task-us/token, "
                  f"{r['bytes'] / r['tokens']:5.2f} B/token | wall {r['seconds']:5.1f}s "
                  f"(fixed ~{r['fixed_s']:4.1f}s)", flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a Dask worker's task time goes: one read task, the same unit, five process set-ups (by hand).

    .venv/bin/python -P bench/dask_gap.py --work /tmp/dask-gap             # 250,000-slot unit
    .venv/bin/python -P bench/dask_gap.py --work /tmp/dask-gap --slots 62500 --repeat 3

The job's read stage (``ReadUnit``: read a DQN checkpoint, tokenize 80x80, cut windows, spill) on
one synthesised checkpoint (``bench/scale_sample.py``'s Pong tiling), run ``--repeat`` times in
each of these processes, each fresh:

* ``plain``: a plain Python process with the environment the DirectRunner gives its workers
  (``MALLOC_ARENA_MAX=2``, see ``runners.limit_malloc_arenas``);
* ``plain+dask-env``: a plain process with a Dask worker's environment instead: no arena cap
  (the job sets it for the DirectRunner only), what a nanny exports
  (``MALLOC_TRIM_THRESHOLD_=65536``, ``OMP/MKL/OPENBLAS_NUM_THREADS=1``) and the job's
  ``MallocTuning`` applied, i.e. the worker's environment without the worker;
* ``dask``: a task on a one-worker local cluster started as the job starts it (one thread,
  the ``MallocTuning`` plugin);
* ``dask-noprofile``: the same with the worker's statistical profiler off
  (``distributed.worker.profile.enabled: false``; it samples the task thread's stack every 10 ms);
* ``dask-quiet``: the local cluster the job starts now (``dask_runner.local_cluster``: the
  profiler off, the event-loop tick and the system monitor slowed, ``QUIET_WORKERS``);
* ``dask-nomalloc``: the same as ``dask`` without the plugin (the nanny's malloc setting as is).

Per run: wall seconds, CPU seconds of the whole process (all threads) and of the thread that ran
the task. On a loaded machine wall time moves with the load; CPU time is what compares.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASK_ENV = {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1"}
MODES = ("plain", "plain+dask-env", "dask", "dask-noprofile", "dask-quiet", "dask-nomalloc")


def read_task(root: str, out: str) -> dict:
    """One read task exactly as the job runs it: ``ReadUnit.process`` on the unit."""
    import threading

    from trajcorpus.pipelines.job import make_spec
    from trajcorpus.pipelines.stages import ReadUnit
    from trajcorpus.schemas.catalog import DatasetEntry

    entry = DatasetEntry.model_validate({
        "id": "gap", "kind": "dqn-replay", "uri": root, "agent": "{task}/run{agent}",
        "tokenize": {"image_size": [80, 80]}, "license": "CC-BY-4.0"})
    shutil.rmtree(out, ignore_errors=True)
    spec = make_spec(entry, root, out, 0, "parquet", 1, 256 << 20, False)
    os.makedirs(f"{spec.tmp}/units", exist_ok=True)
    fn = ReadUnit(spec)
    fn.setup()
    unit = fn.source.units()[0]
    wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    n = sum(1 for _ in fn.process(unit))
    res = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
           "thread_cpu_s": time.thread_time() - thread, "outputs": n,
           "threads": threading.active_count(), "pid": os.getpid()}
    shutil.rmtree(out, ignore_errors=True)
    return res


def _tune_malloc() -> None:
    from trajcorpus.pipelines.dask_runner import MallocTuning

    MallocTuning().setup(None)


def child(mode: str, root: str, work: str, repeat: int) -> list[dict]:
    if mode.startswith("plain"):
        if mode == "plain+dask-env":
            _tune_malloc()
        return [read_task(root, f"{work}/out") for _ in range(repeat)]
    import dask
    import dask.distributed as ddist

    from trajcorpus.pipelines.dask_runner import MallocTuning, local_cluster

    config = {"distributed.worker.profile.enabled": mode != "dask-noprofile"}
    with dask.config.set(config), (local_cluster(1) if mode == "dask-quiet" else ddist.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)) as cluster, \
            ddist.Client(cluster) as client:
        if mode != "dask-nomalloc":
            client.register_plugin(MallocTuning())
        return [client.submit(read_task, root, f"{work}/out", pure=False, key=f"read-{i}").result()
                for i in range(repeat)]


def build(work: Path, slots: int) -> Path:
    """One first-log checkpoint (suffix 0) of ``slots`` Pong slots under ``work``."""
    import importlib.util

    root = work / "data"
    logs = root / "Pong" / "1" / "replay_logs"
    if not (logs / "$store$_observation_ckpt.0.gz").exists():
        spec = importlib.util.spec_from_file_location("scale_sample",
                                                      REPO / "bench" / "scale_sample.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        logs.mkdir(parents=True, exist_ok=True)
        mod._Game("Pong").checkpoint(logs, 0, slots)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="scratch folder")
    p.add_argument("--slots", type=int, default=250_000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        root = str(a.work / "data")
        print(json.dumps(child(a.child, root, str(a.work / a.child), a.repeat)))
        return 0
    build(a.work, a.slots)
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}  # as the job's Dask
    print(f"load average {os.getloadavg()[0]:.1f}, {a.slots:,} slots, {a.repeat} runs per mode")
    rows = {}
    for mode in a.modes.split(","):
        menv = ({**env, "MALLOC_ARENA_MAX": "2"} if mode == "plain" else
                {**env, **DASK_ENV} if mode == "plain+dask-env" else env)
        out = subprocess.run([sys.executable, "-P", __file__, "--child", mode, "--work",
                              str(a.work), "--repeat", str(a.repeat)], env=menv, check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        rows[mode] = runs = json.loads(out.strip().splitlines()[-1])
        print(f"{mode:15s} " + " | ".join(
            f"wall {r['wall_s']:5.1f}s cpu {r['cpu_s']:5.1f}s task thread {r['thread_cpu_s']:5.1f}s"
            f" ({r['threads']} threads)" for r in runs) + f"  load {os.getloadavg()[0]:.1f}",
              flush=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

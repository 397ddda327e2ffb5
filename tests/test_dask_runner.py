"""The job on a real dask.distributed cluster (docs/running-on-dask.md).

The cluster is started here: a ``dask scheduler`` process and two ``dask worker`` processes
(one single-threaded worker each, behind their nanny) on 127.0.0.1, talking over TCP, all stopped
at the end. The DaskRunner's output must be byte-identical to the DirectRunner's: every file
under OUT (shards, audit, manifest, card, tokenizer), hashed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import apache_beam as beam
import pytest
import yaml

from support.reuse import assert_same_but_reuse
from trajcorpus.errors import ShardError, TrajcorpusError
from trajcorpus.pipelines import run_job
from trajcorpus.pipelines.buildcache import CACHE_DIR
from trajcorpus.pipelines.dask_runner import QUIET_WORKERS
from trajcorpus.pipelines.runners import root_cause as _root_cause

pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def quiet_env() -> dict[str, str]:
    """QUIET_WORKERS as the environment variables docs/running-on-dask.md tells a user to set on
    their own cluster (idle, a default cluster burns ~4x the CPU: its profiler samples every
    10 ms)."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
            for key, value in QUIET_WORKERS.items()}


def test_the_docs_quiet_settings_are_the_local_clusters():
    doc = (REPO / "docs/running-on-dask.md").read_text(encoding="utf-8")
    exports = dict(line.removeprefix("export ").split("=", 1) for line in doc.splitlines()
                   if line.startswith("export DASK_"))
    assert exports == quiet_env()


class Cluster:
    """A scheduler and ``n`` worker processes, each in its own session (so one can be killed
    with its nanny and worker child), configured as the docs tell a user (``quiet_env``); their
    stderr goes to log files."""

    def __init__(self, root: Path, n: int = 2):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **quiet_env(), "PYTHONPATH": os.pathsep.join(
            [str(SRC), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
        self.scheduler_file = root / "scheduler.json"
        self.procs: dict[str, subprocess.Popen] = {}
        self._start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file",
                                  str(self.scheduler_file)])
        for i in range(n):
            self.start_worker(f"w{i}")
        self.address = self._wait(n)

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen([sys.executable, "-m", *args], stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True, cwd=self.root)
        log.close()

    def start_worker(self, name: str) -> None:
        self._start(name, ["distributed.cli.dask_worker", "--scheduler-file",
                           str(self.scheduler_file), "--nworkers", "1", "--nthreads", "1",
                           "--no-dashboard", "--name", name, "--host", "127.0.0.1"])

    def _wait(self, n: int) -> str:
        from distributed import Client

        deadline = time.time() + 120
        while not self.scheduler_file.exists():
            if time.time() > deadline or self.procs["scheduler"].poll() is not None:
                raise RuntimeError(self.log("scheduler"))
            time.sleep(0.2)
        with Client(scheduler_file=str(self.scheduler_file), timeout=60) as client:
            client.wait_for_workers(n, timeout=120)
            return client.scheduler.address

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for name in [n for n in self.procs if n != "scheduler"] + ["scheduler"]:
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask-cluster"))
    yield c
    c.stop()


def _tree(out: Path) -> dict[str, str]:
    """sha256 of every file under OUT (shards, audit files, manifest, card, tokenizer); not the
    build cache, which is not output (publish skips it, verify ignores it)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] != CACHE_DIR}


def _run(dataset: str, out: Path, runner: str, args: list[str], catalog: Path | None = None,
         progress: bool = False):
    return run_job(catalog=str(catalog or REPO / "catalog.yaml"), dataset=dataset,
                   output=str(out), fmt="both", runner=runner, beam_args=args,
                   progress=progress)


def _reads(cluster: Cluster, config: str) -> int:
    """How many times the workers ran ReadUnit for ``config`` (its progress line)."""
    marker = f"[trajcorpus {config}] read unit "
    return sum(cluster.log(n).count(marker) for n in cluster.procs if n != "scheduler")


# one of each kind: continuous control (HDF5), Atari frames (gzip .npy), image-caption with a
# SentencePiece model trained inside the job (its text model is a side input)
@pytest.mark.parametrize("dataset", ["demo-minari", "demo-dqn-replay", "demo-coco-captions"])
def test_demo_config_on_a_dask_cluster_is_byte_identical_to_the_direct_runner(
        cluster, tmp_path, dataset) -> None:
    direct = _run(dataset, tmp_path / "direct", "DirectRunner", ONE_WORKER)
    before = _reads(cluster, dataset)
    dask = _run(dataset, tmp_path / "dask", "DaskRunner",
                [f"--dask_client_address={cluster.address}"], progress=True)
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "direct")
    assert "manifest.json" in _tree(tmp_path / "dask")
    assert dask.audit == direct.audit and dask.files == direct.files
    # each unit was read once: side inputs did not recompute the read (see dask_runner.py)
    assert _reads(cluster, dataset) - before == _units(dataset)


def _units(dataset: str) -> int:
    from trajcorpus.schemas.catalog import load_catalog

    cat = load_catalog(str(REPO / "catalog.yaml"))
    entry = cat.get(dataset)
    from trajcorpus.sources import open_source

    src = open_source(entry.kind, cat.uri_of(entry), dataset=entry.id,
                      options=dict(entry.options), task_template=entry.task,
                      agent_template=entry.agent)
    return len(src.units())


def test_a_worker_killed_mid_job_is_survived_with_identical_output(tmp_path) -> None:
    """SIGKILL one worker (nanny and process) once it has read a unit, while the job runs: the
    scheduler re-runs its tasks on the other worker (the read again: spill and audit files are
    written whole under a temporary name, so a re-run replaces them with the same bytes)."""
    root = REPO / "tests/fixtures/mujoco/minari/trajcorpus-fixtures"
    cat = tmp_path / "catalog.yaml"
    cat.write_text(yaml.safe_dump({"version": 1, "datasets": [{
        "id": "hop8", "kind": "minari", "uri": str(root), "license": "CC-BY-4.0",
        "options": {"datasets": ["hopper/mixed-v0", "halfcheetah/mixed-v0"],
                    "episodes_per_unit": 10},
        "tokenize": {"mu_law": True, "mu_law_exempt": ["actions"]}}]}))
    direct = _run("hop8", tmp_path / "direct", "DirectRunner", ONE_WORKER, cat)
    c = Cluster(tmp_path / "cluster")
    try:
        outcome: dict = {}

        def job() -> None:
            try:
                outcome["result"] = _run("hop8", tmp_path / "dask", "DaskRunner",
                                         [f"--dask_client_address={c.address}"], cat,
                                         progress=True)
            except BaseException as e:  # handed to the test thread
                outcome["error"] = e

        t = threading.Thread(target=job)
        t.start()
        deadline = time.time() + 300
        while "[trajcorpus hop8] read unit" not in c.log("w1"):
            assert t.is_alive() and time.time() < deadline, "w1 never read a unit"
            time.sleep(0.05)
        c.kill("w1")
        killed_while_running = t.is_alive()
        t.join(timeout=600)
        assert not t.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert killed_while_running
        dask, direct_out = tmp_path / "dask", tmp_path / "direct"
        if (dask / "audit/hop8.build.json").exists():  # the re-run took the dead worker's entry
            assert_same_but_reuse(dask, _tree(dask), direct_out, _tree(direct_out), "hop8")
        else:
            assert _tree(dask) == _tree(direct_out)
        assert outcome["result"].audit == direct.audit
    finally:
        c.stop()


def test_output_the_workers_cannot_see_is_refused(cluster) -> None:
    # memory:// lives in one process: the driver's probe file is invisible to the workers, as a
    # disk local to the driver's machine is to workers on other machines
    # (and the cluster is found through its scheduler file, the SLURM way)
    with pytest.raises(TrajcorpusError, match="not visible to 2 of 2 dask worker") as e:
        _run("demo-minari", "memory://trajcorpus-dask/out", "DaskRunner",
             [f"--dask_scheduler_file={cluster.scheduler_file}"])
    assert "\n" not in str(e.value) and "shared file system" in str(e.value)


def test_unreachable_scheduler_is_a_one_line_error(tmp_path) -> None:
    with pytest.raises(TrajcorpusError, match="cannot reach the dask scheduler") as e:
        _run("demo-minari", tmp_path / "out", "DaskRunner",
             ["--dask_client_address=tcp://127.0.0.1:9", "--dask_connection_timeout=2"])
    assert "\n" not in str(e.value)


# --- the runner's fixes on small pipelines -------------------------------------------------------

class _Split(beam.DoFn):
    """Counts its calls in a file (a shared disk: workers are other processes)."""

    def __init__(self, log: str):
        self.log = log

    def process(self, x: int):
        with open(self.log, "a") as f:
            f.write(f"{x}\n")
        yield x
        yield beam.pvalue.TaggedOutput("square", x * x)
        if x % 2:
            yield beam.pvalue.TaggedOutput("odd", str(x))


def _runner(n: int = 4):
    from trajcorpus.pipelines.dask_runner import JobDaskRunner

    return JobDaskRunner(npartitions=n)


def test_tagged_outputs_stay_apart_and_side_inputs_do_not_rerun_their_producer(
        cluster, tmp_path) -> None:
    log, out = tmp_path / "calls.txt", tmp_path / "out.txt"
    p = beam.Pipeline(runner=_runner(), options=beam.options.pipeline_options.PipelineOptions(
        [f"--dask_client_address={cluster.address}"]))
    parts = (p | beam.Create(range(10))
             | beam.ParDo(_Split(str(log))).with_outputs("square", "odd", main="n"))
    total = beam.pvalue.AsSingleton(parts.square | beam.CombineGlobally(sum))
    odd = beam.pvalue.AsList(parts.odd)
    rows = (parts.n
            | "Tag" >> beam.Map(lambda x, t, o: (x, t, sorted(o)), total, odd)
            | beam.combiners.ToList()
            | beam.Map(lambda rows: out.write_text(repr(sorted(rows)))))
    del rows
    p.run().wait_until_finish()
    odds = ["1", "3", "5", "7", "9"]
    assert eval(out.read_text()) == [(x, 285, odds) for x in range(10)]
    assert sorted(int(x) for x in log.read_text().split()) == list(range(10))  # once each
    # every worker got the malloc tuning (the nanny's trim threshold made reads 2.2x slower)
    from distributed import Client

    with Client(cluster.address, timeout=60) as client:
        tuned = client.run(lambda dask_worker: "trajcorpus-malloc-tuning" in dask_worker.plugins)
        bookkeeping = client.run(_bookkeeping)
    assert len(tuned) == 2 and all(tuned.values())
    # the docs' environment variables reach a user's own workers (the cluster above sets them)
    for names, tick, monitor in bookkeeping.values():
        assert "profile" not in names and (tick, monitor) == (500, 2000)


def test_worker_errors_reach_the_driver_whole(cluster) -> None:
    def bad(x: int) -> int:
        if x == 3:
            raise ShardError(f"unit {x}", "corrupt record")
        return x

    p = beam.Pipeline(runner=_runner(), options=beam.options.pipeline_options.PipelineOptions(
        [f"--dask_client_address={cluster.address}"]))
    _ = p | beam.Create(range(5)) | beam.Map(bad)
    with pytest.raises(ShardError, match="unit 3: corrupt record"):
        p.run().wait_until_finish()

    def boom(x: int) -> int:
        raise ValueError(f"bad value {x}")

    p = beam.Pipeline(runner=_runner(1), options=beam.options.pipeline_options.PipelineOptions(
        [f"--dask_client_address={cluster.address}"]))
    _ = p | beam.Create([7]) | beam.Map(boom)
    with pytest.raises(ValueError) as e:
        p.run().wait_until_finish()
    assert _root_cause(e.value) == "bad value 7"


def test_without_an_address_a_local_cluster_runs_and_is_stopped(tmp_path) -> None:
    import psutil

    before = {c.pid for c in psutil.Process().children(recursive=True)}
    direct = _run("demo-d4rl", tmp_path / "direct", "DirectRunner", ONE_WORKER)
    _run("demo-d4rl", tmp_path / "dask", "DaskRunner", [])
    assert _tree(tmp_path / "dask") == _tree(tmp_path / "direct") and direct.files
    deadline = time.time() + 30
    while left := [" ".join(c.cmdline()) for c in psutil.Process().children(recursive=True)
                   if c.pid not in before and "resource_tracker" not in " ".join(c.cmdline())]:
        assert time.time() < deadline, f"the local cluster's processes outlived the run: {left}"
        time.sleep(0.5)


def _bookkeeping(dask_worker) -> tuple[list[str], float, float]:
    callbacks = dask_worker.periodic_callbacks
    return sorted(callbacks), callbacks["tick"].callback_time, callbacks["monitor"].callback_time


def test_the_local_cluster_slows_its_workers_bookkeeping() -> None:
    """No profiler, a 500 ms event-loop tick, a 2 s system monitor: what a run without a
    dashboard needs (docs/benchmarks.md: 16-48 ms of worker CPU per wall second otherwise)."""
    from distributed import Client

    from trajcorpus.pipelines.dask_runner import local_cluster

    with local_cluster(1) as cluster, Client(cluster) as client:
        ((names, tick, monitor),) = client.run(_bookkeeping).values()
    assert "profile" not in names and "heartbeat" in names
    assert (tick, monitor) == (500, 2000)


def test_the_runner_starts_its_cluster_with_local_cluster(monkeypatch) -> None:
    from trajcorpus.pipelines import dask_runner, runners

    def refuse(n_workers: int):
        raise RuntimeError(f"local_cluster({n_workers})")

    monkeypatch.setattr(dask_runner, "local_cluster", refuse)
    monkeypatch.setattr(runners.os, "cpu_count", lambda: 4)
    # one worker per core, but no more than the job's units (its partitions)
    for units, workers in ((None, 4), (6, 4), (3, 3), (1, 1)):
        p = beam.Pipeline(runner=dask_runner.JobDaskRunner(units))
        _ = p | beam.Create([1])
        with pytest.raises(RuntimeError, match=rf"local_cluster\({workers}\)"):
            p.run()

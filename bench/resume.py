"""Resume and grow with the build cache (by hand; docs/benchmarks.md "Resume and grow").

    .venv/bin/python -P bench/resume.py                               # 10 runs x 2 x 50k slots
    .venv/bin/python -P bench/resume.py --runs 10 --checkpoints 2 --slots 25000 --kill-at 0.7
    .venv/bin/python -P bench/resume.py --golden     # every demo config, twice, against the golden

Data: ``--runs`` DQN Replay runs (Pong/1..R) of ``--checkpoints`` checkpoints of ``--slots``
transitions each, in Dopamine's on-disk format (``bench/read_dqn.py``'s ``synthesize``: the real
Pong fixture's slots tiled; one run is synthesised, the others are copies of it under their own
run number), under ``bench/data/resume/`` (git-ignored). Every build is ``trajcorpus run`` in a
fresh child process (the job itself, ``--workers`` DirectRunner processes, Parquet shards); CPU
is user+sys of the child and every process it waited for.

Measured, all in one run: the full build without a cache (the baseline) and with a cold cache
(the cache's own cost); a build SIGKILLed once ``--kill-at`` of its units are cached, then the
same command again (resume); one run more (``--runs`` + 1: 10% more units at the default) rebuilt
with ``--overwrite`` over the cached build (grow), and the grown corpus from scratch. The resumed
and grown outputs are compared file by file with the clean builds (equal but for the card's
"Build cache" line and ``audit/{config}.build.json``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "data" / "resume"
CONFIG = "bench-resume"


@functools.cache  # the sampler walks the tree every 0.1 s: load each module once
def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def corpus(runs: int, checkpoints: int, slots: int) -> Path:
    """``DATA/RxCxS/Pong/1..runs`` (run 1 synthesised, the others copied from it)."""
    root = DATA / f"{runs}x{checkpoints}x{slots}"
    first = root / "Pong" / "1"
    if not (first / "replay_logs" / f"$store$_observation_ckpt.{checkpoints - 1}.gz").exists():
        _bench("read_dqn").synthesize(first, slots, checkpoints)
    for r in range(2, runs + 1):
        if not (root / "Pong" / str(r)).exists():
            shutil.copytree(first, root / "Pong" / str(r))
    return root


def catalog(root: Path, work: Path) -> Path:
    path = work / "catalog.yaml"
    path.write_text(f"version: 1\ndatasets:\n  - id: {CONFIG}\n    kind: dqn-replay\n"
                    f"    uri: {root}\n    agent: '{{task}}/run{{agent}}'\n"
                    "    tokenize: {image_size: [80, 80]}\n    license: CC-BY-4.0\n")
    return path


def _cmd(cat: Path, out: Path, workers: int, *extra: str) -> list[str]:
    return [sys.executable, "-P", "-m", "trajcorpus", "run", "--catalog", str(cat), "--dataset",
            CONFIG, "--output", str(out), "--format", "parquet", "--quiet",
            f"--direct_num_workers={workers}", *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "TRAJCORPUS_RUN_CHILD": "1"}


def _descendants(pid: int) -> list[int]:
    children = _bench("pipeline")._children  # every thread's children (Beam starts workers
    out, todo = [], [pid]                      # from a thread)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return -1


def timed(cmd: list[str]) -> dict:
    """Wall seconds; CPU seconds (user+sys) of the job and every process it started, sampled
    from /proc every 0.1 s (Beam's workers are not waited for, so rusage would miss them); the
    seconds the progress lines give for reading units and writing shards."""
    t = time.perf_counter()
    proc = subprocess.Popen([c for c in cmd if c != "--quiet"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    last: dict[int, int] = {}
    while proc.poll() is None:
        for pid in _descendants(proc.pid):
            ticks = _cpu_ticks(pid)
            if ticks >= 0:
                last[pid] = max(last.get(pid, 0), ticks)
        time.sleep(0.1)
    wall = time.perf_counter() - t
    reader.join()
    if proc.returncode:
        raise SystemExit("".join(err)[-3000:])
    stage = {"read": 0.0, "write": 0.0}
    for line in err:
        m = re.search(r"\] (read unit|wrote) .*\(([0-9.]+)s\)$", line.strip())
        if m:
            stage["read" if m.group(1) == "read unit" else "write"] += float(m.group(2))
    return {"wall": wall, "cpu": sum(last.values()) / os.sysconf("SC_CLK_TCK"), **stage}


def _entries(out: Path) -> int:
    cache = out / ".trajcorpus-cache"
    return sum(1 for _ in cache.rglob("records.json.zst")) if cache.exists() else 0


def killed(cmd: list[str], out: Path, units: int, share: float) -> dict:
    """Run until ``share`` of the units are cached, then SIGKILL the job's process group."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while _entries(out) < share * units:
            if proc.poll() is not None:
                raise SystemExit("the build finished before the kill")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"wall": time.perf_counter() - t, "cached": _entries(out)}


def tree(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()
            and not p.relative_to(out).as_posix().startswith(".trajcorpus-cache/")}


def differing(a: Path, b: Path) -> list[str]:
    ta, tb = tree(a), tree(b)
    return sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))


def golden() -> int:
    """Build every recorded demo config twice into one folder (the second time every unit comes
    from the cache) and compare both with tests/fixtures/golden (the reuse facts aside)."""
    import tempfile

    sys.path.insert(0, str(REPO / "tests"))
    import test_golden_demo as g

    want = g._recorded()
    ids = sorted(want["configs"])
    out = Path(tempfile.mkdtemp()) / "OUT"
    bad = []
    for attempt in ("cold cache", "every unit cached"):
        g.build(out, ids)
        now = g.snapshot(out, ids, want)
        for c in ids:
            w, got = want["configs"][c], now["configs"][c]
            files = {k: v for k, v in got["files"].items() if not k.endswith(".build.json")}
            if files != w["files"] or got["totals"] != w["totals"] or \
                    any(got["info"][k] != w["info"][k] for k in w["info"]):
                bad.append((attempt, c))
        if now["manifest_files"] != want["manifest_files"]:
            bad.append((attempt, "manifest files"))
        facts = {c: json.loads((out / f"audit/{c}.build.json").read_text())
                 for c in ids if (out / f"audit/{c}.build.json").exists()}
        print(f"{attempt}: reuse facts {facts}; card as recorded: {now['card'] == want['card']}")
    print(f"differences from the golden record: {bad or 'none'}")
    shutil.rmtree(out.parent)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--checkpoints", type=int, default=2)
    p.add_argument("--slots", type=int, default=50_000)
    p.add_argument("--kill-at", type=float, default=0.7)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--golden", action="store_true", help="only the demo configs' golden check")
    a = p.parse_args(argv)
    if a.golden:
        return golden()

    grown_root = corpus(a.runs + 1, a.checkpoints, a.slots)  # the grown corpus, then hide a run
    work = DATA / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = work / "in"
    base.mkdir()
    (base / "Pong").mkdir()
    for r in range(1, a.runs + 1):
        (base / "Pong" / str(r)).symlink_to(grown_root / "Pong" / str(r))
    cat = catalog(base, work)
    units = a.runs * a.checkpoints
    steps = units * a.slots
    print(f"load: {os.getloadavg()}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; {a.runs} runs x {a.checkpoints} checkpoints x {a.slots} "
          f"slots = {steps:,} transitions, {units} units", flush=True)

    res: dict[str, dict] = {}
    res["full (no cache)"] = timed(_cmd(cat, work / "full", a.workers, "--cache_dir", "none"))
    res["full (cold cache)"] = timed(_cmd(cat, work / "cold", a.workers))
    res["killed"] = killed(_cmd(cat, work / "resumed", a.workers), work / "resumed", units,
                           a.kill_at)
    res["resume"] = timed(_cmd(cat, work / "resumed", a.workers))
    diff_resume = differing(work / "resumed", work / "full")

    (base / "Pong" / str(a.runs + 1)).symlink_to(grown_root / "Pong" / str(a.runs + 1))
    res["grow (+1 run)"] = timed(_cmd(cat, work / "cold", a.workers, "--overwrite"))
    res["grown full (no cache)"] = timed(_cmd(cat, work / "grown", a.workers, "--cache_dir",
                                              "none"))
    diff_grow = differing(work / "cold", work / "grown")
    facts = {n: json.loads((work / n / f"audit/{CONFIG}.build.json").read_text())
             for n in ("resumed", "cold")}

    full, grown = res["full (no cache)"], res["grown full (no cache)"]
    for name, r in res.items():
        extra = f", {r['cached']} of {units} units cached at the kill" if "cached" in r else ""
        cpu = (f", CPU {r['cpu']:.1f}s (reading units {r['read']:.1f}s, writing shards "
               f"{r['write']:.1f}s)") if "cpu" in r else ""
        print(f"{name:24s} wall {r['wall']:7.1f}s{cpu}{extra}")
    print(f"resume / full build:      wall {res['resume']['wall'] / full['wall']:.2f}x, CPU "
          f"{res['resume']['cpu'] / full['cpu']:.2f}x  (reuse facts {facts['resumed']})")
    print(f"grow / grown full build:  wall {res['grow (+1 run)']['wall'] / grown['wall']:.2f}x, "
          f"CPU {res['grow (+1 run)']['cpu'] / grown['cpu']:.2f}x  (reuse facts {facts['cold']})")
    print(f"cold cache / no cache:    wall "
          f"{res['full (cold cache)']['wall'] / full['wall']:.2f}x, CPU "
          f"{res['full (cold cache)']['cpu'] / full['cpu']:.2f}x")
    print(f"files differing, resumed vs full: {diff_resume}")
    print(f"files differing, grown (cached) vs grown (clean): {diff_grow}")
    print(f"load: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

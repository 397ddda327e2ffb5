"""Decode rate and memory of the vpt reader against a bare PyAV decode of the same videos (by hand).

Recordings of several lengths are written into a temporary folder by the fixture's own generator
(``tools/fixture-gen/vpt_recordings.py``: the recorder's jsonl lines, H.264 640x360 20 fps via
PyAV), by repeating the ticks of the fixture's scripts (walking, camera, GUI stretches with the
cursor, null ticks, hotbar changes). Nothing is committed.

In the same run, per recording: the baseline (PyAV: open, ``stream.thread_type = "AUTO"``,
decode every frame of the jsonl's length, ``to_ndarray("rgb24")``, drop it; ``pyav-1thread``
without the thread setting) and the reader (``VptSource.read_unit``: jsonl parsing under the
reference's rules, decoding, cursor drawing, the episode's frame array, validation), with null
steps kept (the same frames converted as the baseline) and dropped (the default), at the recorded
size and decoding to 128x128 (``frame_size``); ``-1thread`` modes set ``decoder_threads: false``
and compare with ``pyav-1thread``; ``touch`` is the time to fill fresh memory the size of the
full-size frames (what the machine charges to provision it). ``--before SRC`` also times the
reader modes with another checkout's ``src`` (same files, same run). Each measurement runs in a
fresh child process, best of ``--repeat``; peak RSS is the child's VmHWM.

    .venv/bin/python -P bench/vpt.py --lengths 300 1200 3600
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "tools" / "fixture-gen" / "vpt_recordings.py"


def _generator():
    spec = importlib.util.spec_from_file_location("vpt_recordings", GENERATOR)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vpt_recordings"] = mod
    spec.loader.exec_module(mod)
    return mod


def write_recording(folder: Path, ticks: int) -> Path:
    """A recording of ``ticks`` lines (and frames) in folder ``8.0``; returns its mp4 path."""
    import random

    gen = _generator()
    scripts = {s.version: s for s in gen._recording_scripts()}
    pattern = scripts["8.0"].ticks + scripts["7.6"].ticks  # GUI stretches + walking/camera/hotbar
    s = gen.Script("bench-long-recording", "8.0", "20220315-122354",
                   [pattern[i % len(pattern)] for i in range(ticks)], hotbar0=0, seed=3)
    lines, gui, _ = gen._game_state_lines(s, random.Random(s.seed))
    out = folder / "8.0"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-long-recording-{ticks:012x}-20220315-122354"
    (out / f"{stem}.jsonl").write_bytes(gen._jsonl(lines, True))
    gen._encode(out / f"{stem}.mp4", s.seed, gui)
    return out / f"{stem}.mp4"


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (stable on a shared machine, where
    wall time depends on the other jobs)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(mode: str, mp4: str) -> dict:
    """One measurement in this (fresh) process: the same read twice with one source (as a worker
    keeps its source), timed each. The second pass is a worker's steady state: on this VM the
    first touch of memory new to the process is costly (docs/benchmarks.md), which a long-lived
    worker pays once; both passes are reported."""
    import av

    from trajcorpus.sources.vpt import VptSource

    n_lines = sum(1 for _ in open(mp4.removesuffix(".mp4") + ".jsonl", "rb"))
    rss_before = _peak_rss_mb()
    times, cpu, out_bytes, steps = [], [], 0, n_lines
    src = None
    if mode.startswith("reader"):
        options: dict = {"keep_null": "keep-null" in mode}
        if mode.endswith("1thread"):
            options["decoder_threads"] = False
        if mode.startswith("reader-128"):
            options["frame_size"] = [128, 128]
        src = VptSource(str(Path(mp4).parent), options=options)
    for _ in range(2):
        t0, c0 = time.perf_counter(), _cpu_seconds()
        if mode.startswith("touch"):  # provisioning alone: fresh memory the size of the frames
            import mmap

            import numpy as np

            shape = (n_lines, 360, 640, 3)
            if mode == "touch":  # NumPy's allocation (transparent huge pages advised)
                scratch = np.empty(shape, np.uint8)
            else:  # the readers' (sources/video.py: anonymous mmap, small pages)
                scratch = np.frombuffer(mmap.mmap(-1, int(np.prod(shape)), flags=mmap.MAP_PRIVATE
                                                  | mmap.MAP_ANONYMOUS), np.uint8).reshape(shape)
            scratch[:] = 1
            out_bytes = scratch.nbytes
            del scratch
        elif mode.startswith("pyav"):
            with av.open(mp4) as c:
                stream = c.streams.video[0]
                if mode == "pyav":
                    stream.thread_type = "AUTO"
                for i, frame in enumerate(c.decode(stream)):
                    if i >= n_lines:
                        break
                    frame.to_ndarray(format="rgb24")
        else:
            (unit,) = src.units()
            (ep,) = list(src.read_unit(unit))
            out_bytes, steps = ep.observations["image"].nbytes, ep.length
            del ep
        times.append(time.perf_counter() - t0)
        cpu.append(_cpu_seconds() - c0)
    return {"mode": mode, "seconds": times[1], "cold_seconds": times[0], "cpu_seconds": cpu[1],
            "frames": n_lines,
            "steps": steps, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss_before,
            "frames_array_mb": out_bytes / 2**20}


def measure(mode: str, mp4: Path, src: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": src or str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-P", __file__, "--child", mode, str(mp4)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    """Best of the repeats, per measure (peak RSS: the highest)."""
    out = dict(runs[0])
    for r in runs[1:]:
        for k in ("seconds", "cold_seconds", "cpu_seconds"):
            out[k] = min(out[k], r[k])
        out["peak_rss_mb"] = max(out["peak_rss_mb"], r["peak_rss_mb"])
    return out


MODES = ("pyav", "pyav-1thread", "reader-keep-null", "reader", "reader-128-keep-null",
         "reader-128", "reader-keep-null-1thread", "touch", "touch-mmap")


def overhead(r: dict) -> float:
    """Peak RSS beyond the start and the episode's own frame array: the reader's working memory."""
    return r["peak_rss_mb"] - r["rss_before_mb"] - r["frames_array_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[300, 1200, 3600])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--before", default=None, metavar="SRC",
                    help="also time the reader modes with this src folder (another checkout)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "MP4"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; seconds: second pass "
          "(first pass in brackets)")
    modes = ["pyav", *[m for m in args.modes if m != "pyav"]]
    if any(m.endswith("1thread") for m in modes) and "pyav-1thread" not in modes:
        modes.insert(1, "pyav-1thread")
    runs = [(m, None) for m in modes]
    if args.before:
        runs += [(m, args.before) for m in modes if m.startswith("reader") and "1thread" not in m]
    print("| frames | mode | wall s, 2nd pass (1st) | CPU s | wall ratio to pyav | CPU ratio "
          "to pyav | peak RSS MB | frame array MB | peak - start - array MB |")
    print("|" + " ---: |" * 9)
    with tempfile.TemporaryDirectory(prefix="vpt-bench-") as tmp:
        for n in args.lengths:
            mp4 = write_recording(Path(tmp) / f"len{n}", n)
            got: dict[tuple, list[dict]] = {r: [] for r in runs}
            for _ in range(args.repeat):  # in turn, so a burst of load hits every mode alike
                for mode, src in runs:
                    got[(mode, src)].append(measure(mode, mp4, src))
            rs = {r: best(v) for r, v in got.items()}
            for (m, src), r in rs.items():
                base = rs[("pyav-1thread" if m.endswith("1thread") else "pyav", None)]
                ratios = ("-", "-") if not m.startswith("reader") else (
                    f"{base['seconds'] / r['seconds']:.2f}x",
                    f"{base['cpu_seconds'] / r['cpu_seconds']:.2f}x")
                label = m + (" (before)" if src else "")
                print(f"| {n} | {label} | {r['seconds']:.2f} ({r['cold_seconds']:.1f}) | "
                      f"{r['cpu_seconds']:.2f} | {ratios[0]} | {ratios[1]} | "
                      f"{r['peak_rss_mb']:.0f} | {r['frames_array_mb']:.0f} | "
                      f"{overhead(r):.0f} |", flush=True)
    print(f"# load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Read rate and peak memory of the lerobot reader against a bare PyAV loop and lerobot itself
(run by hand, never in CI; figures in docs/benchmarks.md).

The datasets are written by lerobot 0.6.1 itself (``LeRobotDataset.create`` / ``add_frame`` /
``save_episode`` / ``finalize``, default AV1 encoder, one camera) in the side venv, into a
temporary folder (never committed), with the fixture generator's synthetic frames
(tools/fixture-gen/lerobot_datasets.py ``make_frame``):

* ``base``: 4 episodes x 150 frames; ``long``: 4 x 1500 (episodes 10x longer);
  ``many``: 40 x 150 (the shared video file 10x longer, same episodes).

Measured in one run, each in a fresh child process (its own peak RSS, ``VmHWM``), ``--repeat``
times in turn, best wall and best CPU time of the repeats:

1. bare PyAV: ``for frame in container.decode(video=0): frame.to_ndarray(format="rgb24")`` over
   the dataset's video file(s): the decode ceiling; and the same loop keeping each episode's
   frames in one new array (the memory any reader of whole episodes must fill);
2. the reader (``LeRobotSource.read_unit`` over every unit: Parquet rows, video frames matched to
   rows, validated Episodes); with ``--before SRC`` also the reader of another checkout's
   ``src`` (e.g. ``git archive main src``), on the same files in the same run;
3. with ``--threads``: the bare loop with ``stream.thread_type = "AUTO"`` and the reader with
   option ``decoder_threads``;
4. lerobot's ``LeRobotDataset`` indexed frame by frame (``ds[i]`` for every i), in the side venv.

    .venv/bin/python -P bench/lerobot.py --side-python /work/side/lr06/bin/python
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETS = {"base": (4, 150), "long": (4, 1500), "many": (40, 150)}
FPS = 30
CAMERA = "observation.images.front"


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmHWM:")).split()[1]) / 1024


# -- children that run in the side venv (lerobot) --------------------------------------------

def write_dataset(root: str, episodes: int, length: int, h: int, w: int) -> None:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    spec = importlib.util.spec_from_file_location(
        "gen", REPO / "tools" / "fixture-gen" / "lerobot_datasets.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    names = [f"joint_{i}" for i in range(6)]
    features = {"observation.state": {"dtype": "float32", "shape": (6,), "names": names},
                "action": {"dtype": "float32", "shape": (6,), "names": names},
                CAMERA: {"dtype": "video", "shape": (h, w, 3),
                         "names": ["height", "width", "channels"]}}
    ds = LeRobotDataset.create(repo_id="bench/so101", fps=FPS, features=features, root=root,
                               robot_type="so101_follower", use_videos=True)
    rng = np.random.default_rng(0)
    for ep in range(episodes):
        for t in range(length):
            ds.add_frame({"observation.state": rng.standard_normal(6).astype(np.float32),
                          "action": rng.standard_normal(6).astype(np.float32),
                          CAMERA: gen.make_frame(h, w, ep, t, 0), "task": f"task {ep % 3}"})
        ds.save_episode()
    ds.finalize()


def lerobot_baseline(root: str) -> None:
    """Every frame through LeRobotDataset.__getitem__ (what a frame-by-frame loader does)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("bench/so101", root=root)
    t, c = time.perf_counter(), time.process_time()
    n = len(ds)
    for i in range(n):
        ds[i]
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c,
                      "frames": n,
                      "backend": getattr(ds, "_video_backend", "?"), "peak_rss_mb": peak_rss_mb()}))


# -- children that run in the project's venv -------------------------------------------------

def bare_pyav(root: str, threads: int = 0) -> None:
    import av

    files = sorted(str(p) for p in Path(root, "videos").rglob("*.mp4"))
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for path in files:
        with av.open(path) as container:
            if threads:
                container.streams.video[0].thread_type = "AUTO"
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                n += 1
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c,
                      "frames": n,
                      "peak_rss_mb": peak_rss_mb()}))


def bare_pyav_keep(root: str, length: int) -> None:
    """The bare loop, keeping each episode's frames in one [length, H, W, 3] array (a new one
    per episode, as any reader that hands out whole episodes must): the first-touch cost of
    that memory is the difference to the loop that throws frames away."""
    import av
    import numpy as np

    files = sorted(str(p) for p in Path(root, "videos").rglob("*.mp4"))
    t, c = time.perf_counter(), time.process_time()
    n = 0
    out = None
    for path in files:
        with av.open(path) as container:
            for frame in container.decode(video=0):
                image = frame.to_ndarray(format="rgb24")
                if n % length == 0:
                    out = np.empty((length, *image.shape), np.uint8)
                out[n % length] = image
                n += 1
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c,
                      "frames": n,
                      "peak_rss_mb": peak_rss_mb()}))


def reader(root: str, threads: int = 0) -> None:
    import av  # noqa: F401  (imported before timing, as the bare loops do)
    import pandas  # noqa: F401  (pyarrow's to_numpy imports it once per process: not timed)

    from trajcorpus.schemas.episode import Rejected
    from trajcorpus.sources import open_source

    src = open_source("lerobot", root, options={"decoder_threads": True} if threads else {})
    units = src.units()
    base = peak_rss_mb()
    t, c = time.perf_counter(), time.process_time()
    n = episodes = biggest = 0
    first = None
    for unit in units:
        for ep in src.read_unit(unit):
            assert not isinstance(ep, Rejected), ep.message
            episodes += 1
            n += ep.length
            biggest = max(biggest, sum(x.nbytes for x in ep.observations.values()
                                       if x.dtype != object))
            del ep
            first = first or time.perf_counter() - t
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c,
                      "frames": n, "episodes": episodes, "first_episode_seconds": first,
                      "units": len(units), "peak_rss_mb": peak_rss_mb(),
                      "rss_after_imports_mb": base, "largest_episode_mb": biggest / 2**20}))


CHILDREN = {"write": write_dataset, "lerobot": lerobot_baseline, "bare": bare_pyav,
            "bare_keep": bare_pyav_keep, "reader": reader}


def child(python: str, what: str, *args: object, src: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": src or str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([python, "-P", __file__, "_child", what, *map(str, args)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"{what} failed:\n{proc.stderr[-3000:]}")
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        fn = CHILDREN[sys.argv[2]]
        args = [int(a) if a.isdigit() else a for a in sys.argv[3:]]
        fn(*args)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side-python", default="/work/side/lr06/bin/python",
                    help="a Python with lerobot 0.6.x (writes the datasets, runs the baseline)")
    ap.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    ap.add_argument("--workdir", default=None, help="default: a new temporary folder")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (best kept)")
    ap.add_argument("--before", default=None, metavar="SRC",
                    help="also time the reader of this src folder (another checkout)")
    ap.add_argument("--threads", action="store_true", help="also time both with FFmpeg threads")
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--no-lerobot", action="store_true", help="skip LeRobotDataset (slow)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-lerobot-"))
    h, w = args.size
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()}, python {platform.python_version()}", flush=True)
    results: dict[str, dict] = {}
    for name in args.sets:
        episodes, length = SETS[name]
        root = work / name
        if not (root / "meta" / "info.json").exists():
            t = time.perf_counter()
            child(args.side_python, "write", root, episodes, length, h, w)
            print(f"wrote {name}: {episodes} x {length} frames {h}x{w} in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        runs: dict[str, tuple] = {"bare": ("bare", root), "bare_keep": ("bare_keep", root, length),
                                  "reader": ("reader", root)}
        if args.before:
            runs["reader_before"] = ("reader", root)
        if args.threads:
            runs |= {"bare_threads": ("bare", root, 1), "reader_threads": ("reader", root, 1)}
        r = {}
        for _ in range(args.repeat):  # in turn, so a burst of load hits every measurement alike
            for k, (what, *rest) in runs.items():
                got = child(sys.executable, what, *rest,
                            src=args.before if k == "reader_before" else None)
                if k in r:  # best wall and best CPU of the repeats
                    got["seconds"] = min(got["seconds"], r[k]["seconds"])
                    got["cpu"] = min(got["cpu"], r[k]["cpu"])
                    got["peak_rss_mb"] = max(got["peak_rss_mb"], r[k]["peak_rss_mb"])
                r[k] = got
        if name == "base" and not args.no_lerobot:
            r["lerobot"] = child(args.side_python, "lerobot", root)
        results[name] = r
        for k, v in r.items():
            print(f"{name:5} {k:14} {v['frames']:6} frames {v['seconds']:8.2f} s wall "
                  f"{v['cpu']:8.2f} s CPU {v['frames'] / v['seconds']:7.0f} frames/s  peak RSS "
                  f"{v['peak_rss_mb']:7.1f} MB", flush=True)
        for clock in ("seconds", "cpu"):
            ratio = {k: r["bare"][clock] / v[clock] for k, v in r.items() if k.startswith("reader")}
            if "reader_threads" in r:
                ratio["reader_threads"] = r["bare_threads"][clock] / r["reader_threads"][clock]
            print(f"{name:5} speed ratio ({'wall' if clock == 'seconds' else 'CPU'}) to bare PyAV "
                  f"(threads: to bare with threads): " + ", ".join(
                      f"{k} {v:.2f}x" for k, v in ratio.items()) + f"; reader / bare keeping "
                  f"episodes {r['bare_keep'][clock] / r['reader'][clock]:.2f}x", flush=True)
        rd = r["reader"]
        print(f"{name:5} reader peak RSS {rd['peak_rss_mb']:.0f} MB = largest episode "
              f"{rd['largest_episode_mb']:.0f} MB + {rd['peak_rss_mb'] - rd['largest_episode_mb']:.0f}"
              f" MB (after imports {rd['rss_after_imports_mb']:.0f} MB)", flush=True)
        if "lerobot" in r:
            print(f"{name:5} reader vs LeRobotDataset frame by frame: "
                  f"{r['lerobot']['seconds'] / r['reader']['seconds']:.1f}x faster", flush=True)
    print(f"load at the end {os.getloadavg()}")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

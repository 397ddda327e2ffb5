#!/usr/bin/env python
"""Write the LeRobot fixtures of tests/fixtures/lerobot with lerobot itself.

Why: the `lerobot` source kind (issue 15) must be tested against files that lerobot wrote,
and its ground truth must come from the arrays fed to the writer, never from reading the
written files back. Every byte under `<name>/dataset/` comes from lerobot's own
`LeRobotDataset.create` / `add_frame` / `save_episode` (/ `finalize` in v3.0); this script
only synthesises the frames and vectors, calls lerobot, and records `ground_truth.json`.

It runs OUTSIDE the project venv, in one side venv per lerobot release (lerobot needs torch;
it is never a dependency of trajcorpus, and nothing in CI runs this script). The side venvs
used for the committed fixtures (no lerobot release accepts the torch wheels that lie on this
machine's disk, so pip downloads a CUDA build of torch from PyPI: ~5 GB per venv):

    python3.12 -m venv /work/side/lr06        # lerobot 0.6.x requires Python >= 3.12
    /work/side/lr06/bin/pip install "lerobot[dataset]==0.6.1"
    python3.11 -m venv /work/side/lr03        # lerobot 0.3.3 accepts Python >= 3.10
    /work/side/lr03/bin/pip install "lerobot==0.3.3" "numpy<2.4"

numpy<2.4 for 0.3.3: that release stacks shape-(1,) features (next.reward, next.done) to
(N, 1) and `datasets` then calls float() on a 1-element array, which numpy 2.4 rejects
("only 0-dimensional arrays can be converted to Python scalars"); numpy 2.3 was current
when 0.3.3 came out. torchcodec fails to load in both venvs (no system FFmpeg libraries);
lerobot then falls back to PyAV, which is all it needs for writing.

    # v3.0 sets: lerobot 0.6.1 on Python 3.12
    PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 /work/side/lr06/bin/python \
        tools/fixture-gen/lerobot_datasets.py --out tests/fixtures/lerobot \
        v30_av1 v30_image v30_small_files
    # v2.1 set: lerobot 0.3.3 (the last release that writes v2.1) on Python 3.11
    PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 /work/side/lr03/bin/python \
        tools/fixture-gen/lerobot_datasets.py --out tests/fixtures/lerobot v21_video

PYTHONHASHSEED matters: lerobot orders an episode's tasks with `list(set(tasks))` before it
assigns task indices, so the task_index of a multi-task episode depends on the hash seed.

Frames are synthetic but content-bearing: colour gradients whose brightness jumps by
>= 25 levels between consecutive frames (so a reader that matches a row to the wrong video
frame is caught by the per-frame mean) plus a moving square. Ground truth per frame: the exact
mean of the uint8 pixels fed in, per channel too, and for `image` cameras the sha256 of the
raw HxWx3 uint8 pixels (PNG is lossless, so a decoded frame must hash the same).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

SO_JOINTS = [
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
]
ALOHA_MOTORS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "gripper"]

# Each set: what a reader meets on the hub, kept tiny. `episodes` = (length, task per frame
# as one string, or a list of (task, n_frames) segments for a multi-task episode).
SPECS: dict[str, dict] = {
    "v30_av1": {
        "codebase_version": "v3.0",
        "fps": 30,
        "robot_type": "so101_follower",
        "cameras": {"observation.images.front": (48, 64), "observation.images.wrist": (32, 32)},
        "camera_dtype": "video",
        "names": ("list", SO_JOINTS),
        "rewards": True,
        "episodes": [
            (24, "pick up the red cube and place it in the bowl"),
            (40, "push the green block to the left edge"),
            (17, "open the drawer"),
        ],
    },
    "v30_image": {
        "codebase_version": "v3.0",
        "fps": 10,
        "robot_type": "koch_follower",
        "cameras": {"observation.images.top": (32, 32)},
        "camera_dtype": "image",
        "names": ("list", SO_JOINTS),
        "rewards": False,
        "episodes": [
            (12, "fold the towel"),
            (20, "put the marker in the cup"),
            (15, "fold the towel"),
        ],
    },
    "v30_small_files": {
        "codebase_version": "v3.0",
        "fps": 15,
        "robot_type": "so100_follower",
        "cameras": {"observation.images.front": (48, 64), "observation.images.wrist": (32, 32)},
        "camera_dtype": "video",
        "names": ("list", SO_JOINTS),
        "rewards": False,
        # Limits in MB (lerobot types them int; it accepts floats and compares sizes in MB).
        # Set after looking at the per-episode file sizes so that files roll over every
        # one to three episodes and chunks (2 files each) roll over too.
        "chunks_size": 2,
        "data_files_size_in_mb": 0.003,
        "video_files_size_in_mb": 0.007,
        "metadata_buffer_size": 1,
        # The one non-default codec of the fixtures: H.264 (libx264) instead of AV1, so the
        # reader's H.264 path and concatenated H.264 files are covered too.
        "vcodec": "h264",
        "episodes": [
            (14, "pick up the red cube and place it in the bowl"),
            (20, "stack the blue cup on the plate"),
            (11, [("pick up the sponge", 5), ("wipe the table with the sponge", 6)]),
            (18, "open the drawer"),
            (10, "stack the blue cup on the plate"),
            (16, "close the drawer"),
        ],
    },
    "v21_video": {
        "codebase_version": "v2.1",
        "fps": 20,
        "robot_type": "aloha",
        "cameras": {"observation.images.cam_high": (48, 64)},
        "camera_dtype": "video",
        "names": ("motors", ALOHA_MOTORS),
        "rewards": True,
        "episodes": [
            (22, "insert the peg into the socket"),
            (30, "transfer the cube to the other arm"),
            (18, "insert the peg into the socket"),
        ],
    },
}

PLACEMENT_PREFIXES = (
    "meta/episodes/",
    "data/",
    "videos/",
    "dataset_from_index",
    "dataset_to_index",
)


def make_frame(h: int, w: int, ep: int, t: int, cam: int) -> np.ndarray:
    """HxWx3 uint8: gradients + a per-frame brightness jump + a moving yellow square."""
    y = np.arange(h, dtype=np.float64)[:, None] / (h - 1)
    x = np.arange(w, dtype=np.float64)[None, :] / (w - 1)
    b = 25.0 * ((3 * t + ep + cam) % 5)  # consecutive frames differ by 50 or 75 in red
    img = np.empty((h, w, 3), dtype=np.float64)
    img[..., 0] = 30 + 90 * x + b
    img[..., 1] = 30 + 90 * y + 0.5 * b
    img[..., 2] = 150 - 60 * x + 0.25 * b + 20 * ep
    s = max(4, h // 4)
    px = (2 * t + 5 * ep) % (w - s)
    py = (t + 3 * cam) % (h - s)
    img[py : py + s, px : px + s] = (250.0, 235.0, 40.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_vectors(
    ep: int, n: int, dim: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (degrees-like) and actions (the next target plus noise), float32."""
    t = np.arange(n + 1, dtype=np.float64)[:, None]
    j = np.arange(dim, dtype=np.float64)[None, :]
    traj = (20 + 5 * j) * np.sin(0.15 * t * (j + 1) / 3 + ep + j) + 10 * ep
    state = traj[:n].astype(np.float32)
    action = (traj[1:] + rng.normal(0, 0.5, size=(n, dim))).astype(np.float32)
    return state, action


def frame_tasks(task_spec: str | list, n: int) -> list[str]:
    if isinstance(task_spec, str):
        return [task_spec] * n
    out = [task for task, k in task_spec for _ in range(k)]
    assert len(out) == n, (task_spec, n)
    return out


def features_for(spec: dict) -> dict:
    style, joints = spec["names"]
    names = list(joints) if style == "list" else {"motors": list(joints)}
    feats = {
        "observation.state": {"dtype": "float32", "shape": (len(joints),), "names": names},
        "action": {"dtype": "float32", "shape": (len(joints),), "names": names},
    }
    for key, (h, w) in spec["cameras"].items():
        feats[key] = {
            "dtype": spec["camera_dtype"],
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        }
    if spec["rewards"]:
        feats["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
        feats["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    return feats


def _plain(v):
    """JSON-able copy of a lerobot value (numpy scalars, 1-element lists)."""
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def placement_v30(ds, cameras: list[str]) -> dict:
    """Where lerobot's writer says it put the episode just saved (its in-memory record)."""
    rec = {
        k: _plain(v) for k, v in ds.meta.latest_episode.items() if k.startswith(PLACEMENT_PREFIXES)
    }
    meta = ds.meta
    rec["data_file"] = meta.data_path.format(
        chunk_index=rec["data/chunk_index"], file_index=rec["data/file_index"]
    )
    from lerobot.datasets.utils import DEFAULT_EPISODES_PATH

    rec["episodes_meta_file"] = DEFAULT_EPISODES_PATH.format(
        chunk_index=rec["meta/episodes/chunk_index"], file_index=rec["meta/episodes/file_index"]
    )
    if meta.video_path:
        rec["video_files"] = {
            k: meta.video_path.format(
                video_key=k,
                chunk_index=rec[f"videos/{k}/chunk_index"],
                file_index=rec[f"videos/{k}/file_index"],
            )
            for k in cameras
        }
    return rec


def placement_v21(ds, ep: int, cameras: list[str]) -> dict:
    meta = ds.meta
    rec = {
        "episode_chunk": meta.get_episode_chunk(ep),
        "data_file": str(meta.get_data_file_path(ep)),
    }
    if meta.video_path:
        rec["video_files"] = {k: str(meta.get_video_file_path(ep, k)) for k in cameras}
    return rec


def write_set(name: str, out: Path) -> None:
    import lerobot
    from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset

    spec = SPECS[name]
    if CODEBASE_VERSION != spec["codebase_version"]:
        sys.exit(
            f"{name}: needs a lerobot that writes {spec['codebase_version']}, "
            f"this one ({lerobot.__version__}) writes {CODEBASE_VERSION}"
        )
    is_v30 = CODEBASE_VERSION == "v3.0"
    set_dir = out / name
    root = set_dir / "dataset"
    if set_dir.exists():
        shutil.rmtree(set_dir)
    set_dir.mkdir(parents=True)

    feats = features_for(spec)
    cameras = list(spec["cameras"])
    kwargs: dict = {}
    if is_v30:
        for key in ("data_files_size_in_mb", "video_files_size_in_mb", "metadata_buffer_size"):
            if key in spec:
                kwargs[key] = spec[key]
    if "vcodec" in spec:
        from lerobot.configs import RGBEncoderConfig

        kwargs["rgb_encoder"] = RGBEncoderConfig(vcodec=spec["vcodec"])
    ds = LeRobotDataset.create(
        repo_id=f"trajcorpus/{name}",
        fps=spec["fps"],
        features=feats,
        root=root,
        robot_type=spec["robot_type"],
        use_videos=spec["camera_dtype"] == "video",
        **kwargs,
    )
    if "chunks_size" in spec:
        # LeRobotDataset.create has no chunks_size argument; the metadata object sets it.
        ds.meta.update_chunk_settings(chunks_size=spec["chunks_size"])

    rng = np.random.default_rng(20260815)
    dim = len(spec["names"][1])
    gt_episodes = []
    for ep, (n, task_spec) in enumerate(spec["episodes"]):
        tasks = frame_tasks(task_spec, n)
        state, action = make_vectors(ep, n, dim, rng)
        reward = done = None
        if spec["rewards"]:
            success = ep % 2 == 1
            reward = (np.linspace(0, 0.9, n) ** 2).astype(np.float32)
            if success:
                reward[-1] = 1.0
            done = np.zeros(n, dtype=bool)
            done[-1] = True
        cam_gt: dict[str, dict] = {k: {"mean": [], "channel_mean": []} for k in cameras}
        if spec["camera_dtype"] == "image":
            for k in cameras:
                cam_gt[k]["sha256"] = []
        for t in range(n):
            frame: dict = {"observation.state": state[t].copy(), "action": action[t].copy()}
            if spec["rewards"]:
                frame["next.reward"] = np.array([reward[t]], dtype=np.float32)
                frame["next.done"] = np.array([done[t]], dtype=bool)
            for ci, (k, (h, w)) in enumerate(spec["cameras"].items()):
                img = make_frame(h, w, ep, t, ci)
                cam_gt[k]["mean"].append(round(float(img.mean()), 4))
                cam_gt[k]["channel_mean"].append(
                    [round(float(c), 4) for c in img.mean(axis=(0, 1))]
                )
                if "sha256" in cam_gt[k]:
                    cam_gt[k]["sha256"].append(hashlib.sha256(img.tobytes()).hexdigest())
                frame[k] = img
            if is_v30:
                frame["task"] = tasks[t]
                ds.add_frame(frame)
            else:
                ds.add_frame(frame, task=tasks[t])
        ds.save_episode()
        placement = placement_v30(ds, cameras) if is_v30 else placement_v21(ds, ep, cameras)
        rec: dict = {
            "episode_index": ep,
            "length": n,
            "task": tasks[0],
            "tasks": list(dict.fromkeys(tasks)),
        }
        if len(rec["tasks"]) > 1:
            rec["frame_tasks"] = tasks
        rec["timestamps"] = [float(np.float32(t / spec["fps"])) for t in range(n)]
        rec["observation.state"] = state.tolist()
        rec["action"] = action.tolist()
        rec["observation.state_sum"] = state.astype(np.float64).sum(axis=0).tolist()
        rec["action_sum"] = action.astype(np.float64).sum(axis=0).tolist()
        if spec["rewards"]:
            rec["next.reward"] = reward.tolist()
            rec["next.done"] = done.tolist()
        rec["cameras"] = cam_gt
        rec["lerobot_reported_placement"] = placement
        gt_episodes.append(rec)
    if hasattr(ds, "finalize"):
        ds.finalize()  # v3.0: closes the parquet writers (footers) and flushes episode metadata

    gt = {
        "name": name,
        "codebase_version": spec["codebase_version"],
        "repo_id": f"trajcorpus/{name}",
        "robot_type": spec["robot_type"],
        "fps": spec["fps"],
        "features_fed_to_create": {k: {**v, "shape": list(v["shape"])} for k, v in feats.items()},
        "cameras": {
            k: {"dtype": spec["camera_dtype"], "height": h, "width": w}
            for k, (h, w) in spec["cameras"].items()
        },
        "has_reward": spec["rewards"],
        "tasks_in_order_of_first_use": list(
            dict.fromkeys(t for n, ts in spec["episodes"] for t in frame_tasks(ts, n))
        ),
        "total_episodes": len(spec["episodes"]),
        "total_frames": sum(n for n, _ in spec["episodes"]),
        "writer_options": {
            k: spec[k]
            for k in (
                "chunks_size",
                "data_files_size_in_mb",
                "video_files_size_in_mb",
                "metadata_buffer_size",
                "vcodec",
            )
            if k in spec
        },
        "written_by": versions(),
        "notes": (
            "Everything but lerobot_reported_placement is computed from the arrays fed to "
            "lerobot; lerobot_reported_placement is the writer's own in-memory record "
            "(v3.0: LeRobotDatasetMetadata.latest_episode right after save_episode; v2.1: "
            "meta.get_data_file_path / get_video_file_path), never read back from the files. "
            "Camera means are over the uint8 pixels fed in; lossy video decodes within a few "
            "levels of them, image (PNG) features exactly (sha256 of raw HxWx3 bytes)."
        ),
        "episodes": gt_episodes,
    }
    (set_dir / "ground_truth.json").write_text(json.dumps(gt, indent=1) + "\n")
    print(f"{name}: {gt['total_episodes']} episodes, {gt['total_frames']} frames -> {root}")


def versions() -> dict:
    import av

    out = {"python": platform.python_version()}
    for dist in ("lerobot", "torch", "av", "datasets", "pyarrow", "pandas", "numpy", "Pillow"):
        out[dist] = version(dist)
    out["ffmpeg_libavcodec"] = ".".join(str(x) for x in av.library_versions["libavcodec"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="e.g. tests/fixtures/lerobot")
    ap.add_argument("names", nargs="+", choices=sorted(SPECS))
    args = ap.parse_args()
    for name in args.names:
        write_set(name, args.out)


if __name__ == "__main__":
    main()

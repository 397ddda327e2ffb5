"""The corpora of ``bench/pipeline.py`` (by hand): synthesised DQN Replay checkpoints, the bundled
Minari and COCO fixtures tiled under distinct ids, and the one-entry catalog each is run as."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "data" / "pipeline"


def _read_dqn_module():
    spec = importlib.util.spec_from_file_location("read_dqn", REPO / "bench" / "read_dqn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _synth(slots: int, checkpoints: int) -> Path:
    run = DATA / f"{checkpoints}x{slots}" / "Pong" / "1"
    if not (run / "replay_logs" / f"$store$_observation_ckpt.{checkpoints - 1}.gz").exists():
        _read_dqn_module().synthesize(run, slots, checkpoints)
    return run


def ensure_data(slots: int, checkpoints: int) -> tuple[Path, Path]:
    """(small, large) run folders with the same number of units (checkpoints), so both keep
    every worker busy: ``checkpoints`` x ``slots / checkpoints``, and ``checkpoints`` x
    ``slots``."""
    return _synth(slots // checkpoints, checkpoints), _synth(slots, checkpoints)


def synth_minari(copies: int) -> Path:
    """The bundled Minari fixtures (Hopper and HalfCheetah, 40 episodes each) copied ``copies``
    times under distinct dataset ids: ``2 * copies`` datasets, one unit each."""
    root = DATA / f"minari-x{copies}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    fixtures = REPO / "tests" / "fixtures" / "mujoco" / "minari" / "trajcorpus-fixtures"
    for ns in ("hopper", "halfcheetah"):
        for k in range(copies):
            folder = root / ns / f"mixed{k}-v0"
            shutil.copytree(fixtures / ns / "mixed-v0", folder)
            meta_path = folder / "data" / "metadata.json"
            meta = json.loads(meta_path.read_text())
            meta["dataset_id"] = f"{ns}/mixed{k}-v0"
            meta_path.write_text(json.dumps(meta))
    (root / "done").write_text("")
    return root


def synth_captions(copies: int) -> Path:
    """The bundled COCO-layout fixture (20 photos, 26 captions) with its images and captions
    listed ``copies`` times under distinct ids and file names (hard links to the same files:
    the reader refuses two ids naming one file): ``26 * copies`` records."""
    root = DATA / f"coco-x{copies}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    fixture = REPO / "tests" / "fixtures" / "image_caption" / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    ann = json.loads((fixture / "annotations" / "captions_train2017.json").read_text())
    for k in range(copies):
        for im in ann["images"]:
            os.link(fixture / "train2017" / im["file_name"],
                    root / "train2017" / f"c{k}_{im['file_name']}")
    big = {k: v for k, v in ann.items() if k not in ("images", "annotations")}
    big["images"] = [{**im, "id": im["id"] + k * 10**8, "file_name": f"c{k}_{im['file_name']}"}
                     for k in range(copies) for im in ann["images"]]
    big["annotations"] = [{**a, "id": a["id"] + k * 10**8, "image_id": a["image_id"] + k * 10**8}
                          for k in range(copies) for a in ann["annotations"]]
    (root / "annotations" / "captions_train2017.json").write_text(json.dumps(big))
    (root / "done").write_text("")
    return root


ID = "bench"  # the catalog entry every corpus kind is run as


def catalog(run_dir: Path, work: Path, kind: str = "dqn") -> Path:
    import yaml

    entry = {
        "dqn": {"kind": "dqn-replay", "uri": str(run_dir.parent.parent),
                "agent": "{task}/run{agent}", "tokenize": {"image_size": [80, 80]}},
        "minari": {"kind": "minari", "uri": str(run_dir),
                   "tokenize": {"mu_law": True, "mu_law_exempt": ["actions"]}},
        "captions": {"kind": "coco-captions", "uri": str(run_dir), "filter": {"enabled": False},
                     "options": {"images_per_unit": 100},
                     "tokenize": {"image_size": [192, 192], "text_model": {"vocab_size": 32000}}},
    }[kind]
    cat = {"version": 1, "datasets": [{"id": ID, **entry, "license": "CC-BY-4.0"}]}
    path = work / "catalog.yaml"
    path.write_text(yaml.safe_dump(cat))
    return path

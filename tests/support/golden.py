"""The golden record of the demo output (``tests/fixtures/golden/demo_outputs.json``): what it
holds per recorded demo config, and the snapshot of a built folder that is compared with it.

Shared by tests/test_golden_demo.py (the comparison, and ``--record``) and tests/conftest.py,
whose session demo output is the build the comparison reads: one build of the recorded configs
serves the golden check and every test that reads a demo output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["GOLDEN", "ONE_WORKER", "build", "recorded", "snapshot"]

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures/golden/demo_outputs.json"
ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
VOLATILE = ("code_version",)  # per config info; "created_by" is top level and not recorded


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def recorded() -> dict:
    return json.loads(GOLDEN.read_text())


def build(out: Path, ids: list[str]) -> None:
    """The demo entry point's run in this process (what ``--record`` writes from)."""
    from trajcorpus.pipelines.demo import default_catalog, run_demo

    run_demo(str(out), default_catalog(), fmt="both", only=ids, beam_args=ONE_WORKER,
             progress=False)


def _config_files(out: Path, config: str) -> dict[str, str]:
    """Every file of one config: data/<config>/*, card/<config>/*, and <dir>/<config>.*"""
    found = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(out).as_posix()
        parts = rel.split("/")
        if (len(parts) > 2 and parts[1] == config) or \
                (len(parts) == 2 and parts[1].split(".")[0] == config):
            found[rel] = _sha(path.read_bytes())
    return found


def _info_digests(info: dict, keys: list[str] | None = None) -> dict[str, str]:
    keys = [k for k in info if k not in VOLATILE] if keys is None else keys
    return {k: _sha(_canonical(info.get(k, "<missing>")).encode()) for k in keys}


def snapshot(out: Path, ids: list[str], golden: dict | None = None) -> dict:
    """Digests of ``out``'s files and manifest per config in ``ids``; with ``golden``, of the
    manifest info keys the record holds (a key added after the recording is not compared)."""
    manifest = json.loads((out / "manifest.json").read_text())
    configs = {}
    for config in ids:
        section = manifest["configs"][config]
        keys = None if golden is None else list(golden["configs"][config]["info"])
        configs[config] = {
            "files": _config_files(out, config),
            "info": _info_digests(section["info"], keys),
            "totals": _sha(_canonical(section["totals"]).encode()),
        }
    return {
        "configs": configs,
        "card": _sha((out / "README.md").read_bytes()),
        "manifest_version": manifest["version"],
        "manifest_files": _sha(_canonical(manifest["files"]).encode()),
    }

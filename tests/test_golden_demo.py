"""Behaviour unchanged: every demo config rebuilds to the bytes recorded before a refactor.

``tests/fixtures/golden/demo_outputs.json`` holds, per recorded ``demo-*`` catalog entry, the
sha256 of every file the job writes for it (shards of both formats, episode index, audit files,
tokenizer model, card images) and of its manifest section; plus the card and the manifest's file
list of the whole folder. First recorded with the code before #14; re-recorded after #14, #15,
#16, #18 and #21 landed to add their demo entries (every earlier entry's files and manifest values
unchanged, checked when re-recording; the card covers all configs of the folder, so it changed).
Record by::

    PYTHONPATH=src python tests/test_golden_demo.py --record

The only manifest values left out are the ones that legitimately vary between builds of the same
bytes (``created_by`` and ``code_version``: the package version). A manifest key added after the
recording is not compared (the record names the keys it holds); every recorded key must keep its
exact value. Entries added to the catalog later (new kinds) are not compared until recorded.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests/fixtures/golden/demo_outputs.json"
ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
VOLATILE = ("code_version",)  # per config info; "created_by" is top level and not recorded


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def build(out: Path, ids: list[str]) -> None:
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


def snapshot(out: Path, ids: list[str], recorded: dict | None = None) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    configs = {}
    for config in ids:
        section = manifest["configs"][config]
        keys = None if recorded is None else list(recorded["configs"][config]["info"])
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


def _recorded() -> dict:
    return json.loads(GOLDEN.read_text())


def test_golden_covers_every_demo_entry_it_names():
    from trajcorpus.pipelines.demo import default_catalog
    from trajcorpus.schemas.catalog import load_catalog

    demos = {d.id for d in load_catalog(default_catalog()).datasets if d.demo}
    recorded = set(_recorded()["configs"])
    assert recorded <= demos, f"recorded entries missing from catalog.yaml: {recorded - demos}"
    assert len(recorded) >= 8


def test_every_demo_config_rebuilds_byte_identical(tmp_path):
    golden = _recorded()
    ids = sorted(golden["configs"])
    out = tmp_path / "OUT"
    build(out, ids)
    now = snapshot(out, ids, golden)
    for config in ids:
        want, got = golden["configs"][config], now["configs"][config]
        assert got["files"] == want["files"], f"{config}: written files differ"
        changed = [k for k in want["info"] if got["info"][k] != want["info"][k]]
        assert not changed, f"{config}: manifest info keys changed: {changed}"
        assert got["totals"] == want["totals"], f"{config}: manifest totals differ"
    assert now["manifest_version"] == golden["manifest_version"]
    assert now["manifest_files"] == golden["manifest_files"], "manifest file list differs"
    assert now["card"] == golden["card"], "README.md (the dataset card) differs"


def record(out: Path) -> None:
    from trajcorpus.pipelines.demo import default_catalog
    from trajcorpus.schemas.catalog import load_catalog

    ids = sorted(d.id for d in load_catalog(default_catalog()).datasets if d.demo)
    build(out, ids)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(snapshot(out, ids), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":  # pragma: no cover  (the recording, run by hand)
    import tempfile

    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_golden_demo.py --record")
    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp) / "OUT")

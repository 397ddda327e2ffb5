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

The build compared is the session's demo output (tests/conftest.py's ``demo_workspace``: the
demo entry point on exactly the recorded configs), so the suite builds the demo configs once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from support.golden import GOLDEN, build, recorded, snapshot


def test_golden_covers_every_demo_entry_it_names():
    from trajcorpus.pipelines.demo import default_catalog
    from trajcorpus.schemas.catalog import load_catalog

    demos = {d.id for d in load_catalog(default_catalog()).datasets if d.demo}
    ids = set(recorded()["configs"])
    assert ids <= demos, f"recorded entries missing from catalog.yaml: {ids - demos}"
    assert len(ids) >= 8


def test_every_demo_config_rebuilds_byte_identical(demo_workspace):
    """The build is the session's demo output (tests/conftest.py: the demo entry point on every
    recorded config, both formats, one in-process worker), snapshotted as soon as it was written,
    before any test reads it or writes beside it."""
    golden = recorded()
    ids = sorted(golden["configs"])
    now = demo_workspace.snapshot
    assert sorted(now["configs"]) == ids
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

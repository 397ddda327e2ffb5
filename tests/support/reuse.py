"""What a build that reused build-cache entries may differ in from a clean build: the card's one
"Build cache: R of N units reused" line and ``audit/{config}.build.json``; every other file of
the output must be byte-identical (docs/build-cache.md)."""

from __future__ import annotations

import json
from pathlib import Path


def assert_same_but_reuse(got: Path, got_tree: dict[str, str], want: Path,
                          want_tree: dict[str, str], config: str, reused: int | None = None
                          ) -> int:
    """Check ``got`` against the clean build ``want`` (trees: relative path -> sha256); returns
    the number of units ``got`` reused (``reused``, when given, must match)."""
    facts_path = f"audit/{config}.build.json"
    facts = json.loads((got / facts_path).read_text())
    assert set(facts) == {"units", "reused_units"} and 0 < facts["reused_units"] <= facts["units"]
    assert reused is None or facts["reused_units"] == reused, facts
    assert set(got_tree) - {facts_path} == set(want_tree)
    differ = sorted(k for k in want_tree if got_tree[k] != want_tree[k])
    assert differ == ["README.md"], differ
    mine = (got / "README.md").read_text().splitlines()
    theirs = (want / "README.md").read_text().splitlines()
    extra = [ln for ln in mine if ln not in theirs]
    assert len(extra) == 1 and extra[0].startswith(
        f"Build cache: {facts['reused_units']} of {facts['units']} units reused"), extra
    i = mine.index(extra[0])  # the card adds the line as its own paragraph: nothing else
    assert mine[i - 1] == "" and mine[:i - 1] + mine[i + 1:] == theirs
    return facts["reused_units"]


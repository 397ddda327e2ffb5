"""Every bad input of the adversarial corpus gets its expected outcome, and nothing runs as code.

The table is in ``make_corpus.py``; each case is built into a fresh temporary folder from the good
fixtures and read the way the Beam job reads (``Source.read()``: quarantine and go on), or, for the
catalog, loaded with ``load_catalog``. The checks per outcome:

* ``error``: a :class:`TrajcorpusError` is raised, or the file is quarantined as a whole
  (``Rejected(kind="unit")``); its text matches the case's pattern;
* ``quarantine``: no exception; a ``Rejected`` whose ``location: reason`` matches the pattern; the
  other episodes come out unharmed (their number, and each one exactly as in a clean read);
* ``ignored``: no exception, no rejection, the same episodes as a clean read.

In every case a marker file that only unpickling (or a path escape) could create stays absent,
and an exception that is not a TrajcorpusError fails the test (a crash is never an answer).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from make_corpus import CASES, Built, Case, build, build_clean, variant_of

from trajcorpus.errors import TrajcorpusError
from trajcorpus.schemas.catalog import load_catalog
from trajcorpus.schemas.episode import Episode, Rejected
from trajcorpus.sources import open_source, registered_kinds


@dataclasses.dataclass
class Result:
    episodes: list[Episode]
    rejected: list[Rejected]
    error: str | None

    def texts(self) -> list[str]:
        out = [f"{r.location}: {r.reason}" for r in self.rejected]
        return out + ([self.error] if self.error else [])


def read_all(kind: str, built: Built) -> Result:
    """Read like the job does; TrajcorpusError is an answer, anything else propagates (a crash)."""
    episodes: list[Episode] = []
    rejected: list[Rejected] = []
    try:
        if kind == "catalog":
            load_catalog(built.uri)
        else:
            src = open_source(kind, built.uri, dataset="adversarial", options=built.options)
            for item in src.read():
                (rejected if isinstance(item, Rejected) else episodes).append(item)
    except TrajcorpusError as e:
        return Result(episodes, rejected, str(e))
    return Result(episodes, rejected, None)


# -- clean reads of the same (trimmed) fixtures, to compare survivors against -------------------

@dataclasses.dataclass(frozen=True)
class Clean:
    episodes: dict[str, Episode]
    rejected: tuple[str, ...]  # what the good fixture itself quarantines (img2dataset's 404)


@functools.cache
def clean_read(kind: str, variant: str, tmp: str) -> Clean:
    """What the unbroken input the cases of ``kind`` start from reads as (same trimming)."""
    out = Path(tmp) / f"clean-{kind}-{variant}"
    shutil.rmtree(out, ignore_errors=True)
    res = read_all(kind, build_clean(kind, out, variant))
    assert res.error is None, res.error
    return Clean({e.episode_id: e for e in res.episodes},
                 tuple(sorted(t.replace(str(out), "<root>") for t in res.texts())))


def same_episode(a: Episode, b: Episode) -> bool:
    if (a.task, a.agent, a.order, a.action_kind, a.is_terminal, a.is_truncated) != \
            (b.task, b.agent, b.order, b.action_kind, b.is_terminal, b.is_truncated):
        return False
    if a.observation_kinds != b.observation_kinds or a.return_ != b.return_:
        return False
    if not (np.array_equal(a.actions, b.actions) and np.array_equal(a.rewards, b.rewards)):
        return False
    return all(np.array_equal(a.observations[k], b.observations[k]) for k in a.observations)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_case(c: Case, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    built = build(c, tmp_path)
    res = read_all(c.kind, built)
    texts = res.texts()
    if built.marker is not None:
        assert not built.marker.exists(), f"{c.name}: data ran as code / escaped: {built.marker}"
    if c.outcome == "error":
        unit_level = [f"{r.location}: {r.reason}" for r in res.rejected if r.kind == "unit"]
        candidates = ([res.error] if res.error else []) + unit_level
        assert candidates, f"{c.name}: accepted silently ({len(res.episodes)} episodes)"
        assert any(re.search(c.pattern, t) for t in candidates), \
            f"{c.name}: no message matches {c.pattern!r}: {candidates}"
        return
    assert res.error is None, f"{c.name}: the whole input failed: {res.error}"
    clean = clean_read(c.kind, variant_of(c), str(tmp_path_factory.getbasetemp()))
    new = sorted(set(t.replace(str(tmp_path / c.name), "<root>") for t in texts)
                 - set(clean.rejected))
    if c.outcome == "quarantine":
        assert new, f"{c.name}: nothing quarantined ({len(res.episodes)} episodes)"
        assert any(re.search(c.pattern, t) for t in new), \
            f"{c.name}: no rejection matches {c.pattern!r}: {new}"
        assert all(r.reason and r.location for r in res.rejected)
    else:
        assert not new, f"{c.name}: {new}"
    assert len(res.episodes) == c.survivors, (c.name, len(res.episodes), new)
    for ep in res.episodes:
        assert ep.episode_id in clean.episodes, f"{c.name}: unexpected episode {ep.episode_id}"
        assert same_episode(ep, clean.episodes[ep.episode_id]), \
            f"{c.name}: {ep.episode_id} changed"


def test_corpus_is_big_and_covers_every_kind():
    assert len(CASES) >= 40
    kinds = {c.kind for c in CASES}
    readers = {"dqn-replay", "rlu-atari", "minari", "d4rl", "coco-captions", "img2dataset",
               "hf-image-parquet", "rlds"}  # the kinds this corpus was built for
    assert readers | {"catalog"} <= kinds, readers - kinds
    assert readers <= set(registered_kinds())
    assert len({c.name for c in CASES}) == len(CASES)


def test_reliability_doc_lists_every_case():
    """docs/reliability.md summarises the corpus: every case by name, and the right total."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    missing = [c.name for c in CASES if f"`{c.name}`" not in doc]
    assert not missing, f"cases missing from docs/reliability.md: {missing}"
    assert f"| **{len(CASES)}** |" in doc
    for c in CASES:
        assert re.search(rf"\| `{re.escape(c.name)}` \|[^\n]*\| {c.outcome} \|", doc), c.name

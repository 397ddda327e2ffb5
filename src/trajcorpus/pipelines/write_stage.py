"""The last stage: write one shard, in every requested format, from its sequences' spilled windows
(sorted by key, prompts attached), and report its files and per-task statistics."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from ..errors import TrajcorpusError
from ..tokenizers.schemes import scheme_of
from ..tokenizers.tokenized import TokenizedEpisode
from .bundles import window_refs
from .sequences import assemble, join_steps
from .spec import _NS, JobSpec, PromptRef, WindowRef, say
from .spill import SpillReader

__all__ = ["WriteShard"]


class WriteShard(beam.DoFn):
    """Write shard ``index`` of ``n``: its sequences sorted by key, prompts attached, in every
    requested format; a shard with no sequence is not written. Emits the ShardFile records (main) and per-task statistics ("stats")."""

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.seq_ctr = Metrics.counter(_NS, "sequences")
        self.prompt_ctr = Metrics.counter(_NS, "prompted_sequences")
        self.bytes_ctr = Metrics.counter(_NS, "output_bytes")

    def setup(self) -> None:
        self.reader = SpillReader()

    def teardown(self) -> None:
        self.reader.close()

    def process(self, element: tuple[int, dict], num_shards: int) -> Iterator[Any]:
        """``element``: (shard index, {"seq": bundle parts, "prompt": tuples of (sequence key,
        PromptRef or None), "slot": [None]})."""
        from ..shards.index import IndexTap
        from ..shards.layout import shard_relpath
        from ..shards.writer import write_shard

        t0 = time.perf_counter()
        index, groups = element
        refs = window_refs(groups["seq"])  # the bundles' parts hashed to this shard
        if not refs:  # no sequence hashed here: no empty file (finalize closes the numbering)
            return
        for a, b in zip(refs, refs[1:], strict=False):
            if a.key == b.key:
                raise TrajcorpusError(self.spec.config, f"duplicate sequence key {a.key} "
                                      f"({a.episode_id} window {a.window})")
        prompt_of = {key: ref for part in groups["prompt"] for key, ref in part}
        stats: dict[str, dict] = {}
        for i, fmt in enumerate(self.spec.formats):
            relpath = shard_relpath(self.spec.config, self.spec.split, fmt, index, num_shards)
            examples = self._examples(refs, prompt_of, stats if i == 0 else None)
            tap = IndexTap(self.spec.split, index)  # every format holds the same rows
            # staged under the run's temporary folder: finalize() moves every shard into place
            # just before the manifest, so a failed run leaves no file under a shard name
            shard = write_shard(tap(examples), self.spec.staging, relpath, fmt)
            if i == 0:
                tap.write(self.spec.staging, self.spec.config)
            record = _shard_record(shard)
            self.bytes_ctr.inc(record["bytes"])
            yield record
            say(self.spec, f"wrote {relpath}: {record['examples']} examples, "
                f"{record['bytes'] / 1e6:.1f} MB ({time.perf_counter() - t0:.1f}s)")
        for task, s in stats.items():
            yield beam.pvalue.TaggedOutput("stats", (task, s))

    def _prompt(self, ref: PromptRef | None) -> TokenizedEpisode | None:
        if ref is None:
            return None
        return join_steps([(first, self.reader.read(uri, off, n, cache=True))
                           for first, uri, off, n in ref.windows], ref.start, ref.stop)

    def _examples(self, refs: list[WindowRef], prompt_of: dict, stats: dict | None
                  ) -> Iterator[dict]:
        """The shard's examples in key order (write_shard checks each against SPEC 6)."""
        length = self.spec.sequence.length
        names = scheme_of(self.spec.tokenize).modality_names
        for r in refs:
            window = self.reader.read(r.uri, r.offset, r.length)
            pref = prompt_of.get(r.key)
            arrays = assemble(window, self._prompt(pref), length, where=f"sequence {r.key}")
            meta = json.loads(r.meta)
            meta["prompt"] = None if pref is None else {
                "episode_id": pref.episode_id, "mode": pref.mode, "first_step": pref.start,
                "last_step": pref.stop - 1, "self": pref.is_self}
            ex = {"__key__": r.key, **arrays.as_dict(),
                  "meta": json.dumps(meta, sort_keys=True, separators=(",", ":"))}
            if stats is not None:
                s = stats.setdefault(r.task, {"sequences": 0, "prompted_sequences": 0,
                                              "tokens": [0] * len(names)})
                s["sequences"] += 1
                s["prompted_sequences"] += pref is not None
                counts = np.bincount(arrays.modality, minlength=len(names))
                s["tokens"] = [a + int(b) for a, b in zip(s["tokens"], counts, strict=True)]
                self.seq_ctr.inc()
                self.prompt_ctr.inc(pref is not None)
            yield ex


def _shard_record(shard: Any) -> dict:
    if dataclasses.is_dataclass(shard):
        return dataclasses.asdict(shard)
    return dict(shard)


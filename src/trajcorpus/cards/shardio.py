"""Read examples back from the output's shards for the card (one example to draw, a bounded scan).

The shards module owns the on-disk encoding; this goes through its reader. Members are never
unpickled and tar member names are never used as paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import fs
from ..errors import ShardError
from ..shards.codecs import get_codec
from ..tokenizers.scheme import Modality
from .inputs import ShardEntry

__all__ = ["SCAN_BYTE_BUDGET", "ShardScan", "iter_examples", "first_example", "scan_files",
           "scan_selection"]

SCAN_BYTE_BUDGET = 256 << 20  # bytes of shards the card reads per config for its token scan
_NUM_MODALITIES = len(Modality)


def iter_examples(out: str, entry: ShardEntry) -> Iterator[dict[str, Any]]:
    """The examples of one shard in file order, as dicts of NumPy arrays (+ ``meta`` str,
    ``__key__``), through the shards module's own reader (hashes are ``trajcorpus verify``'s
    job, so they are not re-checked here)."""
    from ..shards import ShardDataset, ShardRef

    ref = ShardRef(fs.join(out, entry.path), entry.examples, entry.format, entry.sha256,
                   entry.bytes)
    yield from ShardDataset(shards=[ref]).stream(verify=False)


def first_example(out: str, files: Sequence[ShardEntry]) -> dict[str, Any] | None:
    """The first example of the first non-empty shard (the card's deterministic pick)."""
    for f in files:
        if f.examples == 0:
            continue
        for ex in iter_examples(out, f):
            return ex
    return None


@dataclasses.dataclass
class ShardScan:
    """Token counts measured on the shards themselves (loss mask and prompt are not in the audit)."""

    files_scanned: int
    files_total: int
    examples: int
    tokens: int
    loss_tokens: int
    prompt_tokens: int
    by_modality: dict[str, int]
    loss_by_modality: dict[str, int]

    @property
    def complete(self) -> bool:
        return self.files_scanned == self.files_total


def scan_selection(files: Sequence[ShardEntry], budget: int = SCAN_BYTE_BUDGET
                   ) -> list[ShardEntry]:
    """Whole shards in manifest order up to ``budget`` bytes (always at least one)."""
    chosen, total = [], 0
    for f in files:
        if chosen and total + f.bytes > budget:
            break
        chosen.append(f)
        total += f.bytes
    return chosen


def scan_files(out: str, files: Sequence[ShardEntry], files_total: int) -> ShardScan:
    """Count tokens by modality, loss-masked tokens and prompt tokens over ``files``."""
    names = [m.name.lower() for m in Modality]
    by_mod = np.zeros(_NUM_MODALITIES, np.int64)
    loss_mod = np.zeros(_NUM_MODALITIES, np.int64)
    examples = prompt = 0
    for f in files:
        chunks = _parquet_columns(out, f) if get_codec(f.format).columnar else (
            (ex["modality"], ex["loss_mask"], ex["is_prompt"], 1) for ex in iter_examples(out, f))
        for modality, loss_mask, is_prompt, count in chunks:
            mod = np.asarray(modality, dtype=np.int64)
            mask = np.asarray(loss_mask).astype(bool)
            by_mod += np.bincount(mod, minlength=_NUM_MODALITIES)[:_NUM_MODALITIES]
            loss_mod += np.bincount(mod[mask], minlength=_NUM_MODALITIES)[:_NUM_MODALITIES]
            prompt += int(np.count_nonzero(is_prompt))
            examples += count
    return ShardScan(
        files_scanned=len(files), files_total=files_total, examples=examples,
        tokens=int(by_mod.sum()), loss_tokens=int(loss_mod.sum()), prompt_tokens=prompt,
        by_modality=dict(zip(names, by_mod.tolist(), strict=True)),
        loss_by_modality=dict(zip(names, loss_mod.tolist(), strict=True)),
    )


def _parquet_columns(out: str, entry: ShardEntry
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(modality, loss_mask, is_prompt, rows) per row group, reading those three columns only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    uri = fs.join(out, entry.path)
    cols = ["modality", "loss_mask", "is_prompt"]
    with fs.open_uri(uri, "rb") as f:
        try:
            pf = pq.ParquetFile(f)
            for rg in range(pf.metadata.num_row_groups):
                t = pf.read_row_group(rg, columns=cols)
                flat = [pa.chunked_array(t.column(c)).combine_chunks().flatten().to_numpy(
                    zero_copy_only=False) for c in cols]
                if not len(flat[0]) == len(flat[1]) == len(flat[2]):
                    raise ShardError(f"{uri} [row group {rg}]",
                                     "modality, loss_mask and is_prompt differ in length")
                yield flat[0], flat[1], flat[2], t.num_rows
        except (pa.ArrowException, OSError, KeyError) as e:
            raise ShardError(uri, f"cannot read columns {cols}: {e}") from None

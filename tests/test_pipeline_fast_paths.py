"""The job's per-window fast paths (#19) give what the plain forms give: prompt steps joined from
windows cut first, and spill records decoded through the cached header layouts."""

from __future__ import annotations

import numpy as np
import pytest

from test_pipeline_sequences import make_episode
from trajcorpus.errors import ShardError, TokenizeError
from trajcorpus.pipelines import spill
from trajcorpus.pipelines.sequences import concat_tokenized, cut_windows, join_steps, step_sizes
from trajcorpus.pipelines.spill import decode_record, encode_record

FIELDS = ("tokens", "modality", "loss_mask", "local_position", "step_offsets", "patches",
          "patch_position", "patch_offsets")


def _same(a, b) -> None:
    for f in FIELDS:
        got, want = getattr(a, f), getattr(b, f)
        assert got.dtype == want.dtype, f
        np.testing.assert_array_equal(got, want, err_msg=f)


@pytest.mark.parametrize(("start", "stop"), [(0, 9), (2, 7), (3, 4), (4, 9), (0, 1), (8, 9)])
def test_join_steps_is_the_span_of_the_joined_windows(start: int, stop: int) -> None:
    ep = make_episode([5, 6, 4, 7, 5, 6, 4, 5, 6], patches_per_step=2, channels=1)
    wins = cut_windows(step_sizes(ep), 16, 0, lambda w: False, "ep")
    assert len(wins) > 2
    parts = [(w.start, ep.span(w.start, w.stop)) for w in wins]
    cover = [(f, t) for f, t in parts if f < stop and f + t.num_steps > start]
    base = cover[0][0]
    want = concat_tokenized([t for _, t in cover]).span(start - base, stop - base)
    _same(join_steps(cover, start, stop), want)
    _same(join_steps(parts, start, stop), want)  # windows outside the steps are skipped


def test_join_steps_refuses_a_gap() -> None:
    ep = make_episode([5, 6, 4, 7, 5, 6], patches_per_step=1, channels=1)
    parts = [(0, ep.span(0, 2)), (4, ep.span(4, 6))]  # steps 2-3 missing
    with pytest.raises(TokenizeError, match=r"steps \[1, 5\).*do not cover"):
        join_steps(parts, 1, 5)
    with pytest.raises(TokenizeError, match="do not cover"):
        join_steps([], 0, 1)


def test_spill_records_of_many_shapes_decode_through_the_layout_cache() -> None:
    spill._LAYOUTS.clear()
    eps = [make_episode([3 + i % 3] * (1 + i % 3), patches_per_step=i % 3 % 2, channels=1, seed=i)
           for i in range(12)]
    records = [encode_record(e) for e in eps]
    for _ in range(2):  # the second pass hits the cache
        for e, r in zip(eps, records, strict=True):
            _same(decode_record(r), e)
    assert 1 < len(spill._LAYOUTS) < len(eps)  # shapes repeat, so do layouts


def test_a_cached_layout_still_bounds_a_corrupt_payload() -> None:
    good = encode_record(make_episode([5, 5], patches_per_step=1, channels=1))
    decode_record(good)  # its layout is now cached
    hlen = int.from_bytes(good[4:8], "little")
    with pytest.raises(ShardError, match="truncated"):
        decode_record(good[:-3])
    with pytest.raises(ShardError, match="truncated or corrupt"):
        decode_record(good[:8 + hlen] + b"\x00" * 20)


def test_the_layout_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(spill, "_MAX_LAYOUTS", 3)
    spill._LAYOUTS.clear()
    for n in range(1, 8):
        ep = make_episode([4] * n)
        _same(decode_record(encode_record(ep)), ep)
        assert len(spill._LAYOUTS) <= 3

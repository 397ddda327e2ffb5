"""Sequences (SPEC section 5) from hand-built TokenizedEpisodes: exactly L tokens, whole timesteps,
padding at the end, prompts masked; and the spill format the job uses to move windows."""

from __future__ import annotations

import numpy as np
import pytest

from trajcorpus.errors import ShardError, TokenizeError
from trajcorpus.pipelines.sequences import (
    assemble,
    concat_tokenized,
    cut_windows,
    pack_vl,
    step_sizes,
)
from trajcorpus.pipelines.spill import SpillReader, SpillWriter, decode_record, encode_record
from trajcorpus.tokenizers.scheme import Modality
from trajcorpus.tokenizers.tokenized import TokenizedEpisode


def make_episode(sizes: list[int], patches_per_step: int = 0, channels: int = 3,
                 seed: int = 0) -> TokenizedEpisode:
    """Per step: ``patches_per_step`` image slots, then continuous obs, separator, 1 action."""
    rng = np.random.default_rng(seed)
    toks, mods, masks, locs, pos = [], [], [], [], []
    for t, n in enumerate(sizes):
        n_obs = n - 2
        assert n_obs >= patches_per_step
        mod = [Modality.IMAGE] * patches_per_step + [Modality.CONTINUOUS] * (n_obs - patches_per_step)
        mods += mod + [Modality.SEPARATOR, Modality.ACTION]
        toks += [-1] * patches_per_step + list(32000 + rng.integers(0, 1024, n_obs - patches_per_step))
        toks += [33024, 100 + t % 7]
        masks += [0] * n_obs + [0, 1]
        locs += list(range(n_obs)) + [-1, -1]
        pos += [(i // 4, i % 4) for i in range(patches_per_step)]
    steps = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    p = patches_per_step * len(sizes)
    return TokenizedEpisode(
        np.array(toks, np.int32), np.array(mods, np.uint8), np.array(masks, np.uint8),
        np.array(locs, np.int16), steps,
        rng.integers(0, 256, (p, 16, 16, channels), dtype=np.uint8),
        np.array(pos, np.int16).reshape(p, 2),
        np.arange(len(sizes) + 1, dtype=np.int64) * patches_per_step)


def test_windows_are_whole_timesteps_within_L() -> None:
    sizes = np.array([30, 31, 17, 64, 5, 40, 40, 40, 12, 99, 3])
    wins = cut_windows(sizes, 100, 0, lambda w: False, "ep")
    assert wins[0].start == 0 and wins[-1].stop == len(sizes)
    for a, b in zip(wins, wins[1:], strict=False):
        assert a.stop == b.start  # contiguous, nothing dropped
    for w in wins:
        assert w.stop > w.start
        assert sizes[w.start:w.stop].sum() <= 100
        if w.stop < len(sizes):  # greedy: the next step would not have fit
            assert sizes[w.start:w.stop + 1].sum() > 100


def test_prompted_windows_leave_room_for_the_budget() -> None:
    sizes = np.full(200, 10)
    wins = cut_windows(sizes, 100, 30, lambda w: w % 2 == 1, "ep")
    for w in wins:
        cap = 70 if w.index % 2 == 1 else 100
        assert w.wants_prompt == (w.index % 2 == 1)
        assert sizes[w.start:w.stop].sum() <= cap
    assert sum(w.stop - w.start for w in wins) == 200
    # a step larger than L - budget cannot share with a prompt: that window goes without one
    wins = cut_windows(np.array([90, 10]), 100, 30, lambda w: True, "ep")
    assert not wins[0].wants_prompt and (wins[0].start, wins[0].stop) == (0, 2)


def test_a_timestep_longer_than_L_names_the_episode() -> None:
    with pytest.raises(TokenizeError, match="Pong/1/ep7.*timestep 2 has 130 tokens"):
        cut_windows(np.array([10, 20, 130]), 128, 0, lambda w: False, "Pong/1/ep7")


def test_assemble_is_exactly_L_with_padding_at_the_end() -> None:
    ep = make_episode([20] * 10, patches_per_step=4)
    window = ep.span(2, 6)
    seq = assemble(window, None, 128)
    n = window.num_tokens
    assert n == 80
    for arr in (seq.tokens, seq.modality, seq.loss_mask, seq.local_position, seq.is_prompt):
        assert arr.shape == (128,)
    assert seq.tokens.dtype == np.int32 and seq.modality.dtype == np.uint8
    assert seq.local_position.dtype == np.int16
    np.testing.assert_array_equal(seq.tokens[:n], window.tokens)
    np.testing.assert_array_equal(seq.loss_mask[:n], window.loss_mask)
    assert (seq.tokens[n:] == 0).all() and (seq.modality[n:] == Modality.PAD).all()
    assert (seq.loss_mask[n:] == 0).all() and (seq.local_position[n:] == -1).all()
    assert not seq.is_prompt.any()
    assert seq.patches.shape == (16, 16, 16, 3)
    np.testing.assert_array_equal(seq.patches, ep.patches[8:24])
    assert int((seq.modality == Modality.IMAGE).sum()) == seq.patches.shape[0]


def test_prompt_tokens_come_first_masked_and_flagged() -> None:
    ep = make_episode([20] * 10, patches_per_step=4, seed=1)
    other = make_episode([20] * 6, patches_per_step=4, seed=2)
    prompt = other.span(4, 6)
    seq = assemble(ep.span(0, 3), prompt, 128)
    assert seq.is_prompt[:40].all() and not seq.is_prompt[40:].any()
    assert not seq.loss_mask[:40].any()  # prompt: loss mask 0 even on its action tokens
    assert seq.loss_mask[40:100].sum() == 3  # the window's 3 action tokens stay targets
    np.testing.assert_array_equal(seq.tokens[:40], prompt.tokens)
    np.testing.assert_array_equal(seq.patches[:8], prompt.patches)
    np.testing.assert_array_equal(seq.patches[8:], ep.patches[:12])
    np.testing.assert_array_equal(seq.patch_position[:8], prompt.patch_position)
    assert (seq.modality[100:] == Modality.PAD).all()
    with pytest.raises(TokenizeError):
        assemble(ep.span(0, 6), prompt, 128)  # 40 + 120 > 128


def test_concat_of_spans_gives_back_the_episode() -> None:
    ep = make_episode([5, 7, 9, 11, 13], patches_per_step=2)
    joined = concat_tokenized([ep.span(0, 2), ep.span(2, 3), ep.span(3, 5)])
    for f in ("tokens", "modality", "loss_mask", "local_position", "step_offsets", "patches",
              "patch_position", "patch_offsets"):
        np.testing.assert_array_equal(getattr(joined, f), getattr(ep, f))
    np.testing.assert_array_equal(step_sizes(joined), [5, 7, 9, 11, 13])


def _caption_record(n_text: int, n_patches: int, seed: int) -> TokenizedEpisode:
    rng = np.random.default_rng(seed)
    n = n_text + n_patches
    mod = np.array([Modality.TEXT] * n_text + [Modality.IMAGE] * n_patches, np.uint8)
    tok = np.concatenate([rng.integers(1, 32000, n_text), np.full(n_patches, -1)]).astype(np.int32)
    return TokenizedEpisode(
        tok, mod, (mod == Modality.TEXT).astype(np.uint8), np.arange(n, dtype=np.int16),
        np.array([0, n]), rng.integers(0, 256, (n_patches, 16, 16, 3), dtype=np.uint8),
        np.zeros((n_patches, 2), np.int16), np.array([0, n_patches]))


def test_vision_language_pack_pads_or_crops() -> None:
    recs = [_caption_record(10, 36, i) for i in range(5)]  # 46 tokens each, 230 in all
    packed, cropped = pack_vl(recs, 256)
    assert not cropped and packed.num_tokens == 230 and packed.patches.shape[0] == 180
    seq = assemble(packed, None, 256)
    np.testing.assert_array_equal(seq.tokens[:46], recs[0].tokens)
    np.testing.assert_array_equal(seq.tokens[184:230], recs[4].tokens)
    assert (seq.modality[230:] == Modality.PAD).all()

    packed, cropped = pack_vl(recs, 100)  # 2 whole records + 8 tokens of the third
    assert cropped and packed.num_tokens == 100
    assert packed.patches.shape[0] == 36 + 36  # the third's 8 kept tokens are text
    seq = assemble(packed, None, 100)
    assert seq.tokens.shape == (100,) and not (seq.modality == Modality.PAD).any()
    np.testing.assert_array_equal(seq.patches[36:], recs[1].patches)


def test_spill_round_trip(tmp_path) -> None:
    ep = make_episode([20, 30, 40], patches_per_step=3, channels=1)
    w = SpillWriter(str(tmp_path / "u.spill"))
    refs = [w.write(ep.span(0, 1)), w.write(ep.span(1, 3))]
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["u.spill"]  # written under a temp name
    r = SpillReader()
    back = concat_tokenized([r.read(str(tmp_path / "u.spill"), off, n) for off, n in refs])
    r.close()
    for f in ("tokens", "modality", "loss_mask", "local_position", "patches", "patch_position",
              "patch_offsets", "step_offsets"):
        got, want = getattr(back, f), getattr(ep, f)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_spill_refuses_garbage() -> None:
    good = encode_record(make_episode([5]))
    with pytest.raises(ShardError, match="bad magic"):
        decode_record(b"XXXX" + good[4:])
    with pytest.raises(ShardError, match="truncated"):
        decode_record(good[:-3])
    hlen = int.from_bytes(good[4:8], "little")
    header = good[8:8 + hlen].replace(b"[5]", b"[99999999999]", 1)
    bomb = good[:4] + len(header).to_bytes(4, "little") + header + good[8 + hlen:]
    with pytest.raises(ShardError, match="more than"):  # the shapes bound decompression
        decode_record(bomb)
    header = good[8:8 + hlen].replace(b"[5]", b"[6]", 1)
    lying = good[:4] + len(header).to_bytes(4, "little") + header + good[8 + hlen:]
    with pytest.raises(ShardError, match="truncated"):
        decode_record(lying)
    bad_dtype = good.replace(b'"<i4"', b'"|O8"', 1)
    with pytest.raises(ShardError, match="dtype"):
        decode_record(bad_dtype)


# --- edges found by mutation testing (docs/mutation-testing.md) ----------------------------------

def test_window_edges_exact_fit_and_indices() -> None:
    # a timestep of exactly L tokens is allowed, alone in its window
    wins = cut_windows(np.array([100, 40, 60, 1]), 100, 0, lambda w: False, "ep")
    assert [(w.index, w.start, w.stop) for w in wins] == [(0, 0, 1), (1, 1, 3), (2, 3, 4)]
    # windows are numbered 0, 1, 2, ... and each number is asked about once, in order
    asked: list[int] = []
    wins = cut_windows(np.full(10, 10), 40, 20, lambda w: asked.append(w) or w == 1, "ep")
    assert asked == [w.index for w in wins] == list(range(len(wins)))
    # unprompted windows take all L tokens; the prompted one L - budget
    assert [(w.start, w.stop, w.wants_prompt) for w in wins] == [
        (0, 4, False), (4, 6, True), (6, 10, False)]


def test_prompt_budget_edges() -> None:
    # no budget: no window is drawn to carry a prompt, whatever the draw says
    wins = cut_windows(np.full(6, 10), 30, 0, lambda w: True, "ep")
    assert [(w.start, w.stop, w.wants_prompt) for w in wins] == [(0, 3, False), (3, 6, False)]
    # a budget of one token still leaves room for it
    wins = cut_windows(np.full(6, 10), 30, 1, lambda w: True, "ep")
    assert [(w.start, w.stop, w.wants_prompt) for w in wins] == [
        (0, 2, True), (2, 4, True), (4, 6, True)]
    # a first step of exactly L - budget tokens fits beside the prompt
    wins = cut_windows(np.array([70, 30]), 100, 30, lambda w: True, "ep")
    assert [(w.start, w.stop, w.wants_prompt) for w in wins] == [(0, 1, True), (1, 2, True)]


def test_concat_of_one_part_is_that_part() -> None:
    ep = make_episode([5, 7], patches_per_step=2)
    assert concat_tokenized([ep]) is ep


def test_assemble_output_dtypes_and_flags() -> None:
    ep = make_episode([20] * 4, patches_per_step=4, seed=3)
    prompt = make_episode([20] * 2, patches_per_step=4, seed=4)
    for p in (None, prompt):
        seq = assemble(ep, p, 128)
        assert {k: v.dtype for k, v in seq.as_dict().items()} == {
            "tokens": np.int32, "modality": np.uint8, "loss_mask": np.uint8,
            "local_position": np.int16, "is_prompt": np.uint8, "patches": np.uint8,
            "patch_position": np.int16}
        n = 0 if p is None else 40
        assert seq.is_prompt.tolist() == [1] * n + [0] * (128 - n)


def test_assemble_errors_name_where_and_why() -> None:
    ep = make_episode([20] * 10)
    with pytest.raises(TokenizeError) as e:
        assemble(ep, None, 100)
    assert str(e.value) == "sequence: 200 tokens do not fit in L=100"
    with pytest.raises(TokenizeError) as e:
        assemble(ep, None, 100, where="Pong/1/ep7 window 3")
    assert str(e.value) == "Pong/1/ep7 window 3: 200 tokens do not fit in L=100"


@pytest.mark.parametrize("case", ["patches", "slot_tokens"])
def test_assemble_refuses_image_slots_that_do_not_match_the_patches(case: str) -> None:
    ep = make_episode([20] * 2, patches_per_step=4, seed=5)
    if case == "patches":  # 8 slots (modality and tokens agree) but 7 patches
        ep.patches, ep.patch_position = ep.patches[:7], ep.patch_position[:7]
        why = "8 image-patch slots but 7 patches"
    else:  # 8 image slots and 8 patches, but one slot's token is not the patch slot
        ep.tokens = ep.tokens.copy()
        ep.tokens[0] = 5
        why = "7 tokens hold the patch slot id -1 but 8 have the image modality"
    with pytest.raises(TokenizeError) as e:
        assemble(ep, None, 64, where="w")
    assert str(e.value) == f"w: {why}"


def test_vision_language_pack_is_one_pseudo_step() -> None:
    recs = [_caption_record(10, 36, i) for i in range(3)]  # 46 tokens each
    for length, n, patches, cropped in [(138, 138, 108, False), (200, 138, 108, False),
                                        (100, 100, 72, True)]:
        packed, was_cropped = pack_vl(recs, length)
        assert was_cropped is cropped  # exactly L tokens is not cropped
        assert packed.num_tokens == n and packed.patches.shape[0] == patches
        assert packed.step_offsets.tolist() == [0, n]
        assert packed.patch_offsets.tolist() == [0, patches]
        packed.validate()

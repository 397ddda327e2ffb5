"""Image tokenization, exact values: the cases the PIL comparisons (one grey level of slack) and
random inputs cannot see, found by mutation testing (docs/mutation-testing.md).

Each expected value is a literal, PIL's own output, or the documented formula restated in exact
integer arithmetic; none is recomputed by the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from trajcorpus.errors import TokenizeError
from trajcorpus.tokenizers import patch_grid, patchify, resize_images, to_channels, unpatchify
from trajcorpus.tokenizers.images import (
    _bands,
    _filter_weights,
    _fixed_weights,
    resample_method,
    resize_patchify,
)

rng = np.random.default_rng(2212)


def pil_nearest(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.NEAREST))


# --- channels ---------------------------------------------------------------------------------

def test_luma_on_its_rounding_boundaries_equals_pil():
    """Pixels whose luma sits so close to a rounding boundary that one unit more of any weight
    (R, G or B, of 65536) or of the 0x8000 rounding bias moves it to the next level."""
    rgb = np.array([[[[180, 62, 99], [126, 201, 174], [125, 224, 181], [162, 120, 23]]]],
                   dtype=np.uint8)
    y = to_channels(rgb, 1)
    assert y.dtype == np.uint8 and y.shape == (1, 1, 4, 1)
    assert y[0, 0, :, 0].tolist() == [101, 175, 189, 121]
    assert (y[0, ..., 0] == np.asarray(Image.fromarray(rgb[0]).convert("L"))).all()


def test_alpha_composite_rounds_half_up_for_every_colour_and_alpha():
    """round(c * a / 255 + 255 - a), half up, exactly: all 65536 (c, a) pairs."""
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    x = np.stack([c, a], axis=-1).astype(np.uint8)[None]  # gray + alpha, [1, 256, 256, 2]
    y = to_channels(x)
    assert y.dtype == np.uint8 and y.shape == (1, 256, 256, 1)
    exact = (2 * (c * a + 255 * (255 - a)) + 255) // 510  # floor(n / 255 + 1/2)
    assert (y[0, ..., 0] == exact).all()
    assert y[0, 127, 1, 0] == 254  # 254.498...: rounds down


def test_forced_channel_count_is_compared_with_the_channel_axis():
    """Sides equal to the requested count (H = 3 or W = 3, H = 1) must not fool the check."""
    gray = rng.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    y = to_channels(gray, 3)
    assert y.shape == (2, 3, 3, 3) and (y == gray[..., None]).all()
    assert to_channels(gray, 1).shape == (2, 3, 3, 1)
    assert (to_channels(gray, 1)[..., 0] == gray).all()
    rgb = np.array([[[[10, 200, 30]]]], dtype=np.uint8)  # [1, 1, 1, 3]
    assert to_channels(rgb, 1).tolist() == [[[[np.asarray(Image.fromarray(rgb[0]).convert("L"))
                                                [0, 0]]]]]


def test_channel_error_messages():
    with pytest.raises(TokenizeError) as e:
        to_channels(np.zeros((1, 4, 4), np.float32))
    assert str(e.value) == "field 'image': images must be uint8, got float32"
    with pytest.raises(TokenizeError) as e:
        to_channels(np.zeros((1, 4, 4, 5), np.uint8), field="cam")
    assert str(e.value) == ("field 'cam': images must be [T, H, W] or [T, H, W, C] with C in 1..4,"
                            " got shape (1, 4, 4, 5)")
    with pytest.raises(TokenizeError) as e:
        to_channels(np.zeros((1, 4, 4, 3), np.uint8), 2, field="cam")
    assert str(e.value) == "field 'cam': channels must be 1 or 3, got 2"


# --- resizing ---------------------------------------------------------------------------------

def test_box_includes_an_input_exactly_half_a_support_to_the_right():
    """3 -> 2 box: output 0 covers inputs 0 and 1 (input 1's centre sits exactly on its edge,
    which PIL's box counts); output 1 only input 2."""
    x = np.array([[[0, 100, 200]]], dtype=np.uint8)
    y = resize_images(x, (1, 2), "box")
    assert y.tolist() == [[[50, 200]]]
    assert (y[0] == np.asarray(Image.fromarray(x[0]).resize((2, 1), Image.BOX))).all()


def test_black_stays_black_through_a_filtered_resize():
    x = np.zeros((2, 50, 30, 3), np.uint8)
    for method in ("bilinear", "box"):
        assert (resize_images(x, (64, 96), method) == 0).all()
        assert (resize_images(x, (16, 16), method) == 0).all()


@pytest.mark.parametrize("t", [1, 3])
def test_nearest_small_and_single_frame_resizes_equal_pil(t):
    """10 -> 9 keeps a few short runs of rows (copied as blocks); one frame is one block."""
    x = rng.integers(0, 256, (t, 10, 10, 3), dtype=np.uint8)
    y = resize_images(x, (9, 9), "nearest")
    assert y.shape == (t, 9, 9, 3)
    for i in range(t):
        assert (y[i] == pil_nearest(x[i], (9, 9))).all()
        assert (y[i] == x[i][[0, 1, 2, 3, 5, 6, 7, 8, 9]][:, [0, 1, 2, 3, 5, 6, 7, 8, 9]]).all()


def test_nearest_changes_only_the_sides_that_differ():
    """84x80 -> 80x80: only the height changes (and equals the width); a width equal to C."""
    x = rng.integers(0, 256, (2, 84, 80, 1), dtype=np.uint8)
    y = resize_images(x, (80, 80), "nearest")
    assert y.shape == (2, 80, 80, 1) and (y[1, ..., 0] == pil_nearest(x[1, ..., 0], (80, 80))).all()
    rgb = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    y = resize_images(rgb, (3, 3), "nearest")
    assert y.shape == (1, 3, 3, 3) and (y[0] == pil_nearest(rgb[0], (3, 3))).all()


def test_an_empty_stack_resizes_to_an_empty_stack():
    x = np.zeros((0, 84, 84, 1), np.uint8)
    for method in ("nearest", "bilinear"):
        assert resize_images(x, (80, 80), method).shape == (0, 80, 80, 1)


def test_auto_method_at_its_boundaries():
    assert resample_method((10, 10), (9, 9)) == "nearest"  # out/in exactly 0.9
    assert resample_method((20, 84), (18, 80)) == "nearest"
    assert resample_method((84, 84), (96, 96)) == "bilinear"  # upscaling by less than 2
    assert resample_method((84, 84), (84, 100)) == "bilinear"


def test_resize_sizes_and_error_messages():
    x = np.full((1, 20, 30), 77, np.uint8)
    assert resize_images(x, (1, 1)).tolist() == [[[77]]]
    assert resize_images(x, (1, 30)).shape == (1, 1, 30)
    with pytest.raises(TokenizeError) as e:
        resize_images(x, (4, 0))
    assert str(e.value) == "resize: target size must be positive, got (4, 0)"
    with pytest.raises(TokenizeError) as e:
        resize_images(x.astype(np.int16), (4, 4))
    assert str(e.value) == "resize: expected uint8 [T, H, W(, C)], got int16 (1, 20, 30)"
    with pytest.raises(TokenizeError) as e:
        resample_method((1, 1), (2, 2), "lanczos")
    assert str(e.value) == ("resize: unknown method 'lanczos' (known: ('auto', 'nearest', "
                            "'bilinear', 'box'))")


def test_resize_patchify_uses_the_method_it_is_given():
    """32x16 -> 16x16 with "box" averages row pairs, half up ("auto" would pick bilinear)."""
    x = rng.integers(0, 256, (1, 32, 16), dtype=np.uint8)
    p = resize_patchify(x, (16, 16), "box")
    assert p.shape == (1, 1, 16, 16, 1)
    assert (p[0, 0, ..., 0] == (x[0, 0::2].astype(int) + x[0, 1::2] + 1) // 2).all()


def test_band_windows_are_the_exact_span_of_their_rows_weights():
    """A banded GEMM block reads inputs [lo, hi): exactly from its rows' first nonzero weight to
    past their last one (a narrower window drops weights, a wider one wastes the banding)."""
    for n_in, n_out in [(640, 192), (480, 192), (84, 224), (300, 100), (96, 64), (1000, 16),
                        (33, 65), (7, 3)]:
        for method in ("bilinear", "box"):
            nz = _fixed_weights(n_in, n_out, method) != 0
            blocks = _bands(n_in, n_out, method)
            if len(blocks) == 1:
                assert blocks == ((0, n_out, 0, n_in),)
                continue
            assert [(a, b) for a, b, _, _ in blocks] == [(a, min(a + 32, n_out))
                                                          for a in range(0, n_out, 32)]
            for a, b, lo, hi in blocks:
                cols = np.flatnonzero(nz[a:b].any(axis=0))
                assert (lo, hi) == (cols[0], cols[-1] + 1)
    assert _bands(640, 192, "bilinear")[:2] == ((0, 32, 0, 108), (32, 64, 105, 215))
    assert len(_bands(640, 192, "bilinear")) == 6 and len(_bands(84, 224, "box")) == 7
    assert len(_bands(1000, 16, "bilinear")) == 1  # windows over half the input: one block
    assert len(_bands(96, 64, "bilinear")) == 1  # windows of 49 inputs each: over half of 96
    assert _bands(96, 64, "box") == ((0, 32, 0, 48), (32, 64, 48, 96))  # exactly half: banded
    # the cached weights are shared by every later call: nobody may write into them
    assert not _filter_weights(84, 80, "box").flags.writeable
    assert not _fixed_weights(84, 80, "box").flags.writeable


# --- patches ----------------------------------------------------------------------------------

def test_patch_grid_counts_whole_patches_only():
    assert not patch_grid(32, 48).flags.writeable  # one cached array shared by every caller
    assert patch_grid(40, 32).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert patch_grid(32, 40).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


@pytest.mark.parametrize("shape", [(16, 0), (0, 16), (40, 32)])
def test_patchify_side_error_message(shape):
    with pytest.raises(TokenizeError) as e:
        patchify(np.zeros(shape, np.uint8))
    assert str(e.value) == (f"patchify: image sides must be positive multiples of 16, got "
                            f"{shape[0]}x{shape[1]} (resize first)")


def test_patchify_refuses_other_dtypes_and_ranks():
    with pytest.raises(TokenizeError) as e:
        patchify(np.zeros((16, 16), np.float32))
    assert str(e.value) == "patchify: expected a uint8 HxW or HxWxC image, got float32 (16, 16)"
    with pytest.raises(TokenizeError) as e:
        patchify(np.zeros((1, 16, 16, 3), np.uint8))
    assert str(e.value) == ("patchify: expected a uint8 HxW or HxWxC image, got uint8 "
                            "(1, 16, 16, 3)")


def test_unpatchify_keeps_the_dtype_and_checks_both_shapes():
    patches = np.arange(2 * 16 * 16, dtype=np.uint8).reshape(2, 16, 16, 1)
    img = unpatchify(patches, np.array([[0, 1], [0, 0]], np.int16))
    assert img.dtype == np.uint8 and img.shape == (16, 32, 1)
    assert (img[:, :16, 0] == patches[1, ..., 0]).all() and (img[:, 16:, 0] == patches[0, ..., 0]).all()
    bad = [(np.zeros((2, 8, 8, 1), np.uint8), np.zeros((2, 2), np.int16)),  # wrong patch size
           (np.zeros((2, 16, 16, 1), np.uint8), np.zeros((3, 2), np.int16)),  # wrong count
           (np.zeros((16, 16, 1), np.uint8), np.zeros((1, 2), np.int16))]  # wrong rank
    for p, pos in bad:
        with pytest.raises(TokenizeError) as e:
            unpatchify(p, pos)
        assert str(e.value) == ("unpatchify: expected [P, 16, 16, C] patches and [P, 2] "
                                f"positions, got {p.shape} and {pos.shape}")
    with pytest.raises(TokenizeError) as e:
        unpatchify(np.zeros((0, 16, 16, 3), np.uint8), np.zeros((0, 2), np.int16))
    assert str(e.value) == "unpatchify: no patches"

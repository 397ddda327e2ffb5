"""Image tokenization: channel rule, resampling (checked against PIL), patches, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from trajcorpus.errors import TokenizeError
from trajcorpus.tokenizers import (
    PATCH,
    default_image_size,
    normalize_patches,
    patch_grid,
    patchify,
    patchify_batch,
    resize_images,
    to_channels,
    unpatchify,
)
from trajcorpus.tokenizers.images import (
    _fixed_weights,
    resample_method,
    resize_patchify,
    resize_weights,
)

PIL_FILTERS = {"bilinear": Image.BILINEAR, "box": Image.BOX, "nearest": Image.NEAREST}
rng = np.random.default_rng(1234)


def pil_resize(frame: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    img = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
    out = np.asarray(img.resize((size[1], size[0]), PIL_FILTERS[method]))
    return out[..., None] if out.ndim == 2 else out


# --- channels ---------------------------------------------------------------------------------

def test_grayscale_stacks_get_one_channel():
    x = rng.integers(0, 256, (3, 16, 32), dtype=np.uint8)
    y = to_channels(x)
    assert y.shape == (3, 16, 32, 1) and (y[..., 0] == x).all()
    assert to_channels(x[..., None]).shape == (3, 16, 32, 1)


def test_rgb_stays_rgb():
    x = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert to_channels(x) is x


def test_rgba_is_composited_over_white_like_pil():
    x = rng.integers(0, 256, (4, 10, 12, 4), dtype=np.uint8)
    x[0, 0, 0, 3], x[0, 0, 1, 3] = 0, 255  # fully transparent and fully opaque pixels
    y = to_channels(x)
    assert y.shape == (4, 10, 12, 3)
    assert (y[0, 0, 0] == 255).all() and (y[0, 0, 1] == x[0, 0, 1, :3]).all()
    for t in range(4):
        white = Image.new("RGBA", (12, 10), (255, 255, 255, 255))
        ref = np.asarray(Image.alpha_composite(white, Image.fromarray(x[t], "RGBA")).convert("RGB"))
        assert np.abs(ref.astype(int) - y[t]).max() <= 1


def test_gray_alpha_is_composited_to_gray():
    x = np.array([[[[100, 0], [100, 255], [0, 128]]]], dtype=np.uint8)  # [1, 1, 3, 2]
    assert to_channels(x)[0, 0, :, 0].tolist() == [255, 100, 127]


def test_forced_channels_match_pil_conversions():
    rgb = rng.integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    gray = to_channels(rgb, 1)
    for t in range(2):
        assert (gray[t, ..., 0] == np.asarray(Image.fromarray(rgb[t]).convert("L"))).all()
    g = rng.integers(0, 256, (2, 5, 5), dtype=np.uint8)
    assert (to_channels(g, 3) == g[..., None]).all() and to_channels(g, 3).shape[-1] == 3


def test_channel_errors():
    with pytest.raises(TokenizeError, match="uint8"):
        to_channels(np.zeros((1, 4, 4), np.float32), field="cam")
    with pytest.raises(TokenizeError, match="'cam'"):
        to_channels(np.zeros((1, 4, 4, 5), np.uint8), field="cam")


# --- resizing ---------------------------------------------------------------------------------

def test_default_size_rule():
    assert default_image_size(84, 84) == (80, 80)
    assert default_image_size(480, 640) == (480, 640)
    assert default_image_size(100, 130) == (96, 128)
    assert default_image_size(10, 300) == (16, 288)


def test_auto_method_choice():
    assert resample_method((84, 84), (80, 80)) == "nearest"
    assert resample_method((84, 84), (84, 84)) == "identity"
    assert resample_method((84, 84), (84, 80)) == "nearest"
    assert resample_method((480, 640), (192, 192)) == "bilinear"
    assert resample_method((84, 84), (224, 224)) == "bilinear"
    assert resample_method((84, 84), (80, 80), "box") == "box"
    with pytest.raises(TokenizeError, match="unknown method"):
        resample_method((1, 1), (2, 2), "lanczos")


def test_identity_when_size_matches():
    x = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    for m in ("auto", "nearest", "bilinear", "box"):
        assert resize_images(x, (32, 48), m) is x


@pytest.mark.parametrize("method", ["nearest", "bilinear", "box"])
@pytest.mark.parametrize("src, dst", [((84, 84), (80, 80)), ((480, 640), (192, 192)),
                                      ((50, 30), (64, 96)), ((97, 33), (16, 48))])
def test_constant_images_stay_constant(method, src, dst):
    x = np.full((2, *src, 3), 0, np.uint8)
    x[0], x[1] = 7, 255
    y = resize_images(x, dst, method)
    assert y.shape == (2, *dst, 3)
    assert (y[0] == 7).all() and (y[1] == 255).all()


def test_weights_are_normalised_rows():
    for n_in, n_out in [(84, 80), (640, 192), (30, 64), (7, 7)]:
        for m in ("bilinear", "box"):
            w = resize_weights(n_in, n_out, m)
            assert w.shape == (n_out, n_in) and (w >= 0).all()
            assert np.allclose(w.sum(axis=1), 1.0, atol=1e-6)


def pil_weight_gap(n_in: int, n_out: int, method: str) -> float:
    """255 * the largest row sum of |our 2**16 weight - PIL's 2**22 weight| for one axis: how far
    one pass of ours can be from PIL's before rounding. The bounds below need it under 1."""
    ours = _fixed_weights(n_in, n_out, method).astype(np.float64) / 2 ** 16
    pils = np.floor(0.5 + resize_weights(n_in, n_out, method) * 2 ** 22) / 2 ** 22
    return 255 * float(np.abs(ours - pils).sum(axis=1).max())


@settings(max_examples=40, deadline=None)
@example(105, 110, 110, 105, 1, "bilinear", 52)  # a pixel 2 levels from PIL (issue #22)
@given(st.integers(4, 120), st.integers(4, 120), st.integers(4, 120), st.integers(4, 120),
       st.sampled_from([1, 3]), st.sampled_from(["bilinear", "box"]), st.integers(0, 2 ** 32 - 1))
def test_filtered_resize_agrees_with_pil(h, w, oh, ow, c, method, seed):
    """At most one grey level from PIL per resized axis (so 2 when both sides change).

    Both round to uint8 after each pass but use different fixed-point weights (ours 2**16, PIL's
    2**22). One pass: the two exact sums are less than 1 apart (``pil_weight_gap``), so their
    roundings differ by at most 1. Second pass: its inputs already differ by up to 1, so the
    exact sums are up to 1 + gap apart and the roundings up to 2 (docs/tokenization.md).
    """
    assert pil_weight_gap(w, ow, method) < 1 and pil_weight_gap(h, oh, method) < 1
    x = np.random.default_rng(seed).integers(0, 256, (2, h, w, c), dtype=np.uint8)
    y = resize_images(x, (oh, ow), method)
    for t in range(2):
        gap = np.abs(y[t].astype(int) - pil_resize(x[t], (oh, ow), method)).max()
        assert gap <= (h != oh) + (w != ow)


def test_two_passes_can_be_two_levels_from_pil():
    """Why the bound is 2, not 1: a width pass 1 level from PIL's feeds the height pass."""
    x = np.random.default_rng(52).integers(0, 256, (1, 105, 110, 1), dtype=np.uint8)
    gap = np.abs(resize_images(x, (110, 105), "bilinear")[0].astype(int)
                 - pil_resize(x[0], (110, 105), "bilinear"))
    assert gap.max() == 2
    r, c = np.argwhere(gap[..., 0] == 2)[0]
    width_only = np.abs(resize_images(x, (105, 105), "bilinear")[0].astype(int)
                        - pil_resize(x[0], (105, 105), "bilinear"))
    rows = resize_weights(105, 110, "bilinear")[r].nonzero()[0]  # the rows output row r mixes
    assert width_only.max() == 1 and width_only[rows, c].max() == 1


def test_nearest_84_to_80_equals_pil_nearest():
    x = rng.integers(0, 256, (5, 84, 84, 1), dtype=np.uint8)
    y = resize_images(x, (80, 80), "nearest")
    for t in range(5):
        assert (y[t] == pil_resize(x[t], (80, 80), "nearest")).all()
    rgb = rng.integers(0, 256, (3, 84, 84, 3), dtype=np.uint8)
    assert (resize_images(rgb, (80, 80))[1] == pil_resize(rgb[1], (80, 80), "nearest")).all()


def test_nearest_follows_its_sampling_formula_for_any_ratio():
    for (h, w), (oh, ow) in [((84, 84), (80, 64)), ((30, 50), (64, 100)), ((200, 33), (17, 90))]:
        x = rng.integers(0, 256, (2, h, w), dtype=np.uint8)
        r = np.minimum(np.floor((np.arange(oh) + 0.5) * h / oh).astype(int), h - 1)
        c = np.minimum(np.floor((np.arange(ow) + 0.5) * w / ow).astype(int), w - 1)
        assert (resize_images(x, (oh, ow), "nearest") == x[:, r][:, :, c]).all()


def test_84_to_80_keeps_every_two_pixel_feature():
    """The documented reason "auto" may use nearest for 84 -> 80: nothing 2 px wide vanishes."""
    for r in range(83):
        x = np.zeros((1, 84, 84), np.uint8)
        x[0, r:r + 2, :] = 255  # a 2-pixel horizontal bar
        x[0, :, r:r + 2] = 200  # and a 2-pixel vertical bar
        y = resize_images(x, (80, 80))
        assert (y == 255).any(axis=2).any() and (y == 200).any()


def test_resize_keeps_ndim_and_validates():
    x = rng.integers(0, 256, (2, 40, 40), dtype=np.uint8)
    assert resize_images(x, (32, 32)).shape == (2, 32, 32)
    with pytest.raises(TokenizeError):
        resize_images(x.astype(np.float32), (32, 32))
    with pytest.raises(TokenizeError, match="positive"):
        resize_images(x, (0, 32))


def test_filtered_resize_is_bit_identical_however_frames_are_batched():
    """Exact fixed-point GEMMs: a frame's pixels never depend on its batch (reproducibility)."""
    x = rng.integers(0, 256, (300, 84, 84, 1), dtype=np.uint8)  # more frames than one chunk
    for method in ("bilinear", "box"):
        y = resize_images(x, (64, 48), method)
        single = np.concatenate([resize_images(x[t:t + 1], (64, 48), method) for t in range(300)])
        assert (y == single).all()
        assert (resize_images(x[5:77], (64, 48), method) == y[5:77]).all()


def test_fixed_point_weights_sum_to_one_exactly():
    for n_in, n_out in [(84, 80), (640, 192), (30, 64), (3, 7), (1000, 16)]:
        for method in ("bilinear", "box"):
            w = _fixed_weights(n_in, n_out, method).astype(np.float64)
            assert (w == np.rint(w)).all() and (w.sum(axis=1) == 2 ** 16).all()
            slack = (resize_weights(n_in, n_out, method) > 0).sum(axis=1).max() * 2 ** -16
            assert np.abs(w / 2 ** 16 - resize_weights(n_in, n_out, method)).max() <= slack


# --- patches ----------------------------------------------------------------------------------

def test_patchify_raster_order_and_positions():
    img = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)
    patches, pos = patchify(img)
    assert patches.dtype == np.uint8 and patches.shape == (6, 16, 16, 3)
    assert pos.dtype == np.int16 and pos.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0],
                                                      [2, 1]]
    for p, (r, c) in zip(patches, pos, strict=True):
        assert (p == img[16 * r:16 * r + 16, 16 * c:16 * c + 16]).all()


def test_patchify_grayscale_hw_gives_one_channel():
    img = rng.integers(0, 256, (32, 16), dtype=np.uint8)
    patches, pos = patchify(img)
    assert patches.shape == (2, 16, 16, 1) and (patches[1, ..., 0] == img[16:]).all()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3, 4]), st.integers(0, 9999))
def test_unpatchify_inverts_patchify(gh, gw, c, seed):
    img = np.random.default_rng(seed).integers(0, 256, (gh * 16, gw * 16, c), dtype=np.uint8)
    patches, pos = patchify(img)
    assert (unpatchify(patches, pos) == img).all()
    # order-independent: positions, not slot order, place the patches
    perm = np.random.default_rng(seed).permutation(len(pos))
    assert (unpatchify(patches[perm], pos[perm]) == img).all()


def test_patchify_batch_equals_per_frame_patchify():
    x = rng.integers(0, 256, (4, 64, 80, 3), dtype=np.uint8)
    b = patchify_batch(x)
    assert b.shape == (4, 20, 16, 16, 3)
    for t in range(4):
        assert (b[t] == patchify(x[t])[0]).all()
    assert (patch_grid(64, 80) == patchify(x[0])[1]).all()


def test_resize_patchify_is_resize_then_patchify():
    for shape, size in [((6, 84, 84, 1), (80, 80)), ((2, 84, 84, 3), (80, 80)),
                        ((2, 100, 60, 3), (64, 48)), ((3, 64, 64), (64, 64))]:
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        x4 = x if x.ndim == 4 else x[..., None]
        assert (resize_patchify(x, size) == patchify_batch(resize_images(x4, size))).all()


@pytest.mark.parametrize("shape", [(40, 32), (32, 8, 3), (0, 16)])
def test_patchify_needs_multiples_of_16(shape):
    with pytest.raises(TokenizeError, match="multiples of 16"):
        patchify(np.zeros(shape, np.uint8))


def test_normalize_patches_is_gatos_formula():
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    y = normalize_patches(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    ref = (x.astype(np.float64) / 255.0 * 2.0 - 1.0) / np.sqrt(PATCH)
    assert np.abs(y - ref).max() < 1e-7
    assert y.min() == -0.25 and y.max() == 0.25
    assert normalize_patches(np.full((1, 16, 16, 3), 255, np.uint8)).min() == 0.25

"""Catalog tokenize settings reach the tokenizer: resampling method and forced channels."""

from __future__ import annotations

import numpy as np

from trajcorpus.schemas.catalog import TokenizeSettings
from trajcorpus.schemas.episode import Episode
from trajcorpus.tokenizers import EpisodeTokenizer


def _atari(T: int = 3) -> Episode:
    frames = np.zeros((T, 84, 84), np.uint8)
    frames[:, 20, :] = 255  # a 1-px horizontal line
    frames[:, :, 40] = 255
    return Episode(
        dataset="d", task="t", agent="a", episode_id="e", order=(0,),
        observations={"observation": frames}, observation_kinds={"observation": "image"},
        actions=np.zeros(T, np.int32), action_kind="discrete", rewards=np.zeros(T, np.float32),
        is_terminal=True, is_truncated=False, return_=0.0, source={"uri": "x"},
    )


def test_resample_setting_changes_the_pixels():
    ep = _atari()
    auto = EpisodeTokenizer(TokenizeSettings(image_size=(80, 80))).tokenize(ep)
    filt = EpisodeTokenizer(TokenizeSettings(image_size=(80, 80), resample="bilinear")).tokenize(ep)
    assert auto.patches.shape == filt.patches.shape == (3 * 25, 16, 16, 1)
    assert not np.array_equal(auto.patches, filt.patches)
    # auto keeps whole rows/columns: pixels stay 0 or 255; bilinear averages (grey levels)
    assert set(np.unique(auto.patches)) <= {0, 255}
    assert len(np.unique(filt.patches)) > 2


def test_image_channels_setting_forces_rgb():
    ep = _atari(1)
    tok = EpisodeTokenizer(TokenizeSettings(image_size=(80, 80), image_channels=3)).tokenize(ep)
    assert tok.patches.shape[-1] == 3
    np.testing.assert_array_equal(tok.patches[..., 0], tok.patches[..., 2])

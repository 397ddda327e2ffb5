"""Whole-episode tokenization: Episode -> TokenizedEpisode (SPEC sections 4 and 6), and back.

Per timestep: ``[text][image patch slots][tensor tokens]['|'][action tokens]``, observation names
in SPEC 2.1 order (text, images, tensors; lexicographic within each, nested keys flattened with
'/'). Decisions (see docs/tokenization.md):

- Per-episode text (a length-1 text array: an instruction) is emitted once, at timestep 0.
- Image-caption records (``action_kind == "none"``) are ``[image patches][tensors][caption]`` with
  no separator and no actions: the caption is the target, conditioned on the image, as in Gato's
  vision-language training. This is the one place text does not come first.
- Local positions count every observation token of a timestep (text, patches, tensors together)
  from 0; separator and actions get -1. Loss mask is 1 for text and actions.

Everything is vectorised over the episode: each observation field is encoded as one
``[T, width]`` block, blocks are written side by side into a ``[T, L]`` matrix, and text (whose
length varies per step) is scattered in with computed indices. The only Python loops are over
fields.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import TokenizeError
from ..schemas.catalog import TokenizeSettings
from ..schemas.episode import Episode, ordered_observation_names
from .continuous import decode_continuous, encode_continuous
from .discrete import decode_discrete, encode_discrete
from .images import (
    default_image_size,
    patch_grid,
    resample_method,
    resize_patchify,
    to_channels,
)
from .scheme import (
    CONTINUOUS_OFFSET,
    DISCRETE_LIMIT,
    NO_POSITION,
    PATCH,
    PATCH_SLOT,
    SEPARATOR,
    Modality,
)
from .text import TextTokenizer
from .tokenized import TokenizedEpisode

__all__ = ["EpisodeTokenizer", "decode_actions", "decode_mixed_actions", "observation_tokens",
           "action_tokens"]

_MAX_LOCAL_POSITION = np.iinfo(np.int16).max


@dataclasses.dataclass
class _Block:
    """A fixed-width per-step block of the body: ``tokens`` is [T, width] int32 or a fill id."""

    width: int
    modality: Modality
    tokens: np.ndarray | int


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.shape[0] + 1, dtype=np.int64)
    np.cumsum(x, out=out[1:])
    return out


def _ragged_index(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs of ``lengths[t]`` items starting at ``starts[t]``: the flat destination index of
    every item and its index within its run (both int64, in run order)."""
    total = int(lengths.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(_exclusive_cumsum(lengths)[:-1], lengths)
    return np.repeat(starts, lengths) + within, within


class EpisodeTokenizer:
    """Tokenizes whole episodes under one dataset's :class:`TokenizeSettings`.

    ``text`` is needed only when episodes carry text observations. ``resample`` picks the image
    resampling method (see :func:`trajcorpus.tokenizers.images.resize_images`; "auto" by default)
    and ``channels`` forces 1 or 3 image channels (default: the channel rule per episode). When not
    given, they come from the settings' ``resample`` and ``image_channels``. Picklable, so a Beam
    DoFn can hold one.
    """

    def __init__(self, settings: TokenizeSettings | None = None,
                 text: TextTokenizer | None = None, *, resample: str | None = None,
                 channels: int | None = None):
        self.settings = settings if settings is not None else TokenizeSettings()
        self.text = text
        # keyword > the catalog's TokenizeSettings
        if resample is None:
            resample = self.settings.resample
        if channels is None:
            channels = self.settings.image_channels
        resample_method((1, 1), (2, 2), resample)  # validates the name
        if channels not in (None, 1, 3):
            raise TokenizeError("tokenizer", f"channels must be 1, 3 or None, got {channels}")
        self.resample = resample
        self.channels = channels

    # --- settings ------------------------------------------------------------------------------

    def mu_law_for(self, field: str) -> bool:
        """Whether ``field`` ("actions" or an observation name) is mu-law companded."""
        if not self.settings.mu_law:
            return False
        name = field.removeprefix("observations/")
        for e in self.settings.mu_law_exempt:
            e = e.removeprefix("observations/")
            if name == e or name.startswith(e + "/"):
                return False
        return True

    def image_size_for(self, height: int, width: int) -> tuple[int, int]:
        """The configured size, or the documented rule (sides rounded down to multiples of 16)."""
        if self.settings.image_size is not None:
            return tuple(self.settings.image_size)  # type: ignore[return-value]
        return default_image_size(height, width)

    def _wants_text(self, name: str) -> bool:
        wanted = self.settings.text_fields
        return wanted is None or name in wanted

    # --- encoding ------------------------------------------------------------------------------

    def tokenize(self, episode: Episode) -> TokenizedEpisode:
        """One episode -> its token stream with parallel arrays (SPEC section 6)."""
        ep = episode
        t_steps = ep.length
        kinds = ep.observation_kinds
        names = ordered_observation_names(kinds)
        where = f"episode {ep.episode_id!r}"
        caption = ep.action_kind == "none"
        for n in names:
            x = ep.observations[n]
            if kinds[n] != "text" and (not isinstance(x, np.ndarray) or x.shape[:1] != (t_steps,)):
                raise TokenizeError(f"{where} field 'observations/{n}'",
                                    f"expected {t_steps} steps on axis 0, got shape "
                                    f"{np.shape(x)}")
        text_names = [n for n in names if kinds[n] == "text" and self._wants_text(n)]
        image_names = [n for n in names if kinds[n] == "image"]
        tensor_names = [n for n in names if kinds[n] in ("continuous", "discrete")]
        unknown = [n for n in names if kinds[n] not in ("text", "image", "continuous", "discrete")]
        if unknown:
            raise TokenizeError(f"{where} field 'observations/{unknown[0]}'",
                                f"unknown observation kind {kinds[unknown[0]]!r}")

        blocks: list[_Block] = []
        patches, positions = self._images(ep, image_names, blocks, where)
        for n in tensor_names:
            blocks.append(self._tensor(ep, n, where))
        n_obs = sum(b.width for b in blocks)
        if not caption:
            blocks.append(_Block(1, Modality.SEPARATOR, SEPARATOR))
            blocks.append(self._actions(ep, where))
        body, mod_row = self._body(blocks, t_steps)
        text_ids, text_lens = self._text(ep, text_names, t_steps, where)

        width = body.shape[1]
        pos_row = np.full(width, NO_POSITION, dtype=np.int16)
        pos_row[:n_obs] = np.arange(n_obs, dtype=np.int16)
        loss_row = ((mod_row == Modality.TEXT) | (mod_row == Modality.ACTION)).astype(np.uint8)
        if int(text_lens.max(initial=0)) + n_obs - 1 > _MAX_LOCAL_POSITION:
            raise TokenizeError(where, f"a timestep's observation has more than "
                                f"{_MAX_LOCAL_POSITION + 1} tokens (int16 local positions)")
        if text_ids.size == 0:
            tok = TokenizedEpisode(
                tokens=body.reshape(-1), modality=np.tile(mod_row, t_steps),
                loss_mask=np.tile(loss_row, t_steps), local_position=np.tile(pos_row, t_steps),
                step_offsets=np.arange(t_steps + 1, dtype=np.int64) * width,
                patches=patches, patch_position=positions,
                patch_offsets=np.arange(t_steps + 1, dtype=np.int64) * (
                    patches.shape[0] // t_steps),
            )
        else:
            tok = self._with_text(body, mod_row, loss_row, pos_row, n_obs, text_ids, text_lens,
                                  caption, patches, positions)
        return tok

    def _images(self, ep: Episode, names: list[str], blocks: list[_Block],
                where: str) -> tuple[np.ndarray, np.ndarray]:
        t_steps = ep.length
        if self.channels is not None:
            channels = self.channels
        elif names:
            # after compositing alpha, gray(+alpha) -> 1 and RGB(A) -> 3; mixed fields -> RGB
            channels = max(3 if ep.observations[n].ndim == 4 and ep.observations[n].shape[-1] >= 3
                           else 1 for n in names)
        else:
            channels = 3
        parts, grids = [], []
        for n in names:
            field = f"observations/{n}"
            try:
                x = to_channels(ep.observations[n], channels, field=field)
                size = self.image_size_for(x.shape[1], x.shape[2])
                p = resize_patchify(x, size, self.resample)  # [T, P, 16, 16, C]
            except TokenizeError as e:
                raise TokenizeError(f"{where} field {field!r}", e.reason) from None
            parts.append(p)
            grids.append(patch_grid(*size))
            blocks.append(_Block(p.shape[1], Modality.IMAGE, PATCH_SLOT))
        if not parts:
            return (np.zeros((0, PATCH, PATCH, channels), dtype=np.uint8),
                    np.zeros((0, 2), dtype=np.int16))
        per_step = sum(p.shape[1] for p in parts)
        stacked = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        patches = stacked.reshape(t_steps * per_step, PATCH, PATCH, channels)
        positions = np.tile(np.concatenate(grids), (t_steps, 1))
        return patches, positions

    def _tensor(self, ep: Episode, name: str, where: str) -> _Block:
        x = ep.observations[name].reshape(ep.length, -1)
        field = f"observations/{name}"
        try:
            if ep.observation_kinds[name] == "continuous":
                return _Block(x.shape[1], Modality.CONTINUOUS,
                              encode_continuous(x, self.mu_law_for(name), field=field))
            return _Block(x.shape[1], Modality.DISCRETE, encode_discrete(x, field=field))
        except TokenizeError as e:
            raise TokenizeError(f"{where} {e.where}", e.reason) from None

    def _actions(self, ep: Episode, where: str) -> _Block:
        a = np.asarray(ep.actions)
        if a.ndim not in (1, 2) or a.shape[0] != ep.length:
            raise TokenizeError(f"{where} field 'actions'", f"expected [T] or [T, A] with "
                                f"T={ep.length}, got shape {a.shape}")
        a = a.reshape(ep.length, -1)
        try:
            if ep.action_kind == "discrete":
                tokens = encode_discrete(a, field="actions")
            elif ep.action_kind == "continuous":
                tokens = encode_continuous(a, self.mu_law_for("actions"), field="actions")
            elif ep.action_kind == "mixed":
                tokens = self._mixed_actions(a, ep.discrete_action_dims)
            else:
                raise TokenizeError("field 'action_kind'", f"unknown action kind "
                                    f"{ep.action_kind!r}")
        except TokenizeError as e:
            raise TokenizeError(f"{where} {e.where}", e.reason) from None
        return _Block(a.shape[1], Modality.ACTION, tokens)

    def _mixed_actions(self, a: np.ndarray, d: int) -> np.ndarray:
        """Leading ``d`` columns as discrete ids, the rest as continuous tokens (docs/tokenization.md
        "Mixed actions"); the continuous part follows the mu-law setting of ``actions``."""
        if not 0 < d < a.shape[1]:
            raise TokenizeError("field 'discrete_action_dims'", f"must be in [1, {a.shape[1]}) "
                                f"for mixed actions, got {d}")
        return np.concatenate([encode_discrete(a[:, :d], field="actions"),
                               encode_continuous(a[:, d:], self.mu_law_for("actions"),
                                                 field="actions")], axis=1)

    @staticmethod
    def _body(blocks: list[_Block], t_steps: int) -> tuple[np.ndarray, np.ndarray]:
        width = sum(b.width for b in blocks)
        body = np.empty((t_steps, width), dtype=np.int32)
        mod_row = np.empty(width, dtype=np.uint8)
        col = 0
        for b in blocks:
            body[:, col:col + b.width] = b.tokens
            mod_row[col:col + b.width] = b.modality
            col += b.width
        return body, mod_row

    def _text(self, ep: Episode, names: list[str], t_steps: int,
              where: str) -> tuple[np.ndarray, np.ndarray]:
        """All text ids of the episode in stream order, and the per-step counts [T]."""
        lens = np.zeros(t_steps, dtype=np.int64)
        if not names:
            return np.zeros(0, dtype=np.int32), lens
        if self.text is None:
            raise TokenizeError(f"{where} field 'observations/{names[0]}'",
                                "text observation but no text model was given "
                                "(TokenizeSettings.text_model)")
        fields = []
        for n in names:
            strings = ep.observations[n]
            if strings.ndim != 1 or strings.shape[0] not in (1, t_steps):
                raise TokenizeError(f"{where} field 'observations/{n}'", "text must be [1] (per "
                                    f"episode) or [{t_steps}] (per step), got {strings.shape}")
            strings = list(strings)
            for i, s in enumerate(strings):
                if not isinstance(s, str):
                    raise TokenizeError(f"{where} field 'observations/{n}'",
                                        f"entry {i} is {type(s).__name__}, not str")
            ids, counts = self.text.encode_flat(strings)
            if len(strings) == 1 and t_steps > 1:  # per-episode text: timestep 0 only
                counts = np.concatenate([counts, np.zeros(t_steps - 1, dtype=np.int64)])
            fields.append((ids, counts))
            lens += counts
        if len(fields) == 1:
            return fields[0][0], lens
        # several text fields: interleave them step by step, in field order
        out = np.empty(int(lens.sum()), dtype=np.int32)
        step_start = _exclusive_cumsum(lens)[:-1]
        prior = np.zeros(t_steps, dtype=np.int64)
        for ids, counts in fields:
            dest, _ = _ragged_index(step_start + prior, counts)
            out[dest] = ids
            prior += counts
        return out, lens

    @staticmethod
    def _with_text(body: np.ndarray, mod_row: np.ndarray, loss_row: np.ndarray,
                   pos_row: np.ndarray, n_obs: int, text_ids: np.ndarray, text_lens: np.ndarray,
                   caption: bool, patches: np.ndarray, positions: np.ndarray) -> TokenizedEpisode:
        t_steps, width = body.shape
        offsets = _exclusive_cumsum(text_lens + width)
        n = int(offsets[-1])
        tokens = np.empty(n, dtype=np.int32)
        modality = np.empty(n, dtype=np.uint8)
        loss = np.empty(n, dtype=np.uint8)
        local = np.empty(n, dtype=np.int16)
        # body: after the text (RL steps) or at the step start (caption records)
        body_start = offsets[:-1] + (0 if caption else text_lens)
        idx = (body_start[:, None] + np.arange(width, dtype=np.int64)).reshape(-1)
        tokens[idx] = body.reshape(-1)
        modality[idx] = np.tile(mod_row, t_steps)
        loss[idx] = np.tile(loss_row, t_steps)
        body_pos = np.tile(pos_row, (t_steps, 1))
        if not caption:
            body_pos[:, :n_obs] += text_lens[:, None].astype(np.int16)
        local[idx] = body_pos.reshape(-1)
        # text: first in the step (RL) or after the observation (caption = the target)
        text_start = offsets[:-1] + (width if caption else 0)
        tidx, within = _ragged_index(text_start, text_lens)
        tokens[tidx] = text_ids
        modality[tidx] = Modality.TEXT
        loss[tidx] = 1
        local[tidx] = within + (n_obs if caption else 0)
        per_step = patches.shape[0] // t_steps
        return TokenizedEpisode(tokens, modality, loss, local, offsets, patches, positions,
                                np.arange(t_steps + 1, dtype=np.int64) * per_step)

    # --- decoding ------------------------------------------------------------------------------

    def decode_actions(self, tokenized: TokenizedEpisode) -> np.ndarray:
        """Per-step actions [T, A] under this tokenizer's mu-law setting for "actions"."""
        return decode_actions(tokenized, mu_law=self.mu_law_for("actions"))

    def decode_mixed_actions(self, tokenized: TokenizedEpisode,
                             discrete_dims: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`decode_mixed_actions` under this tokenizer's mu-law setting for "actions"."""
        return decode_mixed_actions(tokenized, discrete_dims, mu_law=self.mu_law_for("actions"))


# --- decoding (module level: trainers need no settings object) ---------------------------------

def _per_step(tokenized: TokenizedEpisode, mask: np.ndarray) -> np.ndarray:
    c = _exclusive_cumsum(mask.astype(np.int64))
    return c[tokenized.step_offsets[1:]] - c[tokenized.step_offsets[:-1]]


def action_tokens(tokenized: TokenizedEpisode) -> np.ndarray:
    """The action tokens as a [T, A] matrix (A = 0 for image-caption records)."""
    mask = tokenized.modality == Modality.ACTION
    counts = _per_step(tokenized, mask)
    t_steps = tokenized.num_steps
    if t_steps and (counts != counts[0]).any():
        bad = int(np.flatnonzero(counts != counts[0])[0])
        raise TokenizeError("actions", f"timestep {bad} has {int(counts[bad])} action tokens, "
                            f"timestep 0 has {int(counts[0])}")
    width = int(counts[0]) if t_steps else 0
    return tokenized.tokens[mask].reshape(t_steps, width)


def decode_actions(tokenized: TokenizedEpisode, *, mu_law: bool = True) -> np.ndarray:
    """Per-step actions [T, A]: discrete tokens exactly (int64), continuous ones at their bin
    centres through the inverse mu-law when ``mu_law`` (float32). ``mu_law`` must match the
    encoding (EpisodeTokenizer.decode_actions applies the dataset's setting)."""
    a = action_tokens(tokenized)
    if a.size == 0:
        return np.zeros(a.shape, dtype=np.float32)
    if (a >= CONTINUOUS_OFFSET).all():
        return decode_continuous(a, mu_law, field="actions")
    if (a < DISCRETE_LIMIT).all():
        return decode_discrete(a, field="actions")
    raise TokenizeError("actions", "action tokens mix the discrete and continuous ranges "
                        "(mixed actions decode with decode_mixed_actions)")


def decode_mixed_actions(tokenized: TokenizedEpisode, discrete_dims: int, *,
                         mu_law: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mixed actions (``action_kind="mixed"``) -> (discrete [T, D] int64 exactly, continuous
    [T, A - D] float32 at bin centres). A token in the wrong range for its column is an error."""
    a = action_tokens(tokenized)
    if not 0 < discrete_dims < max(a.shape[1], 1):
        raise TokenizeError("actions", f"discrete_dims must be in [1, {a.shape[1]}) for "
                            f"{a.shape[1]} action tokens per step, got {discrete_dims}")
    return (decode_discrete(a[:, :discrete_dims], field="actions"),
            decode_continuous(a[:, discrete_dims:], mu_law, field="actions"))


def observation_tokens(tokenized: TokenizedEpisode) -> list[np.ndarray]:
    """Per timestep, its observation tokens in stream order (text ids, PATCH_SLOT for patches,
    tensor tokens), without separator and actions."""
    mask = ((tokenized.modality != Modality.SEPARATOR) & (tokenized.modality != Modality.ACTION)
            & (tokenized.modality != Modality.PAD))
    counts = _per_step(tokenized, mask)
    return np.split(tokenized.tokens[mask], np.cumsum(counts)[:-1])

"""The token schemes a catalog entry can choose (``tokenize: {scheme: gato | mgdt}``): each scheme
is one object that owns its facts (tokenizer, patch size, modality names, how sequences are cut,
what the manifest records), so the job, the shard checks and the loaders ask it instead of
assuming Gato's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..schemas.catalog import SequenceSettings, TokenizeSettings
from . import mgdt
from .ale_actions import mapping_record, to_full_action_set
from .scheme import MODALITY_NAMES as GATO_MODALITY_NAMES
from .scheme import PATCH as GATO_PATCH

__all__ = ["Scheme", "SCHEMES", "scheme_of", "scheme_by_patch_size", "PATCH_SIZES",
           "MAX_MODALITY"]


class _FullActionTokenizer:
    """Gato's tokenizer on episodes whose discrete actions were mapped to ALE's full set."""

    def __init__(self, inner: Any):
        self.inner = inner

    def tokenize(self, ep: Any) -> Any:
        if ep.action_kind == "discrete":
            ep = dataclasses.replace(ep, actions=to_full_action_set(ep.actions, ep.task))
        return self.inner.tokenize(ep)


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str
    patch_size: int
    modality_names: tuple[str, ...]
    full_action_set_default: bool

    def normalize_patches(self, patches: Any) -> Any:
        """The trainer-side pixel scaling of this scheme's patches (float32)."""
        if self.name == "mgdt":
            return mgdt.normalize_patches(patches)
        from .images import normalize_patches

        return normalize_patches(patches)

    def full_action_set(self, settings: TokenizeSettings) -> bool:
        if settings.full_action_set is None:
            return self.full_action_set_default
        return settings.full_action_set

    def tokenizer(self, settings: TokenizeSettings, text: Any = None) -> Any:
        """An object with ``tokenize(episode) -> TokenizedEpisode`` for this entry."""
        if self.name == "mgdt":
            return mgdt.MgdtTokenizer(self.full_action_set(settings), settings.resample)
        from .timesteps import EpisodeTokenizer

        tok = EpisodeTokenizer(settings, text)
        return _FullActionTokenizer(tok) if self.full_action_set(settings) else tok

    def sequence_settings(self, seq: SequenceSettings) -> SequenceSettings:
        """The settings the job cuts sequences by: Gato's as given; MGDT's are windows of
        ``timesteps`` whole timesteps (L = timesteps x 39 tokens), with no prompts."""
        if self.name != "mgdt":
            return seq
        steps = seq.timesteps or mgdt.CONTEXT_STEPS
        return seq.model_copy(update={"length": steps * mgdt.TOKENS_PER_STEP,
                                      "prompt_probability": 0.0, "prompt_tokens": 0,
                                      "timesteps": steps})

    def manifest_record(self, settings: TokenizeSettings, seq: SequenceSettings,
                        tasks: Iterable[str]) -> dict:
        """Keys for the config's manifest info: none for a plain Gato entry (its manifest is
        what it always was); the layout and the action mapping otherwise."""
        out: dict = {}
        if self.name == "mgdt":
            out["tokenization"] = mgdt.layout_record(self.sequence_settings(seq).timesteps)
        if self.full_action_set(settings):
            out["action_mapping"] = mapping_record(list(tasks))
        return out


SCHEMES: dict[str, Scheme] = {
    "gato": Scheme("gato", GATO_PATCH, GATO_MODALITY_NAMES, False),
    "mgdt": Scheme("mgdt", mgdt.PATCH, mgdt.MODALITY_NAMES, True),
}
PATCH_SIZES: frozenset[int] = frozenset(s.patch_size for s in SCHEMES.values())
MAX_MODALITY = max(len(s.modality_names) for s in SCHEMES.values()) - 1


def scheme_of(settings: TokenizeSettings) -> Scheme:
    return SCHEMES[settings.scheme]


def scheme_by_patch_size(side: int) -> Scheme:
    """The scheme whose shards hold ``side`` x ``side`` patches (each scheme has its own size)."""
    for s in SCHEMES.values():
        if s.patch_size == side:
            return s
    raise ValueError(f"no token scheme has {side}x{side} patches")

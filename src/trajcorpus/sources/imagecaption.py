"""What the image-caption readers (COCO, img2dataset, HF parquet) share: one record shape, one
caption check, one bounded image read.

A record is an Episode of one step (SPEC 2): observation "image" (uint8 [1, H, W, 3], decoded with
``imagecodec.decode_image(mode="RGB")`` so grey and palette files become 3 channels) and "caption"
(text, one entry for the episode), ``action_kind="none"`` with an empty float32 [1, 0] action array,
reward 0.0 (float32), return 0.0, and neither terminal nor truncated (there is no environment).
Captions are kept exactly as stored (no stripping); an undecodable, missing or blank caption is
bad input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fs
from ..errors import SourceError, TrajcorpusError
from ..schemas.episode import Episode, Rejected
from .imagecodec import decode_image

__all__ = ["MAX_IMAGE_BYTES", "caption_text", "caption_episode", "read_bounded", "load_image",
           "rejected", "safe_relative_name"]

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # an encoded image larger than this is refused unread


def caption_text(raw: Any, uri: str, key: str) -> str:
    """A caption as valid, non-blank UTF-8 text, or a SourceError naming ``uri`` and ``key``."""
    if raw is None:
        raise SourceError(uri, "caption is missing", key=key)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceError(uri, f"caption is not valid UTF-8 (byte 0x{raw[e.start]:02x} at "
                              f"byte {e.start}: {e.reason})", key=key) from None
    elif isinstance(raw, str):
        text = raw
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            cp = ord(text[e.start])
            what = (f"byte 0x{cp - 0xDC00:02x}" if 0xDC80 <= cp <= 0xDCFF
                    else f"lone surrogate U+{cp:04X}")
            raise SourceError(uri, f"caption is not valid UTF-8 ({what} at character {e.start})",
                              key=key) from None
    else:
        raise SourceError(uri, f"caption must be text, got {type(raw).__name__}", key=key)
    if not text.strip():
        raise SourceError(uri, "empty caption", key=key)
    return text


def read_bounded(uri: str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """All bytes of ``uri``, refusing files over ``limit`` bytes without reading them whole."""
    try:
        with fs.open_uri(uri, "rb", cache_type="readahead") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise SourceError(uri, "image file not found") from None
    except OSError as e:
        raise SourceError(uri, f"cannot read image file: {e}") from None
    if len(data) > limit:
        raise SourceError(uri, f"image file larger than the limit of {limit} bytes")
    return data


def load_image(data: bytes, uri: str, *, key: str | None = None,
               offset: int | None = None) -> np.ndarray:
    """Decode to uint8 [H, W, 3]; every failure is a SourceError naming where."""
    return decode_image(data, uri, key=key, offset=offset, mode="RGB")


def caption_episode(*, dataset: str, task: str, agent: str, episode_id: str,
                    order: tuple[int, ...], image: np.ndarray, caption: str,
                    source: dict[str, Any]) -> Episode:
    """One (image, caption) record in canonical form."""
    return Episode(
        dataset=dataset, task=task, agent=agent, episode_id=episode_id, order=order,
        observations={"image": image[None], "caption": np.array([caption], dtype=object)},
        observation_kinds={"image": "image", "caption": "text"},
        actions=np.zeros((1, 0), dtype=np.float32), action_kind="none",
        rewards=np.zeros(1, dtype=np.float32), is_terminal=False, is_truncated=False,
        return_=0.0, source=source)


def rejected(dataset: str, err: TrajcorpusError, task: str, *, kind: str = "episode",
             note: str = "") -> Rejected:
    """A Rejected whose location and reason come from ``err`` (``where: why``)."""
    reason = f"{err.reason} ({note})" if note else err.reason
    return Rejected(dataset, err.where, reason, kind, task)


def safe_relative_name(name: str) -> bool:
    """True for a plain relative path: no absolute path, drive, backslash, '..' or empty part."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts)

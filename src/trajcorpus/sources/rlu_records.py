"""What the RL Unplugged Atari reader decodes from one ``tf.train.Example`` (byte lists, numbers,
PNG frames, transition ids), and how the transition layout is stitched back into episodes
(observations matched by their pixels, the order recovered by an Euler path)."""

from __future__ import annotations

import collections
import hashlib
from typing import Any

import numpy as np

from ..errors import SourceError
from .imagecodec import decode_image

__all__ = ["euler_order", "STACK", "TRANSITION_KEYS"]

TRANSITION_KEYS = ("o_t", "o_tp1", "a_t", "a_tp1", "r_t", "d_t", "episode_id")
STACK = 4


# -- helpers ------------------------------------------------------------------------------------

def _bytes_list(ex: dict, key: str, fail) -> list[bytes]:
    v = ex[key]
    if not isinstance(v, list):
        raise fail(key, f"expected a bytes_list, got a {v.dtype} list")
    return v


def _numbers(ex: dict, key: str, dtype: type, fail) -> np.ndarray:
    v = ex[key]
    want = "int64_list" if np.dtype(dtype).kind == "i" else "float_list"
    if isinstance(v, list):
        if not v:  # an empty Feature: no list set
            return np.zeros(0, dtype)
        raise fail(key, f"expected a {want}, got a bytes_list")
    if (v.dtype.kind == "i") != (np.dtype(dtype).kind == "i"):
        raise fail(key, f"expected a {want}, got a {v.dtype} list")
    return v.astype(dtype, copy=False)


def _scalar(ex: dict, key: str, dtype: type, fail) -> Any:
    v = _numbers(ex, key, dtype, fail)
    if v.shape != (1,):
        raise fail(key, f"expected exactly 1 value, got {v.shape[0]}")
    return v[0]


def _gray(frame: np.ndarray, uri: str, offset: int) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    if frame.ndim != 2:
        raise SourceError(uri, f"expected a grayscale frame, got shape {frame.shape}",
                          offset=offset)
    return frame


def _decode_frames(pngs: list[bytes], uri: str, offset: int, key: str) -> np.ndarray:
    frames = [_gray(decode_image(png, uri, key=f"{key}[{i}]", offset=offset), uri, offset)
              for i, png in enumerate(pngs)]
    if not frames:
        raise SourceError(uri, "episode has no frames", offset=offset, key=key)
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.shape != shape:
            raise SourceError(uri, f"frame shape {f.shape} differs from the first frame's "
                              f"{shape}", offset=offset, key=f"{key}[{i}]")
    return np.stack(frames)


def _transition_id(ex: dict, uri: str, offset: int) -> int:
    def fail(key: str, reason: str) -> SourceError:
        return SourceError(uri, reason, offset=offset, key=key)

    for key in TRANSITION_KEYS:
        if key not in ex:
            raise fail(key, f"missing feature (the transition layout needs "
                            f"{', '.join(TRANSITION_KEYS)})")
    return int(_scalar(ex, "episode_id", np.int64, fail)) & 0xFFFFFFFFFFFFFFFF  # as uint64


class _BlobKeys:
    """A frame stack's key from its PNG bytes: no decoding, exact for a deterministic encoder."""

    def stack(self, pngs: list[bytes], uri: str, offset: int, key: str) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for png in pngs:
            h.update(len(png).to_bytes(8, "little"))
            h.update(png)
        return h.digest()


class _PixelKeys(_BlobKeys):
    """A frame stack's key from decoded pixels; each distinct PNG blob is decoded once."""

    def __init__(self) -> None:
        self._cache: dict[bytes, bytes] = {}

    def stack(self, pngs: list[bytes], uri: str, offset: int, key: str) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for i, png in enumerate(pngs):
            digest = self._cache.get(png)
            if digest is None:
                frame = _gray(decode_image(png, uri, key=f"{key}[{i}]", offset=offset), uri,
                              offset)
                digest = hashlib.blake2b(frame.tobytes(), digest_size=16,
                                         person=str(frame.shape).encode()[:16]).digest()
                self._cache[png] = digest
            h.update(digest)
        return h.digest()


class _Pending:
    """The transitions of one episode as read (any order), with what ordering needs."""

    __slots__ = ("positions", "src", "dst", "actions", "rewards", "discounts", "returns",
                 "frames", "frame_uri", "frame_offset", "broken")

    def __init__(self) -> None:
        self.positions: list[tuple[int, int]] = []
        self.src: list[bytes] = []
        self.dst: list[bytes] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.discounts: list[float] = []
        self.returns: list[float] = []
        self.frames: list[bytes] = []
        self.frame_uri: list[str] = []
        self.frame_offset: list[int] = []
        self.broken: list[str] = []

    def add(self, ex: dict, keys: _BlobKeys, uri: str, offset: int,
            position: tuple[int, int]) -> None:
        def fail(key: str, reason: str) -> SourceError:
            return SourceError(uri, reason, offset=offset, key=key)

        o_t, o_tp1 = _bytes_list(ex, "o_t", fail), _bytes_list(ex, "o_tp1", fail)
        for key, stack in (("o_t", o_t), ("o_tp1", o_tp1)):
            if len(stack) != STACK:
                raise fail(key, f"expected {STACK} PNG frames, got {len(stack)}")
        a_t = int(_scalar(ex, "a_t", np.int64, fail))
        a_tp1 = int(_scalar(ex, "a_tp1", np.int64, fail))
        r_t = float(_scalar(ex, "r_t", np.float32, fail))
        d_t = float(_scalar(ex, "d_t", np.float32, fail))
        src = keys.stack(o_t, uri, offset, "o_t") + a_t.to_bytes(8, "little", signed=True)
        dst = keys.stack(o_tp1, uri, offset, "o_tp1") + a_tp1.to_bytes(8, "little", signed=True)
        self.positions.append(position)
        self.src.append(src)
        self.dst.append(dst)
        self.actions.append(a_t)
        self.rewards.append(r_t)
        self.discounts.append(d_t)
        if "episode_return" in ex and not isinstance(ex["episode_return"], list):
            self.returns.extend(float(x) for x in ex["episode_return"][:1])
        self.frames.append(o_t[-1])
        self.frame_uri.append(uri)
        self.frame_offset.append(offset)


def euler_order(src: list[bytes], dst: list[bytes]) -> list[int] | str:
    """Edge indices in walk order (edge i goes from node src[i] to node dst[i]), or why not.

    Hierholzer's algorithm: it follows edges until stuck and splices the loops it skipped back in,
    so recurring nodes (repeated stacks) cost nothing. Among equal choices the edge read first is
    taken first, so the result is deterministic.
    """
    n = len(src)
    if n == 0:
        return "no transitions"
    out_edges: dict[bytes, list[int]] = collections.defaultdict(list)
    indegree: collections.Counter[bytes] = collections.Counter(dst)
    for i, u in enumerate(src):
        out_edges[u].append(i)
    starts = [u for u, edges in out_edges.items() if len(edges) - indegree[u] == 1]
    if len(starts) != 1:
        return (f"expected exactly one first transition (a stack no other transition leads to), "
                f"found {len(starts)}: transitions missing or duplicated")
    for edges in out_edges.values():
        edges.reverse()  # pop() then yields the earliest-read edge first
    stack: list[tuple[bytes, int]] = [(starts[0], -1)]
    path: list[int] = []
    while stack:
        node, edge = stack[-1]
        edges = out_edges.get(node)
        if edges:
            i = edges.pop()
            stack.append((dst[i], i))
        else:
            stack.pop()
            if edge >= 0:
                path.append(edge)
    path.reverse()
    if len(path) != n or any(dst[a] != src[b] for a, b in zip(path, path[1:], strict=False)):
        return (f"only {len(path)} of {n} transitions link into one chain from the first one: "
                "transitions missing or duplicated")
    return path

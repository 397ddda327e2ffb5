"""OpenAI VPT contractor recordings (Minecraft: screen video + per-tick keyboard/mouse) -> episodes.

Layout (openai/Video-Pre-Training README, "Contractor Demonstrations"): a recording is
``<alias>-<12 hex>-<YYYYMMDD>-<HHMMSS>.mp4`` (640x360, 20 fps) + ``.jsonl`` (one JSON object per
tick) + ``-options.json`` (unused). The input is a folder of recordings (one directory, as the
reference globs it) or an index JSON ``{"basedir": ..., "relpaths": [...]}`` (a file is
``basedir + relpath + suffix``; a relative basedir resolves against the index file's folder;
local, gs:// or https). A listed recording whose files are absent is reported as skipped (a
Rejected of kind "missing"), as img2dataset's failed downloads are.

One episode per recording; frame i belongs to jsonl line i. The reference loader's rules, in its
order (tests/fixtures/vpt/PROVENANCE.md section 2 spells each out):

1. attack-stuck fix: ``newButtons == [0]`` on line 0 means attack is stuck down; button 0 is
   removed from ``buttons`` until a line whose ``newButtons`` holds 0 (a real press);
2. the MineRL action and the null test: mapped keys (:data:`KEYBOARD_BUTTON_MAPPING`), a non-zero
   dx or dy, mouse buttons 0/1/2 (attack/use/pickItem) make a step non-null; nothing else does;
3. the hotbar fix, after the null test: a ``hotbar`` different from the previous line's (starting
   at 0) sets ``hotbar.<slot + 1>``, null step or not;
4. frame i is read for every line (null ones too); a frame after the last line has no action;
5. null steps are dropped (option ``keep_null`` keeps them);
6. GUI-open frames get the cursor drawn at mouse x/y (:mod:`.vpt_cursor`), at the recorded size
   before any resize; PyAV decodes to RGB, so the reference's BGR->RGB swap has no counterpart.

Frames are decoded by the shared :meth:`.video.VideoReader.steps` (one forward pass, frames
converted only when their step is kept, written into the source's :class:`.video.FrameArena`).

Actions are MineRL's: the 23 buttons of :data:`BUTTONS` (sorted names) as discrete 0/1 and the
camera ``[pitch, yaw] = [dy, dx] * 360 / 2400`` in float degrees (the reference truncates it to
int: its issue #54), stored as one ``mixed`` action array ``[T, 25]`` with 23 leading discrete
columns. :func:`minerl_actions` turns tokens back into MineRL action dicts.

Bad input: a line that is not a JSON object, a field of the wrong type, a missing ``hotbar``
(recorder < 6.11: the reference raises KeyError; option ``missing_hotbar``), a video shorter than
its jsonl or one PyAV cannot decode: the recording is quarantined with a one-line reason naming
the file and line. A ``mouse`` or ``keyboard`` recorded as null (recorders before 6.13 wrote
these on errors) is read as no input on that tick and counted in the lineage.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import posixpath
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pydantic

from .. import fs
from ..errors import SourceError, one_line
from ..schemas.episode import Episode, Rejected
from .base import Source, SourceOptions, Unit
from .metadata import parse_json
from .video import FrameArena, open_video
from .vpt_cursor import draw_cursor

__all__ = ["VptSource", "KEYBOARD_BUTTON_MAPPING", "BUTTONS", "ACTION_NAMES",
           "CAMERA_DEG_PER_PIXEL", "ParsedActions", "parse_jsonl", "minerl_actions",
           "decode_frames", "VERSION_TASKS"]

KEYBOARD_BUTTON_MAPPING: dict[str, str] = {
    "key.keyboard.escape": "ESC", "key.keyboard.s": "back", "key.keyboard.q": "drop",
    "key.keyboard.w": "forward", **{f"key.keyboard.{n}": f"hotbar.{n}" for n in range(1, 10)},
    "key.keyboard.e": "inventory", "key.keyboard.space": "jump", "key.keyboard.a": "left",
    "key.keyboard.d": "right", "key.keyboard.left.shift": "sneak",
    "key.keyboard.left.control": "sprint", "key.keyboard.f": "swapHands",
}
MOUSE_BUTTONS = {0: "attack", 1: "use", 2: "pickItem"}
BUTTONS: tuple[str, ...] = tuple(sorted({*KEYBOARD_BUTTON_MAPPING.values(),
                                         *MOUSE_BUTTONS.values()}))
ACTION_NAMES: tuple[str, ...] = (*BUTTONS, "camera/pitch", "camera/yaw")
CAMERA_DEG_PER_PIXEL = 360.0 / 2400.0  # MineRL's mouse sensitivity: degrees per pixel of motion
_COL = {name: i for i, name in enumerate(BUTTONS)}
_KEY_COL = {k: _COL[b] for k, b in KEYBOARD_BUTTON_MAPPING.items()}
_MOUSE_COL = {k: _COL[b] for k, b in MOUSE_BUTTONS.items()}
# the recorder versions' tasks (README "Contractor Demonstrations"); other majors: "recorder-N"
VERSION_TASKS = {"6": "free-play", "7": "early-game", "8": "build-house",
                 "9": "build-house-random-materials", "10": "diamond-pickaxe"}
_STEM = re.compile(r"^(?P<alias>.+)-(?P<session>[0-9a-f]{12})-(?P<date>\d{8})-(?P<time>\d{6})$")
_VERSION = re.compile(r"^\d+(\.\d+)*$")


class VptOptions(SourceOptions):
    """``keep_null``: keep the steps the reference drops (default false). ``missing_hotbar``:
    "quarantine" (default) refuses a file without ``hotbar`` (recorder < 6.11); "skip_fix" reads
    it without the hotbar fix. ``frame_size``: [H, W] to resize frames while decoding (bilinear;
    VPT trains on 128x128), default the recorded size. ``task``: the task name for every
    recording (default from the recorder's major version, :data:`VERSION_TASKS`).
    ``decoder_threads``: FFmpeg's own threads in the H.264 decoder (same pixels)."""

    keep_null: bool = False
    missing_hotbar: Literal["quarantine", "skip_fix"] = "quarantine"
    frame_size: tuple[pydantic.PositiveInt, pydantic.PositiveInt] | None = None
    task: str | None = None
    decoder_threads: bool = True


@dataclasses.dataclass
class ParsedActions:
    """One jsonl parsed under the reference's rules: per line, in line order."""

    buttons: np.ndarray  # uint8 [N, 23], after the stuck-attack and hotbar fixes
    camera: np.ndarray  # float64 [N, 2]: [pitch, yaw] degrees
    null: np.ndarray  # bool [N]: the reference's null test (before the hotbar fix)
    cursors: list[tuple[int, float, float]]  # (line, x, y) of GUI-open lines
    stuck_lines: list[int]
    null_input_lines: int  # lines whose mouse or keyboard was recorded as null
    hotbar_fix: bool  # False when the file has no hotbar and missing_hotbar is "skip_fix"


def _field(obj: Any, name: str, types: type | tuple[type, ...], where: str,
           label: str = "") -> Any:
    label = label or name
    if not isinstance(obj, dict) or name not in obj:
        raise SourceError(where, f"no {label!r} field")
    v = obj[name]
    tt = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, tt) or (isinstance(v, bool) and bool not in tt):
        raise SourceError(where, f"field {label!r} must be "
                          f"{' or '.join(t.__name__ for t in tt)}, got {type(v).__name__}")
    if isinstance(v, float) and not math.isfinite(v):  # JSON NaN/Infinity (Python writes them)
        raise SourceError(where, f"field {label!r} must be a finite number, got {v}")
    return v


def _list_of(v: list, types: tuple[type, ...], label: str, where: str) -> list:
    if not all(isinstance(b, types) and not isinstance(b, bool) for b in v):
        raise SourceError(where, f"field {label!r} must be a list of "
                          f"{' or '.join(t.__name__ for t in types)}")
    return v


def parse_jsonl(data: bytes, uri: str, missing_hotbar: str = "quarantine") -> ParsedActions:
    """The recorder's jsonl -> per-line MineRL actions under the reference's rules (module doc).

    Every refusal is a SourceError naming ``uri``, the line and the field."""
    lines = data.split(b"\n")
    if lines and lines[-1].strip() == b"":
        lines.pop()  # the newline after the last line (absent in some files)
    if not lines:
        raise SourceError(uri, "the jsonl has no lines")
    n = len(lines)
    buttons = np.zeros((n, len(BUTTONS)), dtype=np.uint8)
    camera = np.zeros((n, 2), dtype=np.float64)
    null = np.zeros(n, dtype=bool)
    cursors: list[tuple[int, float, float]] = []
    stuck_lines: list[int] = []
    null_inputs = 0
    stuck = False
    last_hotbar = 0
    with_hotbar = None
    num = (int, float)
    for i, raw in enumerate(lines):
        where = f"{uri} line {i}"
        try:
            step = json.loads(raw)
        except ValueError as e:  # syntax, encoding, an integer beyond Python's digit limit
            raise SourceError(where, f"not JSON ({one_line(e)})") from None
        except RecursionError:
            raise SourceError(where, "not JSON this reader accepts: nested too deeply") from None
        if not isinstance(step, dict):
            raise SourceError(where, f"a line must be a JSON object, got {type(step).__name__}")
        mouse, keyboard = step.get("mouse", {}), step.get("keyboard", {})
        if mouse is None or keyboard is None:
            null_inputs += 1
        mouse = mouse if mouse is not None else {"dx": 0, "dy": 0, "buttons": [],
                                                  "newButtons": []}
        keyboard = keyboard if keyboard is not None else {"keys": []}
        new_buttons = _list_of(_field(mouse, "newButtons", list, where, "mouse.newButtons"),
                               (int,), "mouse.newButtons", where)
        held = _list_of(_field(mouse, "buttons", list, where, "mouse.buttons"), (int,),
                        "mouse.buttons", where)
        # 1. attack-stuck fix
        if i == 0:
            stuck = new_buttons == [0]
        elif stuck and 0 in new_buttons:
            stuck = False
        if stuck:
            stuck_lines.append(i)
            held = [b for b in held if b != 0]
        # 2. action and null test
        row = buttons[i]
        keys = _list_of(_field(keyboard, "keys", list, where, "keyboard.keys"), (str,),
                        "keyboard.keys", where)
        for k in keys:
            col = _KEY_COL.get(k)
            if col is not None:
                row[col] = 1
        for b in held:
            col = _MOUSE_COL.get(b)
            if col is not None:
                row[col] = 1
        dx, dy = (_field(mouse, "dx", num, where, "mouse.dx"),
                  _field(mouse, "dy", num, where, "mouse.dy"))
        camera[i] = (dy * CAMERA_DEG_PER_PIXEL, dx * CAMERA_DEG_PER_PIXEL)
        null[i] = not row.any() and dx == 0 and dy == 0
        # 3. hotbar fix (after the null test; last_hotbar moves on null steps too)
        has = "hotbar" in step
        if with_hotbar is None:
            with_hotbar = has
        if has != with_hotbar:
            raise SourceError(where, "field 'hotbar' is present on some lines only")
        if has:
            slot = _field(step, "hotbar", int, where)
            if not 0 <= slot <= 8:
                raise SourceError(where, f"field 'hotbar' must be a slot 0..8, got {slot}")
            if slot != last_hotbar:
                row[_COL[f"hotbar.{slot + 1}"]] = 1
            last_hotbar = slot
        elif missing_hotbar != "skip_fix":
            raise SourceError(where, "no hotbar field (recorder < 6.11): the hotbar fix needs "
                              "it (option missing_hotbar: skip_fix reads it without the fix)")
        # 6. the cursor position of GUI-open lines
        if _field(step, "isGuiOpen", bool, where):
            if step.get("mouse") is None:
                x, y = cursors[-1][1:] if cursors else (640.0, 360.0)
            else:
                x, y = (_field(mouse, "x", num, where, "mouse.x"),
                        _field(mouse, "y", num, where, "mouse.y"))
            cursors.append((i, float(x), float(y)))
    return ParsedActions(buttons, camera, null, cursors, stuck_lines, null_inputs,
                         bool(with_hotbar))


def decode_frames(uri: str, n_lines: int, keep: np.ndarray,
                  cursors: Sequence[tuple[int, float, float]], size: tuple[int, int] | None,
                  arena: FrameArena | None = None, threads: bool = True) -> np.ndarray:
    """Frames ``i < n_lines`` with ``keep[i]`` as uint8 RGB [K, H, W, 3], in order, the cursor
    drawn on the ``(line, x, y)`` of ``cursors`` before resizing to ``size`` (H, W; None: as
    recorded). A video with fewer frames than lines or one PyAV cannot read: SourceError."""
    edits = {int(i): functools.partial(draw_cursor, x=x, y=y) for i, x, y in cursors}
    with open_video(uri, threads) as video:
        frames, decoded = video.steps(n_lines, keep, size, edits, arena)
    if decoded < n_lines:
        raise SourceError(uri, f"the video has {decoded} frames but the jsonl has {n_lines} "
                          "lines (frame i is line i): a truncated video")
    return frames


def minerl_actions(discrete: np.ndarray, camera: np.ndarray) -> list[dict[str, Any]]:
    """Decoded action columns (:func:`~trajcorpus.tokenizers.decode_mixed_actions` with 23
    discrete dims) -> one MineRL action dict per step: each button 0/1, ``camera`` [pitch, yaw]
    float degrees (the bin centre: within 1 % of the recorded value, 1e-4 degrees for 0; clipped
    to MineRL's [-180, 180], since the bin of 180 decodes to 180.95)."""
    discrete, camera = np.asarray(discrete), np.asarray(camera)
    if discrete.ndim != 2 or discrete.shape[1] != len(BUTTONS) or camera.shape != (
            discrete.shape[0], 2):
        raise SourceError("actions", f"expected [T, {len(BUTTONS)}] buttons and [T, 2] camera, "
                          f"got {discrete.shape} and {camera.shape}")
    if discrete.size and discrete.max() > 1:
        raise SourceError("actions", f"buttons must be 0 or 1, got {int(discrete.max())}")
    camera = np.clip(camera.astype(np.float64), -180.0, 180.0)  # MineRL's Box(-180, 180)
    return [{**{b: int(v) for b, v in zip(BUTTONS, row, strict=True)}, "camera": cam}
            for row, cam in zip(discrete, camera, strict=True)]


class VptSource(Source):
    """Reads VPT contractor recordings; one unit = one recording (= one episode)."""

    kind = "vpt"
    description = ("OpenAI VPT contractor recordings: Minecraft screen video (mp4) with the "
                   "keyboard and mouse of every tick (jsonl), as MineRL actions")
    task_categories = ("reinforcement-learning",)
    tags = ("minecraft", "vpt", "gameplay-video", "behavior-cloning")
    carries_text = False
    Options = VptOptions

    @functools.cached_property
    def arena(self) -> FrameArena:
        """Frame memory reused from one recording to the next (see :class:`.video.FrameArena`)."""
        return FrameArena()

    def rewardless(self) -> str | None:
        return "VPT contractor recordings store no rewards (keyboard, mouse and video only)"

    def units(self) -> list[Unit]:
        if self.uri.endswith(".json"):
            entries = self._index_entries()
        else:
            entries = self._folder_entries()
        if not entries:
            raise SourceError(self.uri, "no VPT recordings (<alias>-<12 hex>-<date>-<time>.mp4 "
                              "+ .jsonl) found")
        units = []
        for i, (relpath, stem_uri) in enumerate(entries):
            version = relpath.split("/")[0] if "/" in relpath else ""
            version = version if _VERSION.match(version) else ""
            stem = relpath.rsplit("/", 1)[-1]
            m = _STEM.match(stem)
            alias = m.group("alias") if m else stem
            major = version.split(".")[0]
            task = self.opts.task or VERSION_TASKS.get(major, f"recorder-{major or 'unknown'}")
            fields = {"task": task, "agent": alias, "version": version or "unknown"}
            units.append(Unit(key=relpath, uri=stem_uri + ".mp4", index=i, params=(
                ("relpath", relpath), ("jsonl", stem_uri + ".jsonl"), ("version", version),
                ("task", self.task_name(**fields)), ("agent", self.agent_name(**fields)))))
        return units

    def _index_entries(self) -> list[tuple[str, str]]:
        try:
            with fs.open_uri(self.uri, "rb") as f:
                data = f.read()
        except OSError as e:
            raise SourceError(self.uri, f"cannot read the index: {one_line(e)}") from None
        doc = parse_json(data, self.uri, what="index")
        if not isinstance(doc, dict) or not isinstance(doc.get("basedir"), str) or not \
                isinstance(doc.get("relpaths"), list):
            raise SourceError(self.uri, "an index must be a JSON object with a string 'basedir' "
                              "and a list 'relpaths'")
        base = doc["basedir"]
        if "://" not in base and not base.startswith("/"):
            folder = self.uri.rsplit("/", 1)[0] if "/" in self.uri else "."
            base = f"{folder}/{base}"
        out = []
        for k, rel in enumerate(doc["relpaths"]):
            if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in \
                    rel.split("/"):
                raise SourceError(self.uri, f"relpaths[{k}] must be a relative path without "
                                  f"'..', got {rel!r}")
            out.append((rel.removesuffix(".mp4"), base + rel.removesuffix(".mp4")))
        return out

    def _folder_entries(self) -> list[tuple[str, str]]:
        stems: set[str] = set()
        for pattern in ("*.mp4", "*.jsonl"):
            for uri in fs.glob_literal(self.uri, pattern):
                stems.add(uri.rsplit(".", 1)[0])
        folder = posixpath.basename(fs.strip_scheme(self.uri).rstrip("/"))
        prefix = f"{folder}/" if _VERSION.match(folder) else ""
        return [(prefix + s.rsplit("/", 1)[-1], s) for s in sorted(stems)]

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        task, jsonl, relpath = unit.param("task"), unit.param("jsonl"), unit.param("relpath")
        absent = [f"{what} ({uri.rsplit('/', 1)[-1]})" for what, uri in
                  (("video", unit.uri), ("actions", jsonl)) if not fs.exists(uri)]
        if absent:
            yield self.reject(f"{unit.uri.removesuffix('.mp4')} [{relpath}]",
                              f"recording skipped, files absent: {', '.join(absent)}",
                              kind="missing", task=task)
            return
        try:
            with fs.open_uri(jsonl, "rb") as f:
                data = f.read()
            parsed = parse_jsonl(data, jsonl, self.opts.missing_hotbar)
            keep = np.ones(len(parsed.null), bool) if self.opts.keep_null else ~parsed.null
            if not keep.any():
                raise SourceError(jsonl, f"every one of the {len(keep)} lines is a null step: "
                                  "nothing to keep (option keep_null keeps them)")
            frames = decode_frames(unit.uri, len(keep), keep, parsed.cursors,
                                   self.opts.frame_size, self.arena,
                                   self.opts.decoder_threads)
        except SourceError as e:
            yield self.reject(e.where or unit.uri, e.reason, kind="unit", task=task)
            return
        actions = np.concatenate([parsed.buttons[keep].astype(np.float32),
                                  parsed.camera[keep].astype(np.float32)], axis=1)
        lines = np.flatnonzero(keep)
        episode = Episode(
            dataset=self.dataset, task=task, agent=unit.param("agent"), episode_id=relpath,
            order=(unit.index,), observations={"image": frames},
            observation_kinds={"image": "image"}, actions=actions, action_kind="mixed",
            discrete_action_dims=len(BUTTONS), rewards=np.zeros(len(lines), np.float32),
            is_terminal=False, is_truncated=True, return_=0.0,
            source={"uri": unit.uri, "actions": jsonl, "relpath": relpath,
                    "recorder_version": unit.param("version") or None, "lines": len(keep),
                    "null_dropped": int((~keep).sum()), "hotbar_fix": parsed.hotbar_fix,
                    "null_input_lines": parsed.null_input_lines})
        yield self.checked(episode, f"{unit.uri} [{relpath}]")

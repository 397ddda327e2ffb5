"""Write small OpenAI VPT contractor recordings (mp4 + jsonl + -options.json + index) and their
ground truth.

No public recording can be downloaded here, so this script plays the recorder: each recording is
scripted tick by tick in *game* terms (which MineRL buttons the player holds, how far the mouse
moved, whether the attack button is stuck, when a GUI is open, which hotbar slot is selected), and
from that script it writes (a) the jsonl lines in the recorder's layout, (b) synthetic 640x360
frames encoded as H.264 at 20 fps with PyAV, and (c) ground_truth.json, whose expected actions,
null flags and kept steps come from the script's intent, never from reading the files back and
never from running the reference loader. tests/fixtures/vpt/PROVENANCE.md documents the format
and the reference loader's rules this ground truth encodes.

    /work/main/.venv/bin/python tools/fixture-gen/vpt_recordings.py tests/fixtures/vpt
    ... --text-only DIR    # jsonl/json/index/ground truth without videos (the determinism test)
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BUTTONS", "CAMERA_DEG_PER_PIXEL", "build_recordings", "write_fixture"]

FPS = 20
WIDTH, HEIGHT = 640, 360
WINDOW_W, WINDOW_H = 1280, 720  # the game window the mouse x/y refer to (recorded at 720p)
CAMERA_DEG_PER_PIXEL = 360.0 / 2400.0
# MineRL name -> the recorder's key code (the reference's KEYBOARD_BUTTON_MAPPING, inverted).
KEY_CODES = {
    "ESC": "key.keyboard.escape", "back": "key.keyboard.s", "drop": "key.keyboard.q",
    "forward": "key.keyboard.w", "inventory": "key.keyboard.e", "jump": "key.keyboard.space",
    "left": "key.keyboard.a", "right": "key.keyboard.d", "sneak": "key.keyboard.left.shift",
    "sprint": "key.keyboard.left.control", "swapHands": "key.keyboard.f",
    **{f"hotbar.{n}": f"key.keyboard.{n}" for n in range(1, 10)},
}
MOUSE_BUTTONS = {"attack": 0, "use": 1, "pickItem": 2}
BUTTONS = sorted([*KEY_CODES, *MOUSE_BUTTONS])  # the 23 discrete MineRL buttons
CHARS = {"key.keyboard.w": "w", "key.keyboard.a": "a", "key.keyboard.s": "s", "key.keyboard.d": "d",
         "key.keyboard.e": "e", "key.keyboard.q": "q", "key.keyboard.f": "f", "key.keyboard.t": "t",
         "key.keyboard.space": " ", **{f"key.keyboard.{n}": str(n) for n in range(1, 10)}}

LEGEND = {
    "actions": "per jsonl line i (str key): the MineRL action after the reference's rules (stuck attack "
               "removed, hotbar fix applied): buttons = names set to 1, sorted; camera = [pitch, yaw] in "
               "float degrees = [dy, dx] * 360/2400, never truncated",
    "null_lines": "lines the reference calls null (tested before the hotbar fix); dropped by default",
    "kept_default": "line = frame indices a reader yields with null steps dropped (the reference's behaviour)",
    "kept_keep_null": "line = frame indices with null steps kept; a trailing frame without a line is never a step",
    "frame_mean_rgb": "per video frame, mean R, G, B of the generated frame before H.264 and before any cursor",
    "cursor_boxes": "per GUI-open line: [x, y, w, h] of the 16x16 cursor in the 640x360 frame, clipped; "
                    "x = int(mouse.x * 360 / 720), y = int(mouse.y * 360 / 720)",
    "camera_truncated_by_reference": "lines where the reference loader's integer camera array (its issue #54) "
                                     "gives other values than the float camera; for comparison only",
    "attack_stuck_lines": "lines whose recorded button 0 is the stuck attack and is removed",
}

@dataclass
class Tick:
    """What the player does in one 50 ms tick (changes relative to the previous tick)."""

    press: tuple[str, ...] = ()  # MineRL buttons pressed now (keys or attack/use/pickItem)
    release: tuple[str, ...] = ()
    other_press: tuple[str, ...] = ()  # key codes the MineRL mapping ignores (f3, t, ...)
    other_release: tuple[str, ...] = ()
    other_mouse: tuple[int, ...] = ()  # mouse buttons > 2 (side buttons), held this tick only
    dx: float = 0.0
    dy: float = 0.0
    scroll: float = 0.0  # dwheel; > 0 selects the slot to the left (Minecraft's rule)
    gui: bool | None = None  # True opens a GUI screen this tick, False closes it
    real_attack: bool = False  # with a stuck attack: the player really presses attack now


@dataclass
class Script:
    alias: str
    version: str
    start: str  # YYYYMMDD-HHMMSS
    ticks: list[Tick]
    hotbar0: int | None  # None: an old recorder that writes no `hotbar`
    attack_stuck: bool = False
    trailing_frames: int = 0
    trailing_newline: bool = True
    seed: int = 0
    notes: list[str] = field(default_factory=list)


def _session_hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(48):012x}"


def _recording_scripts() -> list[Script]:
    T = Tick
    # A (7.6): walking, camera (fractional degrees: issue #54), null ticks of every kind, hotbar
    # changes by key and by scroll (on a null tick and on a moving tick), slot 3 at the start.
    a = [T(press=("forward",), dx=37.5), T(dx=-12.5, dy=4.0), T(), T(release=("forward",)),
         T(), T(other_press=("key.keyboard.f3",)), T(other_release=("key.keyboard.f3",)),
         T(press=("hotbar.5",)), T(release=("hotbar.5",)), T(), T(scroll=-1.0), T(),
         T(press=("jump",), dx=3.0), T(release=("jump",), dy=-7.5), T(press=("forward",)),
         T(scroll=1.0), T(press=("sprint",), dx=0.5), T(), T(release=("sprint", "forward")),
         T(press=("attack",)), T(), T(dx=100.0, dy=-33.3), T(release=("attack",)),
         T(press=("use",)), T(release=("use",)), T(press=("pickItem",)), T(release=("pickItem",)),
         T(other_press=("key.keyboard.t",)), T(other_release=("key.keyboard.t",)), T(),
         T(press=("ESC",)), T(release=("ESC",)), T(press=("sneak", "left")), T(),
         T(release=("sneak", "left")), T(press=("drop",)), T(release=("drop",)),
         T(press=("hotbar.9",)), T(release=("hotbar.9",), press=("back",)), T(dx=-2.5),
         T(release=("back",)), T(press=("hotbar.9",)), T(release=("hotbar.9",)),
         T(press=("swapHands",)), T(release=("swapHands",)), T(), T(dx=-0.25, dy=0.25),
         T(scroll=-1.0, press=("right",)), T(release=("right",)), T()]
    # B (8.0): two GUI stretches (inventory via `e`, the cursor moving, clicks, idle GUI ticks,
    # the cursor at the right edge where the drawn cursor is clipped), closed by `e` and ESC.
    b = [T(press=("forward",)), T(dx=10.0), T(release=("forward",)), T(press=("inventory",), gui=True),
         T(release=("inventory",)), T(), T(dx=301.0, dy=-100.0), T(dx=40.0, dy=21.0), T(),
         T(press=("attack",)), T(release=("attack",)), T(), T(dx=-120.0, dy=55.0), T(press=("use",)),
         T(release=("use",)), T(), T(), T(press=("inventory",), gui=False), T(release=("inventory",)),
         T(dx=-5.0), T(), T(press=("jump",)), T(release=("jump",)), T(press=("inventory",), gui=True),
         T(release=("inventory",)), T(dx=600.0, dy=330.0), T(), T(dx=31.0, dy=18.0), T(),
         T(press=("attack",)), T(release=("attack",)), T(other_press=("key.keyboard.f3",)),
         T(other_release=("key.keyboard.f3",)), T(press=("ESC",), gui=False), T(release=("ESC",)),
         T(), T(dx=7.5, dy=-7.5), T(press=("forward",)), T(release=("forward",)), T()]
    # C (6.13): attack stuck down from the first line, then the real press; one frame more than
    # lines (the video's last frame has no action).
    c = [T(), T(), T(press=("forward",)), T(), T(release=("forward",)), T(), T(dx=12.0), T(),
         T(press=("left",)), T(release=("left",)), T(), T(real_attack=True), T(), T(),
         T(release=("attack",)), T(), T(press=("attack",)), T(release=("attack",)), T(),
         T(press=("forward",), dx=-6.0), T(release=("forward",)), T(press=("hotbar.2",)),
         T(release=("hotbar.2",)), T(), T(scroll=1.0, dy=2.0), T(), T(press=("use",)),
         T(release=("use",)), T(), T(press=("jump",)), T(release=("jump",)), T(), T(dx=0.75),
         T(), T(press=("back",)), T(release=("back",)), T()]
    # D (6.9): an old recorder: no `hotbar`, no `dwheel`; a side mouse button; no final newline.
    d = [T(press=("forward",)), T(), T(release=("forward",)), T(), T(other_mouse=(3,)), T(),
         T(dx=-18.0, dy=9.0), T(), T(press=("hotbar.4",)), T(release=("hotbar.4",)), T(),
         T(press=("attack",)), T(release=("attack",)), T(), T(press=("jump",)), T(release=("jump",)),
         T(), T(other_mouse=(4,)), T(dx=25.0), T(), T(press=("inventory",), gui=True),
         T(release=("inventory",)), T(dx=64.0, dy=-12.0), T(), T(press=("attack",)),
         T(release=("attack",)), T(press=("inventory",), gui=False), T(release=("inventory",)), T(), T()]
    return [
        Script("brisk-amber-otter", "7.6", "20220412-101503", a, hotbar0=3, seed=1,
               notes=["first line already on slot 3 (0-based): the hotbar fix adds hotbar.4 at step 0"]),
        Script("quiet-linen-heron", "8.0", "20220315-122354", b, hotbar0=0, seed=2,
               notes=["GUI-open stretches with the cursor moving; clicks inside a GUI count as attack/use"]),
        Script("mellow-slate-finch", "6.13", "20220117-190042", c, hotbar0=6, attack_stuck=True,
               trailing_frames=1, seed=3,
               notes=["attack stuck down from line 0 until the real press at line 11",
                      "one trailing video frame without a jsonl line"]),
        Script("rustic-plum-badger", "6.9", "20211202-083011", d, hotbar0=None, trailing_newline=False,
               seed=4, notes=["recorder 6.9: no `hotbar` (added in 6.11) and no `dwheel` (added in 6.13)",
                              "the jsonl has no newline after its last line"]),
    ]


@dataclass
class Built:
    """One recording as written: its jsonl lines, frame specs and the ground truth from intent."""

    script: Script
    relpath: str
    lines: list[dict]
    gui: list[bool]
    truth: dict


def _game_state_lines(s: Script, rng: random.Random) -> tuple[list[dict], list[bool], dict]:
    """Play the script: recorder lines plus, per line, the action and null flag the player meant."""
    held: set[str] = set()  # MineRL buttons really held
    other_keys: list[str] = []
    slot, prev_slot = s.hotbar0, 0  # the official fix starts from slot 0
    stuck = s.attack_stuck
    gui = False
    x, y = 640.0, 360.0
    yaw, pitch = float(rng.randint(-170, 170)) + 0.35, 8.1
    pos = [rng.uniform(-900, 900), 64.0, rng.uniform(-900, 900)]
    milli0 = 1_640_000_000_000 + rng.randint(0, 10**9)
    lines, guis, actions, null, stuck_lines, boxes = [], [], [], [], [], {}
    for i, t in enumerate(s.ticks):
        new_buttons, new_keys = [], []
        for b in t.press:
            held.add(b)
            (new_buttons if b in MOUSE_BUTTONS else new_keys).append(
                MOUSE_BUTTONS[b] if b in MOUSE_BUTTONS else KEY_CODES[b])
        held.difference_update(t.release)
        for k in t.other_press:
            other_keys.append(k)
            new_keys.append(k)
        other_keys = [k for k in other_keys if k not in t.other_release]
        if t.real_attack:
            held.add("attack")
            stuck = False
            new_buttons.append(0)
        if i == 0 and stuck:
            new_buttons.append(0)  # the recorder saw attack go down as recording began
        new_buttons.extend(t.other_mouse)
        if t.gui is not None:
            gui = t.gui
            x, y = 640.0, 360.0  # Minecraft centres the cursor whenever a screen opens/closes
        if gui:
            x = min(max(x + t.dx, 0.0), WINDOW_W - 1.0)
            y = min(max(y + t.dy, 0.0), WINDOW_H - 1.0)
        else:
            yaw = (yaw + t.dx * CAMERA_DEG_PER_PIXEL + 180.0) % 360.0 - 180.0
            pitch = min(max(pitch + t.dy * CAMERA_DEG_PER_PIXEL, -90.0), 90.0)
        if "forward" in held and not gui:
            pos[0] += 0.2159
        keys_held = [KEY_CODES[b] for b in sorted(held) if b in KEY_CODES]
        hb = next((b for b in t.press if b.startswith("hotbar.")), None)
        if slot is not None:
            if hb is not None:
                slot = int(hb[-1]) - 1
            elif t.scroll:
                slot = (slot - (1 if t.scroll > 0 else -1)) % 9
        buttons = sorted({MOUSE_BUTTONS[b] for b in held if b in MOUSE_BUTTONS}
                         | ({0} if stuck else set()) | set(t.other_mouse))
        mouse = {"x": x, "y": y, "dx": t.dx, "dy": t.dy, "scaledX": x - 640.0, "scaledY": y - 360.0}
        if s.hotbar0 is not None:
            mouse["dwheel"] = t.scroll
        mouse |= {"buttons": buttons, "newButtons": new_buttons}
        line = {"mouse": mouse,
                "keyboard": {"keys": keys_held + other_keys, "newKeys": new_keys,
                             "chars": "".join(CHARS.get(k, "") for k in new_keys)},
                "isGuiOpen": gui, "isGuiInventory": gui}
        if slot is not None:
            line["hotbar"] = slot
        line |= {"yaw": round(yaw, 5), "pitch": round(pitch, 5), "xpos": round(pos[0], 6),
                 "ypos": pos[1], "zpos": round(pos[2], 6), "tick": i,
                 "milli": milli0 + 50 * i + rng.randint(0, 3),
                 "inventory": [{"type": "oak_planks", "quantity": 12}, {"type": "stone_pickaxe", "quantity": 1}],
                 "serverTick": 6001 + i, "serverTickDurationMs": round(rng.uniform(20.0, 45.0), 4),
                 "stats": {"minecraft.custom:minecraft.play_one_minute": 6000 + i,
                           "minecraft.custom:minecraft.walk_one_cm": int(pos[0] * 100) % 100000}}
        lines.append(line)
        guis.append(gui)
        # The action the player meant, in MineRL terms, and whether the reference calls it null:
        # null = no mapped key, no mouse motion, no real attack/use/pickItem (the hotbar fix comes
        # after that test, so a slot change alone never makes a step non-null).
        pressed = set(held)
        is_null = not pressed and t.dx == 0 and t.dy == 0
        if slot is not None and slot != prev_slot:
            pressed.add(f"hotbar.{slot + 1}")
        if slot is not None:
            prev_slot = slot
        if stuck:
            stuck_lines.append(i)
        actions.append({"buttons": sorted(pressed),
                        "camera": [t.dy * CAMERA_DEG_PER_PIXEL, t.dx * CAMERA_DEG_PER_PIXEL]})
        null.append(is_null)
        if gui:
            cx, cy = int(x * HEIGHT / WINDOW_H), int(y * HEIGHT / WINDOW_H)
            boxes[str(i)] = [cx, cy, min(16, WIDTH - cx), min(16, HEIGHT - cy)]
    truth = {"actions": actions, "null": null, "stuck_lines": stuck_lines, "cursor_boxes": boxes}
    return lines, guis, truth


def frame_rgb(seed: int, i: int, gui: bool) -> np.ndarray:
    """A synthetic 640x360 RGB frame: smooth gradients, a moving block, a per-frame red level that
    jumps between neighbours (so a one-frame shift shows in the mean) and a blue level unlike red
    (so a BGR/RGB swap shows); with a GUI open the world is dimmed behind a grey 176x166 panel."""
    xs = np.arange(WIDTH, dtype=np.float64)[None, :]
    ys = np.arange(HEIGHT, dtype=np.float64)[:, None]
    base_r = 30 + (i * 47 + seed * 19) % 100
    r = base_r + 25 * np.sin(2 * np.pi * xs / WIDTH + 0.3 * i) + 0 * ys
    g = 70 + 90 * ys / (HEIGHT - 1) + 10 * np.cos(2 * np.pi * xs / 320) + 0 * xs
    b = 165 + 10 * seed + 20 * np.sin(2 * np.pi * (xs + ys) / 500) + 0 * ys
    img = np.stack([r, g, b], axis=-1)
    bx, by = (37 * i + 50 * seed) % (WIDTH - 64), (23 * i + 30 * seed) % (HEIGHT - 64)
    img[by:by + 64, bx:bx + 64] = (230, 205, 60)
    if gui:
        img *= 0.5
        x0, y0 = (WIDTH - 176) // 2, (HEIGHT - 166) // 2
        img[y0:y0 + 166, x0:x0 + 176] = (85, 85, 85)
        img[y0 + 3:y0 + 163, x0 + 3:x0 + 173] = (198, 198, 198)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def build_recordings() -> list[Built]:
    """Every recording of the fixture, fully determined by the scripts and fixed seeds."""
    rng = random.Random(20220601)
    out = []
    for s in _recording_scripts():
        stem = f"{s.alias}-{_session_hex(rng)}-{s.start}"
        lines, guis, intent = _game_state_lines(s, random.Random(s.seed))
        n_lines = len(lines)
        n_frames = n_lines + s.trailing_frames
        frame_gui = guis + [guis[-1]] * s.trailing_frames
        means = [[round(float(v), 4) for v in frame_rgb(s.seed, i, frame_gui[i]).reshape(-1, 3).mean(0)]
                 for i in range(n_frames)]
        kept_default = [i for i in range(n_lines) if not intent["null"][i]]
        truth = {
            "relpath": f"{s.version}/{stem}", "recorder_version": s.version,
            "files": {"video": f"data/{s.version}/{stem}.mp4", "actions": f"data/{s.version}/{stem}.jsonl",
                      "options": f"data/{s.version}/{stem}-options.json"},
            "notes": s.notes, "folder": f"data/{s.version}", "width": WIDTH, "height": HEIGHT, "fps": FPS,
            "reference_loader": "ok" if s.hotbar0 is not None else "KeyError: 'hotbar' at line 0",
            "frames": n_frames, "lines": n_lines, "trailing_frames_without_line": s.trailing_frames,
            "hotbar_field": "absent" if s.hotbar0 is None else "present",
            "gui_open_lines": [i for i, g in enumerate(guis) if g],
            "cursor_boxes": intent["cursor_boxes"],
            "attack_stuck_lines": intent["stuck_lines"],
            "null_lines": [i for i in range(n_lines) if intent["null"][i]],
            "kept_default": kept_default, "kept_keep_null": list(range(n_lines)),
            "actions": {str(i): a for i, a in enumerate(intent["actions"])},
            "camera_truncated_by_reference": {
                str(i): [int(v) for v in a["camera"]] for i, a in enumerate(intent["actions"])
                if any(int(v) != v for v in a["camera"])},
            "frame_mean_rgb": means,
        }
        out.append(Built(s, truth["relpath"], lines, frame_gui, truth))
    return out


def _options(s: Script) -> dict:
    """A stand-in for the recorder's -options.json: Minecraft's options.txt as string pairs (the
    published README names the file but shows none; readers must not depend on its fields)."""
    binds = {f"key_key.{n}": code for n, code in [
        ("attack", "key.mouse.left"), ("use", "key.mouse.right"), ("pickItem", "key.mouse.middle"),
        ("forward", "key.keyboard.w"), ("left", "key.keyboard.a"), ("back", "key.keyboard.s"),
        ("right", "key.keyboard.d"), ("jump", "key.keyboard.space"), ("sneak", "key.keyboard.left.shift"),
        ("sprint", "key.keyboard.left.control"), ("drop", "key.keyboard.q"),
        ("inventory", "key.keyboard.e"), ("swapOffhand", "key.keyboard.f")]}
    return {"version": "2230", "autoJump": "false", "fov": "0.0", "gamma": "2.0", "guiScale": "0",
            "renderDistance": "8", "maxFps": "120", "mouseSensitivity": "0.5", "fullscreen": "false",
            "recorderVersion": s.version, **binds,
            **{f"key_key.hotbar.{n}": f"key.keyboard.{n}" for n in range(1, 10)}}


def _jsonl(lines: list[dict], trailing_newline: bool) -> bytes:
    text = "\n".join(json.dumps(line, separators=(",", ":")) for line in lines)
    return (text + ("\n" if trailing_newline else "")).encode()


def _encode(path: Path, seed: int, gui: list[bool]) -> None:
    """H.264 (libx264, yuv420p, BT.601 as swscale converts by default) in mp4 at 20 fps."""
    import av  # only the video half needs PyAV

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "23", "preset": "medium"}
        stream.codec_context.thread_count = 1  # same bytes on any machine with the same x264
        for i, g in enumerate(gui):
            frame = av.VideoFrame.from_ndarray(frame_rgb(seed, i, g), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _decoded_means(path: Path) -> list[list[float]]:
    """A sanity check of the encoder only (how far H.264 moves the means); never ground truth."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(0).tolist()
                for frame in container.decode(video=0)]


def _missing_entries(rng: random.Random) -> list[tuple[str, Script, tuple[str, ...]]]:
    """Index entries whose upload was (partly) lost: listed in the index, files absent."""
    gone = Script("hazy-cobalt-lynx", "7.6", "20220412-103003", [], hotbar0=0)
    walk = [Tick(press=("forward",)), Tick(dx=4.0), Tick(), Tick(release=("forward",)), Tick(), Tick()]
    partial = Script("dapper-coral-stoat", "6.13", "20220117-190542", walk, hotbar0=2, seed=5)
    return [(f"{gone.version}/{gone.alias}-{_session_hex(rng)}-{gone.start}", gone, ("video", "actions", "options")),
            (f"{partial.version}/{partial.alias}-{_session_hex(rng)}-{partial.start}", partial, ("video",))]


def write_fixture(out: Path, videos: bool = True) -> dict:
    """Write the whole fixture under `out`; returns the ground truth it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    built = build_recordings()
    missing = _missing_entries(random.Random(777))
    for b in built:
        folder = out / "data" / b.script.version
        folder.mkdir(parents=True, exist_ok=True)
        stem = b.relpath.split("/")[1]
        (folder / f"{stem}.jsonl").write_bytes(_jsonl(b.lines, b.script.trailing_newline))
        (folder / f"{stem}-options.json").write_text(json.dumps(_options(b.script), indent=1) + "\n")
        if videos:
            _encode(folder / f"{stem}.mp4", b.script.seed, b.gui)
    for relpath, s, absent in missing:
        folder = out / "data" / s.version
        stem = relpath.split("/")[1]
        if "actions" not in absent:
            lines, _, _ = _game_state_lines(s, random.Random(s.seed))
            (folder / f"{stem}.jsonl").write_bytes(_jsonl(lines, True))
        if "options" not in absent:
            (folder / f"{stem}-options.json").write_text(json.dumps(_options(s), indent=1) + "\n")
    relpaths = [b.relpath for b in built] + [m[0] for m in missing]
    relpaths.sort()
    index = {"basedir": "data/", "relpaths": relpaths}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    truth = {
        "generator": "tools/fixture-gen/vpt_recordings.py",
        "legend": LEGEND, "camera_deg_per_pixel": CAMERA_DEG_PER_PIXEL, "buttons": BUTTONS,
        "index": {"file": "index.json", "basedir_resolves_against": "the index file's folder",
                  "relpaths": relpaths, "missing": {m[0]: sorted(m[2]) for m in missing},
                  "present": [b.relpath for b in built]},
        "folders": {f"data/{v}": {
            "recordings": sorted(b.relpath for b in built if b.script.version == v),
            "jsonl_without_video": sorted(m[0] for m in missing if m[1].version == v and "actions" not in m[2])}
            for v in sorted({b.script.version for b in built})},
        "recordings": {b.relpath: b.truth for b in built},
    }
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--text-only", action="store_true", help="skip the mp4 files")
    args = ap.parse_args()
    truth = write_fixture(args.out, videos=not args.text_only)
    if args.text_only:
        return
    for rec in truth["recordings"].values():
        got = _decoded_means(args.out / rec["files"]["video"])
        diff = np.abs(np.array(got) - np.array(rec["frame_mean_rgb"])).max() if len(got) == rec["frames"] else None
        print(f"{rec['relpath']}: {len(got)} decoded frames of {rec['frames']}, max |mean diff| = {diff:.3f}")


if __name__ == "__main__":
    main()

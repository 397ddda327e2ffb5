"""The shared PyAV decoding of sources/video.py as the LeRobot and VPT readers use it: the frame
memory reused between episodes (FrameArena) never overwrites what a consumer still holds,
VideoReader.steps (VPT's forward pass), decoder threads giving the same pixels, and a LeRobot
dataset read through the hf:// code path.

The hub cannot be reached from the test machine, so the hf:// test registers a stand-in for the
``hf`` fsspec protocol: a local folder served with Hugging Face's path layout
(``datasets/OWNER/NAME/...``, bare paths without the protocol, as ``HfFileSystem`` returns them).
What it checks is our side of hf://: the scheme table, the repo id taken from the URI, the
listing of episode files given their scheme back, and video decoded from a file object."""

from __future__ import annotations

import pickle
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from trajcorpus.schemas.episode import Episode
from trajcorpus.sources import open_source
from trajcorpus.sources import video as video_mod
from trajcorpus.sources.video import FrameArena, VideoError, open_video

FIXTURES = Path(__file__).parent / "fixtures"
LEROBOT = FIXTURES / "lerobot" / "v30_av1" / "dataset"
FRONT = LEROBOT / "videos/observation.images.front/chunk-000/file-000.mp4"
VPT = FIXTURES / "vpt" / "data"
GUI_REC = VPT / "8.0" / "quiet-linen-heron-879997e26d5f-20220315-122354"


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


# -- FrameArena --------------------------------------------------------------------------------

def test_arena_reuses_memory_only_once_nothing_refers_to_it():
    arena = FrameArena()
    a = arena.take((4, 2, 3, 3))
    a[:] = 7
    first = address(a)
    b = arena.take((4, 2, 3, 3))  # a is alive: new memory
    b[:] = 9
    assert address(b) != first and (a == 7).all()
    row = a[1]  # a view keeps a's memory in use after a itself is gone
    del a
    c = arena.take((4, 2, 3, 3))
    c[:] = 5
    reusable = {address(b), address(c)}
    assert first not in reusable and (row == 7).all() and (b == 9).all()
    del row, b, c
    d = arena.take((2, 2, 3, 3))  # everything let go: kept memory, no new pages
    assert address(d) in reusable and len(arena._buffers) == 2


def test_arena_keeps_at_most_its_slots_and_grows_for_a_longer_episode():
    arena = FrameArena(slots=2)
    held = [arena.take((10, 4)) for _ in range(3)]
    for i, h in enumerate(held):
        h[:] = i
    assert len(arena._buffers) == 2  # the oldest is forgotten, not overwritten
    assert [int(h.mean()) for h in held] == [0, 1, 2]
    kept = {address(h) for h in held[1:]}
    del held
    small = arena.take((10, 4))
    assert address(small) in kept
    del small
    big = arena.take((1000, 4))  # larger than any kept buffer: new memory, the slot replaced
    big[:] = 3
    assert big.shape == (1000, 4) and len(arena._buffers) == 2
    assert max(len(m) for m in arena._buffers) >= 4000


def test_arena_pickles_without_its_memory_and_clears():
    arena = FrameArena(slots=3)
    x = arena.take((100,))
    copy = pickle.loads(pickle.dumps(arena))
    assert copy.slots == 3 and copy._buffers == []
    x[:] = 1
    arena.clear()
    assert arena._buffers == [] and (x == 1).all()  # handed-out arrays stay valid


def test_arena_is_safe_from_several_threads():
    class Slow(FrameArena):
        def _unshared(self, i: int) -> bool:
            free = super()._unshared(i)
            time.sleep(0.0005)  # let other threads in between checking a buffer and taking it
            return free

    arena = Slow(slots=2)
    bad: list[str] = []

    def work(k: int) -> None:
        for _ in range(40):
            a = arena.take((64,))
            a[:] = k
            time.sleep(0.0005)
            if not (a == k).all():
                bad.append(f"thread {k} saw {sorted(set(a.tolist()))}")
            del a

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


# -- VideoReader.steps and decoder threads -----------------------------------------------------

def test_steps_keeps_resizes_and_edits_before_resizing():
    path = str(GUI_REC) + ".mp4"
    with open_video(path) as video:
        every, n = video.steps(12, np.ones(12, bool))
        assert n == 12 and every.shape == (12, 360, 640, 3)
        keep = np.zeros(12, bool)
        keep[[0, 3, 11]] = True
        some, _ = video.steps(12, keep)  # a reused reader starts again at frame 0
        assert np.array_equal(some, every[[0, 3, 11]])

        def paint(img: np.ndarray) -> None:
            img[:180] = 255  # the top half white, at the decoded size

        small, _ = video.steps(12, keep, size=(36, 64), edits={3: paint})
        same, _ = video.steps(12, keep, size=(36, 64), edits={3: lambda img: None})
        plain, _ = video.steps(12, keep, size=(36, 64))
    assert small.shape == (3, 36, 64, 3)
    assert np.array_equal(small[[0, 2]], plain[[0, 2]])
    assert (small[1, :16] == 255).all() and not (same[1, :16] == 255).all()
    assert np.array_equal(small[1, 20:], same[1, 20:])  # drawn before the resize: only the top


class _Failing:
    """A container whose decoding fails after ``after`` frames with ``error``."""

    def __init__(self, real, after: int, error: Exception):
        self.real, self.after, self.error = real, after, error

    def decode(self, stream):
        for i, frame in enumerate(self.real.decode(stream)):
            if i == self.after:
                raise self.error
            yield frame

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_steps_reports_a_short_video_and_a_failing_one():
    import av

    path = str(GUI_REC) + ".mp4"
    with open_video(path) as video:
        total = video.steps(10**6, np.zeros(10**6, bool))[1]
        frames, n = video.steps(total + 5, np.ones(total + 5, bool))
    assert n == total and len(frames) == total  # the caller words "shorter than its jsonl"
    for error, words in [
            (av.error.InvalidDataError(1094995529, "Invalid data found when processing input"),
             "cannot decode the video at frame 3: Invalid data found when processing input"),
            (OSError("connection reset by peer"),
             "cannot read the video at frame 3: connection reset by peer")]:
        with open_video(path) as video:
            video._container = _Failing(video._container, 3, error)
            with pytest.raises(VideoError) as e:
                video.steps(total, np.ones(total, bool))
        assert str(e.value) == f"{path}: {words}"


def test_decoder_threads_give_the_same_pixels():
    path = str(GUI_REC) + ".mp4"
    keep = np.ones(30, bool)
    with open_video(path) as one, open_video(path, threads=True) as many:
        assert many._stream.thread_type.name == "AUTO" and one._stream.thread_type.name != "AUTO"
        assert np.array_equal(one.steps(30, keep)[0], many.steps(30, keep)[0])
    times = np.arange(20) / 30
    with open_video(str(FRONT)) as one, open_video(str(FRONT), threads=True) as many:
        assert np.array_equal(one.frames_at(times, 0.5 / 30)[0], many.frames_at(times, 0.5 / 30)[0])


@pytest.mark.parametrize("kind, uri, default", [("lerobot", LEROBOT, False),
                                                ("vpt", GUI_REC.parent, True)])
def test_the_decoder_threads_option_reaches_the_decoder(monkeypatch, kind, uri, default):
    seen: list[bool] = []
    real = video_mod.open_video

    def spy(path: str, threads: bool = False):
        seen.append(threads)
        return real(path, threads)

    monkeypatch.setattr(video_mod, "open_video", spy)
    monkeypatch.setattr(f"trajcorpus.sources.{kind}.open_video", spy, raising=False)
    for option in (None, not default):
        seen.clear()
        options = {} if option is None else {"decoder_threads": option}
        src = open_source(kind, str(uri), options=options)
        assert all(isinstance(e, Episode) for e in src.read_unit(src.units()[0]))
        assert seen and set(seen) == {default if option is None else option}


# -- the readers reuse frame memory between episodes -------------------------------------------

def count_allocations(monkeypatch) -> list[int]:
    """Sizes of the frame buffers the readers ask the kernel for, in order."""
    sizes: list[int] = []
    real = video_mod._memory

    def counted(n: int):
        sizes.append(n)
        return real(n)

    monkeypatch.setattr(video_mod, "_memory", counted)
    return sizes


def test_lerobot_reuses_frame_memory_within_a_unit_when_episodes_are_let_go(monkeypatch):
    src = open_source("lerobot", str(LEROBOT))
    (unit,) = src.units()
    sizes = count_allocations(monkeypatch)
    kept = list(src.read_unit(unit))  # held: every episode of both cameras its own memory
    assert len(sizes) == 6
    sums = []
    for _ in range(2):
        sizes.clear()
        for ep in src.read_unit(unit):
            sums.append(ep.observations["images.front"].astype(np.int64).sum())
            del ep
        # per camera: episode 0 (24 frames) new, episode 1 (40) new as 0's is too small,
        # episode 2 (17) in 1's; the second pass starts afresh (nothing kept between units)
        assert len(sizes) == 4
    want = [e.observations["images.front"].astype(np.int64).sum() for e in kept]
    assert sums == want * 2


def test_vpt_reuses_frame_memory_from_one_recording_to_the_next(monkeypatch):
    src = open_source("vpt", str(FIXTURES / "vpt" / "index.json"),
                      options={"missing_hotbar": "skip_fix", "frame_size": [32, 32]})
    units = src.units()
    sizes = count_allocations(monkeypatch)
    kept = [e for u in units for e in src.read_unit(u) if isinstance(e, Episode)]
    assert len(kept) == 4 and len(sizes) == 4
    sums = []
    # recordings in unit order 6.13, 6.9, 7.6, 8.0 (15, 11, 26, 18 kept steps): 15 in new memory,
    # 11 in its, 26 in new memory (15's is too small), 18 in 26's; the next pass needs none
    for n_new in (2, 0):
        sizes.clear()
        for u in units:
            for ep in src.read_unit(u):
                if isinstance(ep, Episode):
                    sums.append(int(ep.observations["image"].astype(np.int64).sum()))
                del ep
        assert len(sizes) == n_new
    assert sums == [int(e.observations["image"].astype(np.int64).sum()) for e in kept] * 2


# -- hf:// --------------------------------------------------------------------------------------

def test_lerobot_reads_through_the_hf_scheme(monkeypatch, tmp_path):
    import importlib

    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    hub = tmp_path / "hub"
    shutil.copytree(LEROBOT, hub / "datasets" / "someone" / "so100-cubes")

    class StandIn(DirFileSystem):
        """hf:// served from ``hub`` (``datasets/OWNER/NAME/...``), as HfFileSystem lays it out."""

        protocol = "hf"

        def __init__(self, **kwargs):
            super().__init__(path=str(hub), fs=LocalFileSystem(), **kwargs)

    registry = importlib.import_module("fsspec.registry")._registry  # `fsspec.registry` is a view
    monkeypatch.setitem(registry, "hf", StandIn)
    remote = list(open_source("lerobot", "hf://datasets/someone/so100-cubes").episodes())
    local = list(open_source("lerobot", str(LEROBOT)).episodes())
    assert [e.episode_id for e in remote] == [e.episode_id for e in local]
    for a, b in zip(remote, local, strict=True):
        assert a.task == "someone/so100-cubes" and b.task == "dataset"
        assert a.source["uri"].startswith("hf://datasets/someone/so100-cubes/data/")
        assert all(v.startswith("hf://") for v in a.source["videos"].values())
        for k in b.observations:
            assert np.array_equal(a.observations[k], b.observations[k]), k
    assert open_source("lerobot", "hf://datasets/someone/so100-cubes@v3.0/").repo_id == \
        "someone/so100-cubes"  # a revision does not name another repo

"""DQN Replay unit listing and naming: the order of runs and checkpoint suffixes (found by
mutation testing: docs/mutation-testing.md). Units are listed from file names alone, so the runs
here are empty files under the names Dopamine writes; the truth is the natural order of the
names written."""

from __future__ import annotations

from pathlib import Path

from trajcorpus.sources.dqn_replay import DqnReplaySource


def touch_run(root: Path, game: str, run: str, suffixes: tuple[int, ...]) -> None:
    logs = root / game / run / "replay_logs"
    logs.mkdir(parents=True)
    for sx in suffixes:
        for name in ("$store$_observation", "$store$_action", "add_count"):
            (logs / f"{name}_ckpt.{sx}.gz").write_bytes(b"")


def test_runs_and_suffixes_in_natural_order(tmp_path):
    for run in ("10", "2", "b", "a", "007"):
        touch_run(tmp_path, "Breakout", run, (10, 2, 0))
    (tmp_path / "Breakout" / "notes").mkdir()  # not a run: no replay_logs
    units = DqnReplaySource(str(tmp_path / "Breakout")).units()
    assert [u.key for u in units] == [f"Breakout/{r}/ckpt.{s}" for r in ("2", "007", "10", "a",
                                                                        "b")
                                      for s in (0, 2, 10)]
    assert [u.index for u in units] == list(range(15))
    assert units[0].param("suffixes") == (0, 2, 10) and units[4].param("suffix") == 2
    assert units[4].param("task") == "Breakout" and units[4].param("run") == "007"
    assert all(u.uri.endswith(f"Breakout/{u.param('run')}/replay_logs") for u in units)


def test_a_game_folder_named_with_a_trailing_slash_or_relatively(tmp_path, monkeypatch):
    touch_run(tmp_path, "BreakoutX", "1", (0,))
    keys = [u.key for u in DqnReplaySource(f"{tmp_path}/BreakoutX/").units()]
    assert keys == ["BreakoutX/1/ckpt.0"]
    monkeypatch.chdir(tmp_path)
    assert [u.key for u in DqnReplaySource("BreakoutX").units()] == keys

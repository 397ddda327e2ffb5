"""DQN Replay discovery: which games and runs a uri names, and their names, for every uri form
(found by mutation testing: docs/mutation-testing.md). Units are listed from file names alone,
so the runs are empty files under the names Dopamine writes; the truth is the tree written."""

from __future__ import annotations

import pytest

from test_source_dqn_units import touch_run
from trajcorpus.errors import SourceError
from trajcorpus.sources.dqn_replay import DqnReplaySource


@pytest.fixture
def root(tmp_path):
    for game, run in (("Pong", "10"), ("Pong", "2"), ("Breakout", "1")):
        touch_run(tmp_path, game, run, (0, 1))
    (tmp_path / "Pong" / "notes").mkdir()  # a folder that is no run
    (tmp_path / "empty").mkdir()  # a folder that is no game
    (tmp_path / "README").write_text("not a game")
    return tmp_path


def runs(uri, **options) -> list[tuple[str, str, str, int]]:
    """(game, run, replay_logs uri, suffix) of every unit."""
    return [(u.param("game"), u.param("run"), u.uri, u.param("suffix"))
            for u in DqnReplaySource(str(uri), options=options).units()]


def test_a_root_lists_its_games_and_their_runs(root):
    want = [("Breakout", "1", f"{root}/Breakout/1/replay_logs", s) for s in (0, 1)] + [
        ("Pong", r, f"{root}/Pong/{r}/replay_logs", s) for r in ("2", "10") for s in (0, 1)]
    assert runs(root) == want
    assert runs(f"{root}/") == want
    assert runs(root, games=["Pong"]) == want[2:]
    assert runs(root, games=["Pong"], runs=["10", "2"]) == want[2:]
    assert runs(root, games=["Pong", "Breakout"]) == want[2:] + want[:2]  # in the order given


@pytest.mark.parametrize("options, where, why", [
    ({"games": ["Seaquest"]}, "Seaquest", "game 'Seaquest' (from options.games) not found"),
    ({"games": ["Pong"], "runs": ["9"]}, "Pong/9/replay_logs",
     "run '9' (from options.runs) not found"),
])
def test_a_game_or_run_named_in_the_options_that_is_not_there(root, options, where, why):
    with pytest.raises(SourceError) as err:
        DqnReplaySource(str(root), options=options).units()
    assert str(err.value) == f"{root}/{where}: {why}"


def test_a_game_folder(root):
    assert runs(root / "Pong") == [("Pong", r, f"{root}/Pong/{r}/replay_logs", s)
                                   for r in ("2", "10") for s in (0, 1)]
    assert runs(root / "Pong", runs=["10"]) == [
        ("Pong", "10", f"{root}/Pong/10/replay_logs", s) for s in (0, 1)]
    with pytest.raises(SourceError) as err:
        runs(root / "Pong", runs=["3"])
    assert str(err.value) == f"{root}/Pong/3/replay_logs: run '3' (from options.runs) not found"


@pytest.mark.parametrize("form", ["run", "run/", "replay_logs", "replay_logs/"])
def test_a_run_or_replay_logs_folder(root, form):
    uri = f"{root}/Pong/10" + {"run": "", "run/": "/", "replay_logs": "/replay_logs",
                               "replay_logs/": "/replay_logs/"}[form]
    got = runs(uri)
    assert [(g, r, s) for g, r, _, s in got] == [("Pong", "10", 0), ("Pong", "10", 1)]
    assert {u.rstrip("/") for _, _, u, _ in got} == {f"{root}/Pong/10/replay_logs"}
    assert DqnReplaySource.is_single_dataset(uri)


@pytest.mark.parametrize("cwd, uri, game, run", [
    ("Pong", "10", "game", "10"),
    (".", "Pong/10", "Pong", "10"),
    ("Pong/10", "replay_logs", "game", "run"),
    ("Pong", "10/replay_logs", "game", "10"),
    (".", "Pong/10/replay_logs", "Pong", "10"),
])
def test_relative_uris_name_what_they_can(root, monkeypatch, cwd, uri, game, run):
    """A relative uri too short to hold GAME/RUN names the parts it lacks "game" and "run"."""
    monkeypatch.chdir(root / cwd)
    assert [(g, r) for g, r, _, _ in runs(uri)] == [(game, run)] * 2


def test_what_is_a_single_dataset(root):
    assert not DqnReplaySource.is_single_dataset(str(root))
    assert not DqnReplaySource.is_single_dataset(str(root / "Pong"))
    assert DqnReplaySource.is_single_dataset(f"{root}/Seaquest/1/replay_logs/")  # by its name


@pytest.mark.parametrize("name", ["README", "missing"])
def test_not_a_folder(root, name):
    with pytest.raises(SourceError) as err:
        runs(root / name)
    assert str(err.value) == (f"{root}/{name}: not a folder (expected ROOT, GAME/RUN or "
                              "replay_logs)")


def test_the_task_of_a_unit_uses_every_template_field(root):
    src = DqnReplaySource(str(root / "Pong"), task_template="{game}-{run}-{agent}-{task}")
    assert [u.param("task") for u in src.units()] == ["Pong-2-2-Pong"] * 2 + ["Pong-10-10-Pong"] * 2


def test_no_checkpoints(root):
    with pytest.raises(SourceError) as err:
        runs(root / "empty")
    assert str(err.value) == (f"{root}/empty: no DQN replay checkpoints found (expected GAME/RUN/"
                              "replay_logs/$store$_observation_ckpt.N.gz and its siblings)")


@pytest.mark.parametrize("run", ["RX", "r "])
def test_a_run_folder_named_with_a_trailing_x_or_blank(tmp_path, run):
    touch_run(tmp_path, "PongX", run, (0,))
    assert runs(tmp_path / "PongX" / run) == [
        ("PongX", run, f"{tmp_path}/PongX/{run}/replay_logs", 0)]
    assert not DqnReplaySource.is_single_dataset(f"{tmp_path}/PongX/{run}/replay_logsX")


@pytest.mark.parametrize("logs", ["X", " "])
def test_a_folder_of_checkpoint_files_named_x_or_blank(tmp_path, logs):
    """A folder holding the checkpoint files, whatever its name: GAME and RUN are the two
    folders above it."""
    folder = tmp_path / "Pong" / "7" / logs
    folder.mkdir(parents=True)
    for name in ("$store$_observation", "$store$_action", "add_count"):
        (folder / f"{name}_ckpt.0.gz").write_bytes(b"")
    assert runs(folder) == [("Pong", "7", str(folder), 0)]

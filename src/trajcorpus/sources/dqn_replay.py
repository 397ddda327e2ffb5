"""DQN Replay Dataset reader (Agarwal et al. 2020): Dopamine replay logs -> whole episodes.

Layout: ``ROOT/GAME/RUN/replay_logs/`` with, per checkpoint suffix N, six gzip files that each hold
one ``np.save`` payload: ``$store$_{observation,action,reward,terminal}_ckpt.N.gz``,
``add_count_ckpt.N.gz`` and ``invalid_range_ckpt.N.gz``. A suffix is one dump of Dopamine's
circular buffer (capacity C), written by batch_rl whenever ``add_count % C == C - 1`` and once more
at the end of training with ``add_count`` replaced by the write cursor.

How the files map onto the stream of Dopamine ``add`` calls (the facts this reader relies on;
``tests/fixtures/atari_dqn_replay/PROVENANCE.md`` has the evidence):

* ``add_count >= C``: every slot is valid, in time order from ``cursor = add_count % C`` (slot C-1
  for regular logs, then 0 .. C-2); the slots hold adds ``[add_count - C, add_count)``, so regular
  logs tile the add stream without gap or overlap.
* ``add_count < C``: slots ``[0, add_count)`` are valid. For the first suffix they hold adds
  ``[0, add_count)``. For the final suffix ``add_count`` is the cursor and the slots hold the pass
  that follows the previous log; slots at or after the cursor still hold older, duplicate data,
  except slot C-1, which holds the one add right after the previous log that no suffix declares.
  It is recovered (put back in front of slot 0) when that is provably safe, see
  :meth:`_Run.layout`; otherwise the episode across it is rejected, never silently cut.
* Every episode is preceded by 3 all-zero padding transitions (stack_size - 1); slot i holds the
  frame in which action i was taken, its clipped reward and terminal flag; the last slot of an
  episode has terminal = 1. ``invalid_range`` is only Dopamine's sampling exclusion zone around the
  cursor, never an episode boundary (it is checked against ``add_count`` for consistency only).
* Newer Dopamine also writes a pickled ``episode_end_indices`` file: it is never opened.

Records: task = game, agent = run (template fields task, agent, game, run); episode_id =
``GAME/RUN/ckptN/SLOT`` of the first real transition; order = (N, its place among N's declared
slots in time order, -1 for a recovered slot); source = the replay_logs uri and one segment
(checkpoint, first/last slot, count) per checkpoint crossed. An episode exactly
``max_steps_per_episode`` long is marked truncated (Dopamine stores terminal=1 at the step cap too).

Units are checkpoints; an episode is yielded by the unit where it starts, reading the leading part
of the next checkpoint(s) to finish it. Within a unit, episodes come out in file order (as their
frames complete), which differs from ``order`` only for an episode that wraps around slot C-1.
An episode whose start is not in the data (first checkpoint present is not suffix 0, or a gap)
or that has no terminal before the end of the data is yielded as a Rejected, reported once. Observation files (C x 84 x 84 bytes, 7 GB for C = 10^6)
are streamed out of the gzip with bounded memory: only the frames of the episodes being assembled
are held. Frames needed from another checkpoint's slot C-1 (its first slot in time) sit at the end
of that file, so stitching into a regular log decompresses that file to its end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pydantic

from .. import fs
from ..errors import SourceError
from ..schemas.episode import Episode, Rejected
from .base import Names, SourceOptions, Unit
from .dqn_runs import Run
from .families import AtariLogs
from .gzipnpy import GzipNpyStream, read_small_array
from .metadata import small_int

__all__ = ["DqnReplaySource", "GzipNpyStream", "read_small_array"]

FILE_RE = re.compile(
    r"^(?:\$store\$_(?:observation|action|reward|terminal)|add_count|invalid_range)_ckpt\.(\d{1,18})\.gz$"
)


class DqnReplayOptions(SourceOptions):
    games: Names = None  # restrict a ROOT uri to these games
    runs: Names = None  # ... and these runs
    recover_undeclared: bool = True  # put the final suffix's undeclared slot C-1 back when safe
    max_steps_per_episode: int = 27000  # Dopamine Runner cap: an episode this long was truncated
    num_actions: int = 18  # ALE full action set: actions must lie in [0, num_actions)
    observation_shape: tuple[int, int] = (84, 84)

    @pydantic.field_validator("observation_shape")
    @classmethod
    def _positive(cls, shape: tuple[int, int]) -> tuple[int, int]:
        if min(shape) < 1:
            raise ValueError(f"must be [H, W] with positive sides, got {list(shape)}")
        return shape


# -------------------------------------------------------------------------------------------------
# The Source
# -------------------------------------------------------------------------------------------------
def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _natural(name: str) -> tuple[int, str]:
    n = small_int(name)
    return (n, "") if n is not None else (1 << 62, name)


class DqnReplaySource(AtariLogs):
    """``dqn-replay``: task = game, agent = run; one unit per (game, run, checkpoint suffix)."""

    kind = "dqn-replay"
    description = ("DQN Replay Dataset logs written by Dopamine: per checkpoint, gzip-compressed "
                   "NumPy arrays (`$store$_observation_ckpt.N.gz`, actions, rewards, terminals)")
    Options = DqnReplayOptions

    @classmethod
    def is_single_dataset(cls, uri: str) -> bool:
        """A GAME/RUN or replay_logs folder."""
        return uri.rstrip("/").endswith("/replay_logs") or fs.exists(fs.join(uri, "replay_logs"))

    # -- discovery ---------------------------------------------------------------------------------
    def _isdir(self, uri: str) -> bool:
        return fs.filesystem(uri).isdir(fs.strip_scheme(uri))

    def _listdir(self, uri: str) -> list[str]:
        try:
            return fs.listdir(uri)
        except FileNotFoundError:
            raise SourceError(uri, "no such folder") from None

    def _runs(self) -> list[tuple[str, str, str]]:
        """(game, run, replay_logs uri) for the uri: a ROOT, a GAME, a GAME/RUN or a replay_logs."""
        uri = self.uri
        if not self._isdir(uri):
            raise SourceError(uri, "not a folder (expected ROOT, GAME/RUN or replay_logs)")
        paths = self._listdir(uri)
        names = [_name(p) for p in paths]
        if any(FILE_RE.match(n) for n in names):
            parts = uri.rstrip("/").split("/")
            return [(parts[-3] if len(parts) >= 3 else "game", parts[-2] if len(parts) >= 2
                     else "run", uri)]
        if "replay_logs" in names:
            parts = uri.rstrip("/").split("/")
            return [(parts[-2] if len(parts) >= 2 else "game", parts[-1],
                     fs.join(uri, "replay_logs"))]
        out: list[tuple[str, str, str]] = []
        games = self.opts.games
        if games is None:
            if self._is_game_dir(uri):
                return self._game_runs(_name(uri), uri)
            games = sorted(_name(p) for p in paths if self._isdir(p))
        for game in games:
            out.extend(self._game_runs(str(game), fs.join(uri, str(game)), explicit=True))
        return out

    def _is_game_dir(self, uri: str) -> bool:
        return any(fs.exists(fs.join(p, "replay_logs")) for p in self._listdir(uri)
                   if self._isdir(p))

    def _game_runs(self, game: str, game_uri: str, explicit: bool = False
                   ) -> list[tuple[str, str, str]]:
        runs = self.opts.runs
        if explicit and self.opts.games is not None and not fs.exists(game_uri):
            raise SourceError(game_uri, f"game {game!r} (from options.games) not found")
        if runs is None:
            names = [_name(p) for p in self._listdir(game_uri) if self._isdir(p)]
            runs = [r for r in names if fs.exists(fs.join(game_uri, r, "replay_logs"))]
        out = []
        for run in sorted((str(r) for r in runs), key=_natural):
            logs = fs.join(game_uri, run, "replay_logs")
            if self.opts.runs is not None and not fs.exists(logs):
                raise SourceError(logs, f"run {run!r} (from options.runs) not found")
            out.append((game, run, logs))
        return out

    def _suffixes(self, logs: str) -> list[int]:
        found = {int(m.group(1)) for m in (FILE_RE.match(_name(p)) for p in self._listdir(logs))
                 if m}
        return sorted(found)

    # -- the contract ------------------------------------------------------------------------------
    def units(self) -> list[Unit]:
        units: list[Unit] = []
        for game, run, logs in self._runs():
            suffixes = tuple(self._suffixes(logs))
            task = self.task_name(task=game, agent=run, game=game, run=run)
            for sx in suffixes:
                units.append(Unit(key=f"{game}/{run}/ckpt.{sx}", uri=logs, index=len(units),
                                  params=(("game", game), ("run", run), ("suffix", sx),
                                          ("suffixes", suffixes), ("task", task))))
        if not units:
            raise SourceError(self.uri, "no DQN replay checkpoints found (expected GAME/RUN/"
                              "replay_logs/$store$_observation_ckpt.N.gz and its siblings)")
        return units

    def unit_inputs(self, unit: Unit) -> tuple[str, ...]:
        """The run's replay_logs folder: a checkpoint is read with its neighbours' files."""
        return (unit.uri,)

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        run = Run(self, unit.uri, unit.param("game"), unit.param("run"), unit.param("suffixes"))
        yield from run.read(int(unit.param("suffix")))

"""How the job runs: Beam options (the job's own flags beside Beam's), the runner for each name
(DirectRunner pinned to the FnApiRunner, Dataflow, Dask), and the driver's quieter logs and
one-line errors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from ..errors import TrajcorpusError
from ..shards.layout import MIN_SHARD_BYTES, MIN_SHARDS
from .buildcache import CACHE_DIR_HELP
from .stages import JobSpec

__all__ = ["DEFAULT_SHARD_BYTES", "DEFAULT_MIN_SHARDS", "TrajcorpusOptions", "default_workers",
           "pipeline_options",
           "limit_malloc_arenas", "make_runner", "root_cause", "graph_names", "quiet_beam_logs"]

DEFAULT_SHARD_BYTES = 256 * 1024 * 1024
DEFAULT_MIN_SHARDS = MIN_SHARDS


class TrajcorpusOptions(PipelineOptions):
    """Job settings that are not catalog settings (pass them like Beam flags)."""

    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--shard_bytes", type=int, default=DEFAULT_SHARD_BYTES,
                            help="target encoded bytes per shard (default 256 MiB)")
        parser.add_argument("--min_shards", type=int, default=DEFAULT_MIN_SHARDS,
                            help="at least this many shards per split while each keeps "
                            f"{MIN_SHARD_BYTES >> 20} MiB (default {DEFAULT_MIN_SHARDS}; 1 = by --shard_bytes only)")
        parser.add_argument("--cache_dir", default="", help=CACHE_DIR_HELP)


def _has_flag(args: Sequence[str], name: str) -> bool:
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in args)


def default_workers(units: int | None) -> int:
    """Local worker processes (DirectRunner, the Dask runner's own cluster): one per core, but no
    more than the job's units when they are known."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, units or cores))


def pipeline_options(runner: str, beam_args: Sequence[str],
                     units: int | None = None) -> PipelineOptions:
    """Beam options for ``runner``. The DirectRunner defaults to one worker process per core,
    but no more than the job's ``units`` (when known): a worker without a unit to read only
    costs its start-up (~4 CPU s, importing Beam and the readers), and a one-unit job runs in
    this process (``in_memory``). A flag the user gave always wins."""
    args = list(beam_args)
    if runner == "DirectRunner":
        ours = not _has_flag(args, "direct_num_workers")  # the worker count is ours to choose
        if ours:
            args.append(f"--direct_num_workers={default_workers(units)}")
        if not _has_flag(args, "direct_running_mode"):
            one_unit = ours and units is not None and units <= 1
            args.append(f"--direct_running_mode={'in_memory' if one_unit else 'multi_processing'}")
    elif runner == "DataflowRunner":
        args.append("--runner=DataflowRunner")
    elif runner != "DaskRunner":
        raise TrajcorpusError("--runner", f"unknown runner {runner!r} "
                              "(DirectRunner, DataflowRunner or DaskRunner)")
    return PipelineOptions(args)


MALLOC_ARENAS = "2"


def limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at 2 per process, for the driver and the local workers.

    Why: glibc gives each thread that allocates concurrently its own arena (up to 8 per core) and
    rarely returns their free pages; Beam's runner and workers are gRPC processes with dozens of
    threads, so their resident memory grew with the data that passed through them, not with
    what they held (measured on 1M Atari transitions, bench/pipeline.py: peak RSS growth 250k ->
    1M 1.38x without the cap, 1.27x with it, at the same speed). Workers inherit the setting
    through the environment; the driver, already running, sets it with ``mallopt``. A value the
    user exported is kept; elsewhere than glibc this does nothing.
    """
    os.environ.setdefault("MALLOC_ARENA_MAX", MALLOC_ARENAS)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, int(os.environ["MALLOC_ARENA_MAX"]))  # -8 = M_ARENA_MAX
    except (OSError, AttributeError, ValueError):
        pass


def make_runner(runner: str, spec: JobSpec | None = None) -> Any:
    """The DirectRunner is pinned to Beam's FnApiRunner: Beam 2.77's DirectRunner would first try
    the Prism runner, which downloads a Go binary (impossible offline). The DaskRunner is Beam's
    with the fixes of :mod:`.dask_runner`: one partition per unit, a spill folder every worker
    must see."""
    if runner == "DirectRunner":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        limit_malloc_arenas()  # before the runner starts its worker processes

        return FnApiRunner()
    if runner == "DaskRunner":
        from .dask_runner import JobDaskRunner

        return JobDaskRunner(spec.num_units if spec else None, spec.tmp if spec else None)
    return None  # taken from --runner


def root_cause(e: BaseException) -> str:
    """The most useful line of a runner's error: our own error's message when there is one."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    ours = [ln for ln in lines if "trajcorpus.errors." in ln]
    if ours:
        return ours[-1].split("trajcorpus.errors.", 1)[1]
    return lines[-1] if lines else type(e).__name__


def graph_names(result: Any) -> list[str]:
    """Transform names of the job a dry run built (the Dataflow job's pipeline proto)."""
    proto = getattr(getattr(result, "job", None), "proto_pipeline", None)
    if proto is None:
        return []
    return sorted(t.unique_name for t in proto.components.transforms.values())


def quiet_beam_logs() -> None:
    """Keep the terminal for progress lines: Beam's info chatter and the local workers'
    start-up warnings are hidden; errors still show."""
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


"""Beam's DaskRunner, made faithful for this job: tagged outputs, side inputs and fan-out.

Beam 2.77's ``apache_beam.runners.dask`` translates a pipeline into ``dask.bag`` operations, but
three of its habits break or slow this job (see docs/running-on-dask.md for the references):

* ``ParDo.with_outputs`` puts the main and every tagged output into one bag
  (``transform_evaluator.apply_dofn_to_bundle`` returns ``[v.value for v in receivers]``), so a
  consumer of the ``summary`` output also receives the window references. Here a ParDo's bag
  holds ``(tag, value)`` pairs and each consumer keeps its own tag.
* A side input is a lazy bag that every consuming task computes again, with a nested
  ``compute()`` inside the worker (``DaskBagWindowedIterator.__iter__``); the expensive read ran
  once per consuming partition, and nested computes on single-threaded workers can deadlock.
  Here side inputs are computed once, on the client, as the graph is built: the bags still needed
  downstream are first persisted on the cluster (so nothing upstream runs twice), then the small
  side-input collection is gathered and shipped inside the consuming tasks.
* ``Create`` makes partitions of at least 128 elements, so a job of fewer units ran in one task
  on one worker. Here the job passes its unit count: one partition per unit by default
  (``--dask_npartitions`` / ``--dask_partition_size`` still override).

Without ``--dask_client_address`` (or ``--dask_scheduler_file``) a local cluster of one
single-threaded worker process per core is started for the run and stopped afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import uuid
from collections import Counter
from typing import Any

from apache_beam import DoFn, pvalue
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import (
    DoFnContext,
    DoFnInvoker,
    DoFnSignature,
    Receiver,
    _OutputHandler,
)
from apache_beam.runners.dask import transform_evaluator as te
from apache_beam.runners.dask.dask_runner import DaskOptions, DaskRunner, DaskRunnerResult
from apache_beam.runners.dask.overrides import dask_overrides
from apache_beam.transforms.sideinputs import SideInputMap
from distributed.diagnostics.plugin import WorkerPlugin

from .. import fs
from ..errors import TrajcorpusError
from .runners import default_workers

__all__ = ["JobDaskRunner", "MallocTuning", "QUIET_WORKERS", "check_shared_path", "local_cluster"]


# --- tagged ParDo ------------------------------------------------------------------------------

class _TagReceiver(Receiver):
    """Collects a ParDo's outputs as (tag, value); ``None`` is the main output."""

    def __init__(self, tag: str | None, sink: list):
        self.tag, self.sink = tag, sink

    def receive(self, windowed_value: Any) -> None:
        self.sink.append((self.tag, windowed_value.value))


class _TagReceivers(dict):
    def __init__(self) -> None:
        super().__init__()
        self.values: list = []

    def __missing__(self, tag: str | None) -> _TagReceiver:
        self[tag] = _TagReceiver(tag, self.values)
        return self[tag]


def _run_bundle(items: Any, make_invoker: Any) -> list:
    """One partition = one bundle: setup, start, process each, finish (its outputs kept too)."""
    receivers = _TagReceivers()
    invoker = make_invoker(receivers)
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return receivers.values


@dataclasses.dataclass
class _InvokerFactory:
    """Builds the DoFn invoker inside the worker (receivers are per-bundle)."""

    fn: DoFn
    label: str
    window_fn: Any
    side_inputs: list | None
    args: list
    kwargs: dict

    def __call__(self, receivers: _TagReceivers) -> Any:
        handler = _OutputHandler(
            window_fn=self.window_fn, main_receivers=receivers[None],
            tagged_receivers=receivers, per_element_output_counter=None,
            output_batch_converter=None, process_yields_batches=False,
            process_batch_yields_elements=False)
        return DoFnInvoker.create_invoker(
            DoFnSignature(self.fn), handler, context=DoFnContext(self.label, state=None),
            side_inputs=self.side_inputs, input_args=self.args, input_kwargs=self.kwargs,
            user_state_context=None, bundle_finalizer_param=DoFn.BundleFinalizerParam())


class _TaggedParDo(te.DaskBagOp):
    def apply(self, input_bag: Any, side_inputs: Any = None) -> Any:
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main = next(iter(self.applied.main_inputs.values()))
        window_fn = main.windowing.windowfn if hasattr(main, "windowing") else None
        factory = _InvokerFactory(transform.fn, transform.label, window_fn, side_inputs,
                                  list(args), kwargs)
        return input_bag.map(te.get_windowed_value, window_fn).map_partitions(
            _run_bundle, factory)


def _has_tag(item: tuple, tag: str | None) -> bool:
    return item[0] == tag


def _value(item: tuple) -> Any:
    return item[1]


# --- graph building ----------------------------------------------------------------------------

class _Consumers(PipelineVisitor):
    """How many transforms read each PCollection (as main or side input)."""

    def __init__(self) -> None:
        self.count: Counter = Counter()

    def visit_transform(self, node: AppliedPTransform) -> None:
        for pc in node.inputs:
            if not isinstance(pc, pvalue.PBegin):
                self.count[pc] += 1
        for si in node.side_inputs:
            self.count[si.pvalue] += 1


class _GraphBuilder(PipelineVisitor):
    """Beam transforms -> dask bags; side inputs are computed as they are met (see module doc)."""

    def __init__(self, client: Any, bag_kwargs: dict, consumers: Counter):
        self.client = client
        self.bag_kwargs = bag_kwargs
        self.remaining = consumers
        self.bags: dict[AppliedPTransform, Any] = {}
        self.tagged: set[AppliedPTransform] = set()
        self.last: AppliedPTransform | None = None
        self.side_inputs_computed = 0

    def bag_of(self, pc: Any) -> Any:
        producer = pc.producer
        bag = self.bags[producer]
        if producer in self.tagged:
            return bag.filter(functools.partial(_has_tag, tag=pc.tag)).map(_value)
        return bag

    def _live(self) -> list[AppliedPTransform]:
        live = {pc.producer for pc, n in self.remaining.items() if n > 0}
        return [node for node in self.bags if node in live]

    def _side_input(self, si: Any) -> SideInputMap:
        live = self._live()
        persisted = self.client.persist([self.bags[node] for node in live],
                                       optimize_graph=False)
        self.bags.update(zip(live, persisted, strict=True))
        values = self.client.compute(self.bag_of(si.pvalue), optimize_graph=False).result()
        self.side_inputs_computed += 1
        window_fn = si._window_mapping_fn
        return SideInputMap(type(si), si._view_options(),
                            [te.get_windowed_value(v, window_fn) for v in values])

    def visit_transform(self, node: AppliedPTransform) -> None:
        op_class = te.TRANSLATIONS.get(type(node.transform), te.NoOp)
        if op_class is te.ParDo:
            op_class = _TaggedParDo
        op = op_class(node, bag_kwargs=self.bag_kwargs)
        inputs = [None if isinstance(pc, pvalue.PBegin) else self.bag_of(pc)
                  for pc in node.inputs]
        side = [self._side_input(si) for si in node.side_inputs] or None
        if len(inputs) == 1 and not isinstance(op, te.Flatten):
            bag = op.apply(inputs[0], side)
        else:
            bag = op.apply(inputs, side)
        self.bags[node] = bag
        if isinstance(op, _TaggedParDo):
            self.tagged.add(node)
        for pc in node.inputs:
            if not isinstance(pc, pvalue.PBegin):
                self.remaining[pc] -= 1
        for si in node.side_inputs:
            self.remaining[si.pvalue] -= 1
        self.last = node


# --- the runner --------------------------------------------------------------------------------

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


class MallocTuning(WorkerPlugin):
    """Undo the nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` in each worker (and in workers that
    join later, e.g. a restarted one).

    Why: setting a trim threshold also switches off glibc's dynamic mmap threshold, so every
    array over 128 KiB is mmap'ed and unmapped again, page faults included; the read stage took
    2.2x the CPU (one 62,500-slot DQN checkpoint, read + tokenize: 2.2 s vs 0.9-1.0 s, see
    docs/benchmarks.md). The values set are where the dynamic thresholds settle for large
    arrays (mmap above 32 MiB, trim above 64 MiB). Elsewhere than glibc this does nothing.
    """

    name = "trajcorpus-malloc-tuning"

    def setup(self, worker: Any) -> None:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
            libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)
        except (OSError, AttributeError):
            pass


# The worker's own bookkeeping runs on its event loop and takes the GIL from the task each time:
# these three wake it ~160 times a second and feed only the dashboard (which the local cluster
# has not) or a warning after 3 s of blocking. Measured (docs/benchmarks.md, "Pipeline on Dask"):
# they cost each worker 16-48 ms of CPU per second of wall time: 6-8% of a read task's CPU on an
# idle machine, 1.25x when a loaded one gives the task ~10% of a core (7-12 ms/s without them). A long-lived cluster of the user's keeps its own
# settings (docs/running-on-dask.md shows the same ones as environment variables).
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,  # statistical profiler, every 10 ms
    "distributed.admin.tick.interval": "500ms",  # event-loop health check, every 20 ms
    "distributed.admin.system-monitor.interval": "2s",  # host CPU/memory/IO figures, 500 ms
}


def local_cluster(n_workers: int) -> Any:
    """The run's own cluster: ``n_workers`` single-threaded worker processes, no dashboard, the
    workers' bookkeeping slowed to what a run without a dashboard needs (``QUIET_WORKERS``;
    nannies pass the config to their workers, restarted ones included)."""
    import dask
    import dask.distributed as ddist

    with dask.config.set(QUIET_WORKERS):
        return ddist.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR)


@dataclasses.dataclass
class JobDaskResult(DaskRunnerResult):
    """Waits for the job's futures, then closes the client and the local cluster, if any."""

    cluster: Any = None
    builder: Any = None  # holds the persisted bags until the job is done

    def wait_until_finish(self, duration: Any = None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            self.close()

    def close(self) -> None:
        self.builder = None
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
            self.cluster = None


def _probe_check(uri: str, token: str) -> bool:
    from trajcorpus import fs as fs_

    try:
        with fs_.open_uri(uri, "rb") as f:
            return f.read().decode() == token
    except Exception:
        return False


def check_shared_path(client: Any, folder: str, what: str = "--output") -> None:
    """Refuse a folder the cluster's workers cannot see (a disk local to this machine when the
    workers are elsewhere, or a process-local ``memory://``): the driver writes a probe file and
    every worker must read it back."""
    token = uuid.uuid4().hex
    probe = fs.join(folder, f".dask-probe-{token[:12]}")
    fs.makedirs(folder)
    with fs.open_uri(probe, "wb") as f:
        f.write(token.encode())
    try:
        seen = client.run(_probe_check, probe, token)
    finally:
        with contextlib.suppress(OSError):
            fs.remove(probe)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if not seen:
        raise TrajcorpusError("--dask_client_address", "the dask cluster has no workers")
    if blind:
        raise TrajcorpusError(what, (
            f"{folder} is not visible to {len(blind)} of {len(seen)} dask worker(s) "
            f"({', '.join(blind[:3])}): workers on other machines need a shared file system "
            "path or an object store (gs://, s3://)"))


class JobDaskRunner(DaskRunner):
    """Beam's DaskRunner with this module's three fixes; ``npartitions`` is the default number
    of partitions of a ``Create`` (the job passes its unit count) and ``shared`` a folder every
    worker must see (the run's spill folder)."""

    def __init__(self, npartitions: int | None = None, shared: str | None = None):
        super().__init__()
        self.npartitions = npartitions
        self.shared = shared

    def run_pipeline(self, pipeline: Any, options: Any) -> JobDaskResult:
        import dask.distributed as ddist

        logging.getLogger("distributed").setLevel(logging.WARNING)  # its info chatter
        dask_options = options.view_as(DaskOptions).get_all_options(
            drop_default=True, current_only=True)
        bag_kwargs = DaskOptions._extract_bag_kwargs(dask_options)
        if not bag_kwargs and self.npartitions:
            bag_kwargs = {"npartitions": int(self.npartitions)}
        cluster = None
        if not dask_options.get("address") and not dask_options.get("scheduler_file"):
            cluster = local_cluster(default_workers(self.npartitions))
            dask_options["address"] = cluster.scheduler_address
        try:
            client = ddist.Client(**dask_options)
        except (OSError, TimeoutError) as e:
            if cluster is not None:
                cluster.close()
            raise TrajcorpusError("--dask_client_address", (
                f"cannot reach the dask scheduler at {dask_options.get('address')}: "
                f"{e}")) from None
        result = JobDaskResult(client, [], cluster)
        try:
            client.register_plugin(MallocTuning())
            if self.shared:
                check_shared_path(client, self.shared)
            pipeline.replace_all(dask_overrides())
            consumers = _Consumers()
            pipeline.visit(consumers)
            builder = _GraphBuilder(client, bag_kwargs, consumers.count)
            pipeline.visit(builder)
            result.builder = builder
            result.futures = [client.compute(builder.bags[builder.last], optimize_graph=False)]
        except BaseException:
            result.close()
            raise
        return result

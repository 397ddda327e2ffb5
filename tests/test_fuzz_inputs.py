"""A structure-aware fuzzer over every source kind: bad input never escapes as a traceback.

For each kind, hypothesis picks one file of the trimmed good input that the adversarial corpus
starts from (``make_corpus.build_clean``) and breaks it the way real files break: truncation, flipped
bytes, a JSON value of another type, deep nesting, an inflated declared size (JSON numbers, a
``.npy`` header's shape), a malformed ``.npy`` header dict, an HDF5 node of another rank, type or
kind, an Arrow/Parquet column of another type or with null rows, a ``tf.train.Example`` feature
re-typed, re-shaped or dropped (framing and CRCs valid), a tar member replaced, another text
encoding, or a folder renamed with glob characters. The mutated copy is read the way the Beam job reads
(``Source.read()``), in-process, under a per-example alarm (a hang fails) and an address-space
limit (a blow-up fails), and the outcome must be one of:

* a clean read (for a rename: exactly the clean input's episodes);
* a :class:`TrajcorpusError` whose message is one line;
* Rejected records whose ``location: reason`` is one line and that no check missed: a unit the
  last-resort boundary had to catch ("unexpected <Exception>") fails the test, since every class
  must be closed at its cause.

The bounded run is part of the suite (``TRAJCORPUS_FUZZ_EXAMPLES`` examples per kind, default 8, about 25 s
in all). A long run by hand, e.g. 2,000 examples per kind with the ``search`` profile::

    HYPOTHESIS_PROFILE=search TRAJCORPUS_FUZZ_EXAMPLES=2000 \\
        .venv/bin/pytest tests/test_fuzz_inputs.py -q -p no:cacheprovider
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent / "adversarial"))
from make_corpus import (  # noqa: E402
    build_clean,
    frame,
    parse_example,
    read_tfrecord,
    serialize_example,
    write_tfrecord,
)

from trajcorpus.errors import TrajcorpusError  # noqa: E402
from trajcorpus.schemas.episode import Episode, Rejected  # noqa: E402
from trajcorpus.sources import open_source  # noqa: E402
from trajcorpus.sources.base import UNEXPECTED  # noqa: E402

KINDS = ("rlu-atari", "rlds", "minari", "d4rl", "coco-captions", "img2dataset",
         "hf-image-parquet", "dqn-replay", "vpt")
EXAMPLES = int(os.environ.get("TRAJCORPUS_FUZZ_EXAMPLES", "8"))
HANG_SECONDS = 60  # one read of a trimmed input takes well under 3 s
MEMORY_HEADROOM = 3 << 30  # address space a read may add before it counts as a blow-up
ODD_NAMES = ("in[1]", "a*b", "what?", "[!x]", "sp ace [2]")
NASTY_JSON = ([], {}, "1.0", "", 1e300, -1, None, True, 2 ** 70, [[1, 2], "x"], {"type": []})
BAD_NPY_HEADERS = (
    "{'descr': '<i4', 'fortran_order': False, 'shape': (2**70,), }",
    "{'descr': '<i4', 'fortran_order': False, 'shape': (1180591620717411303424,), }",
    "{'descr': ['<i4'], 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<i4', 'fortran_order': 0, 'shape': (3,), }",
    "{'descr': '<i4', 'fortran_order': False, 'shape': (3.0,), }",
    "{'descr': '<i4', 'fortran_order': False, 'shape': (-3,), }",
    "{'descr': '<i4', 'fortran_order': False}",
    "{'descr': 'not a dtype', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<i4', 'fortran_order': False, 'shape': ((((((((3,),),),),),),),), }",
    "[1, 2, 3]",
    "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), 'extra': {1: 2}}",
    "__import__('os')",
    "{" * 300,
)


class Hang(BaseException):
    """Raised by the alarm (a BaseException, so no reader's `except Exception` can hide it)."""


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """An alarm against hangs and an address-space ceiling against memory blow-ups."""
    def alarm(signum, frame):
        raise Hang(f"read did not finish within {HANG_SECONDS} s")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    ceiling = vm + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def read(kind: str, uri: str, options: dict) -> tuple[list[Episode], list[Rejected], str | None]:
    """Source.read() as the job does it; TrajcorpusError is an answer, anything else escapes."""
    episodes, rejected = [], []
    try:
        with guarded():
            src = open_source(kind, uri, dataset="fuzz", options=options)
            for item in src.read():
                (rejected if isinstance(item, Rejected) else episodes).append(item)
    except TrajcorpusError as e:
        return episodes, rejected, str(e)
    return episodes, rejected, None


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    """kind -> (folder holding the clean input, uri, options, episodes of a clean read)."""
    out = {}
    for kind in KINDS:
        base = tmp_path_factory.mktemp(kind.replace("-", "_"))
        built = build_clean(kind, base / "input")
        episodes, rejected, error = read(kind, built.uri, built.options)
        assert error is None
        out[kind] = (base / "input", built.uri, built.options, len(episodes), len(rejected))
    return out


# -- mutations ------------------------------------------------------------------------------------

def _nodes(doc, path=()):
    """Every (path, value) of a JSON document, containers first."""
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, path + (i,))


def _set(doc, path, value):
    if not path:
        return value
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def mutate_json(data: bytes, draw) -> bytes:
    doc = json.loads(data)
    nodes = list(_nodes(doc))
    path, value = nodes[draw(st.integers(0, len(nodes) - 1))]
    how = draw(st.sampled_from(("type", "nest", "inflate", "reencode")))
    if how == "type":
        return json.dumps(_set(doc, path, draw(st.sampled_from(NASTY_JSON)))).encode()
    if how == "nest":
        depth = draw(st.sampled_from((65, 2000, 200_000)))
        text = json.dumps(_set(doc, path, "__NEST__"))
        return text.replace('"__NEST__"', "[" * depth + json.dumps(value) + "]" * depth,
                            1).encode()
    if how == "inflate":
        scale = 1 << draw(st.sampled_from((20, 40, 64)))
        ints = [(p, v) for p, v in nodes if isinstance(v, int) and not isinstance(v, bool)] or \
            [(p, v) for p, v in nodes if isinstance(v, str) and v.isdigit()]
        if not ints:
            return data[: len(data) // 2]
        p, v = ints[draw(st.integers(0, len(ints) - 1))]
        big = int(v) * scale + scale
        return json.dumps(_set(doc, p, big if isinstance(v, int) else str(big))).encode()
    text = data.decode("utf-8") + " "
    return draw(st.sampled_from((text.encode("utf-16"), text.replace('"', '"\xe9', 1)
                                 .encode("latin-1", "replace"), b"\xff\xfe" + data)))


def mutate_npy_gz(data: bytes, draw) -> bytes:
    raw = gzip.decompress(data)
    arr = np.load(io.BytesIO(raw), allow_pickle=False)
    header = draw(st.sampled_from(BAD_NPY_HEADERS + ("inflate",)))
    if header == "inflate":
        shape = list(arr.shape) or [1]  # add_count is a 0-d array: give it a dimension
        shape[draw(st.integers(0, len(shape) - 1))] *= 1 << draw(st.sampled_from((20, 40, 63)))
        header = repr({"descr": arr.dtype.str, "fortran_order": False, "shape": tuple(shape)})
    text = header.encode("latin-1")
    pad = 64 - (10 + len(text) + 1) % 64
    head = b"\x93NUMPY\x01\x00" + (len(text) + pad + 1).to_bytes(2, "little") + text \
        + b" " * pad + b"\n"
    return gzip.compress(head + raw[len(raw) - arr.nbytes:], compresslevel=1, mtime=0)


def _hdf5_value(kind: str, old) -> object:
    n = old.shape[0] if old is not None and old.shape else 3
    return {"scalar": np.float64(1.5), "strings": np.array([b"x"] * n),
            "short": np.zeros(max(0, n - 1), np.float32), "wide": np.zeros((n, 2, 2), np.int64),
            "empty": np.zeros(0, np.float32), "bool": np.ones(n, bool)}[kind]


def mutate_hdf5(path: Path, draw) -> None:
    """Replace one node of an HDF5 file by a value of another rank, type or kind."""
    import h5py

    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f.visit(names.append)
        if not names:
            return
        name = draw(st.sampled_from(sorted(names)))
        kind = draw(st.sampled_from(("scalar", "strings", "short", "wide", "empty", "bool",
                                     "group", "delete")))
        node = f[name]
        old = node if isinstance(node, h5py.Dataset) else None
        del f[name]
        if kind == "group":
            f.create_group(name)
        elif kind != "delete":
            f[name] = _hdf5_value(kind, old)


def mutate_arrow_table(table, draw):
    """Replace one column by nulls, strings, a struct, a nested list, or a column of another
    length's worth of values; the schema changes with it, as a buggy exporter would write."""
    import pyarrow as pa

    if table.num_columns == 0:
        return table
    i = draw(st.integers(0, table.num_columns - 1))
    n = table.num_rows
    kind = draw(st.sampled_from(("nulls", "strings", "ints", "struct", "nested", "one-null")))
    if kind == "one-null":
        values = table.column(i).to_pylist()
        if values:
            values[draw(st.integers(0, len(values) - 1))] = None
        col = pa.array(values, table.schema.field(i).type)
    else:
        col = {"nulls": lambda: pa.nulls(n), "strings": lambda: pa.array(["x"] * n),
               "ints": lambda: pa.array(range(n), pa.int64()),
               "struct": lambda: pa.array([{"bytes": 1, "path": 2}] * n),
               "nested": lambda: pa.array([[[1.0]]] * n)}[kind]()
    return table.set_column(i, table.schema.field(i).name, col)


def mutate_arrow(path: Path, draw) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        table = pq.read_table(path)
        pq.write_table(mutate_arrow_table(table.replace_schema_metadata(
            table.schema.metadata), draw), path)
        return
    table = ipc.open_file(pa.memory_map(str(path))).read_all()
    table = mutate_arrow_table(table, draw)
    with ipc.new_file(str(path), table.schema) as w:
        w.write_table(table)


def mutate_example(path: Path, draw) -> None:
    """Re-type, re-shape or drop one feature of one tf.train.Example, with valid framing and CRCs
    (so the reader sees exactly a wrong field, as a buggy exporter would write it)."""
    records, gz = read_tfrecord(path)
    if not records:
        return
    i = draw(st.integers(0, len(records) - 1))
    ex = parse_example(records[i])
    if not ex:
        return
    key = draw(st.sampled_from(sorted(ex)))
    kind, values = ex[key]
    n = len(values)
    how = draw(st.sampled_from(("bytes", "float", "int64", "drop", "empty", "longer", "one")))
    if how == "drop":
        del ex[key]
    elif how == "bytes":
        ex[key] = ("bytes", [b"\xff\xfe" + str(v).encode() for v in list(values)[:max(n, 1)]])
    elif how == "float":
        ex[key] = ("float", np.resize(np.asarray([1.5, np.nan], np.float32), max(n, 1)))
    elif how == "int64":
        ex[key] = ("int64", np.resize(np.asarray([7, -1, 1 << 62], np.int64), max(n, 1)))
    elif how == "empty":
        ex[key] = (kind, [] if kind == "bytes" else np.zeros(0, np.float32 if kind == "float"
                                                              else np.int64))
    elif how == "longer":
        ex[key] = (kind, list(values) * 2 if kind == "bytes" else np.concatenate([values] * 2))
    else:
        ex[key] = (kind, list(values)[:1] if kind == "bytes" else values[:1])
    records[i] = serialize_example(ex)
    write_tfrecord(path, [frame(r) for r in records], gz)


def mutate_tar_member(path: Path, draw) -> None:
    """Replace one tar member's bytes: empty, garbage, deep JSON, JSON of another type."""
    import tarfile

    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    files = [i for i, (m, _) in enumerate(members) if m.isfile()]
    if not files:
        return
    i = draw(st.sampled_from(files))
    m, data = members[i]
    data = draw(st.sampled_from((b"", b"\x00" * 100, b"[" * 100_000 + b"]" * 100_000,
                                 b'{"caption": 5, "url": []}', b"[1, 2]", b'"x"', b"\xff\xfe",
                                 data[: len(data) // 2])))
    m.size = len(data)
    members[i] = (m, data)
    with tarfile.open(path, "w") as tar:
        for info, blob in members:
            tar.addfile(info, io.BytesIO(blob) if blob is not None else None)


@st.composite
def mutation(draw, files: list[str]) -> tuple[str, str, object]:
    """(relative file, operation name, parameter) — applied by :func:`apply`."""
    rel = draw(st.sampled_from(files))
    ops = ["truncate", "flip", "rename"]
    if rel.endswith(".json"):
        ops += ["json", "json"]
    if rel.endswith(".jsonl"):
        ops += ["jsonl", "jsonl", "jsonl"]
    if rel.endswith(".gz") and "ckpt" in rel:
        ops += ["npy", "npy"]
    if rel.endswith((".hdf5", ".h5")):
        ops += ["hdf5", "hdf5", "hdf5"]
    if rel.endswith((".arrow", ".parquet")):
        ops += ["arrow", "arrow", "arrow"]
    if "tfrecord" in rel or "run_" in rel:
        ops += ["example", "example", "example"]
    if rel.endswith(".tar"):
        ops += ["member", "member", "member"]
    op = draw(st.sampled_from(ops))
    if op == "truncate":
        return rel, op, draw(st.floats(0, 0.999))
    if op == "flip":
        return rel, op, (draw(st.floats(0, 0.999)), draw(st.integers(1, 64)),
                         draw(st.integers(1, 255)))
    if op == "rename":
        return rel, op, draw(st.sampled_from(ODD_NAMES))
    return rel, op, draw


def apply(root: Path, uri: str, rel: str, op: str, param) -> str:
    """Mutate the copy under ``root`` in place; return the (possibly renamed) input uri."""
    path = root / rel
    data = path.read_bytes()
    if op == "truncate":
        path.write_bytes(data[: int(len(data) * param)])
    elif op == "flip":
        at, n, mask = param
        b = bytearray(data)
        start = int(len(b) * at)
        for i in range(start, min(start + n, len(b))):
            b[i] ^= mask
        path.write_bytes(bytes(b))
    elif op == "json":
        path.write_bytes(mutate_json(data, param))
    elif op == "jsonl":  # one line of a JSON-lines file
        lines = data.split(b"\n")
        i = param(st.integers(0, max(0, len(lines) - 2)))
        lines[i] = mutate_json(lines[i], param)
        path.write_bytes(b"\n".join(lines))
    elif op == "npy":
        path.write_bytes(mutate_npy_gz(data, param))
    elif op == "hdf5":
        mutate_hdf5(path, param)
    elif op == "arrow":
        mutate_arrow(path, param)
    elif op == "example":
        mutate_example(path, param)
    elif op == "member":
        mutate_tar_member(path, param)
    elif op == "rename":
        target = root.parent / f"{root.name}{param}"
        root.rename(target)
        return str(target) + uri[len(str(root)):]
    return uri


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_input_never_escapes(clean, kind, data):
    folder, uri, options, n_clean, n_rejected_clean = clean[kind]
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    rel, op, param = data.draw(mutation(files), label="mutation")
    if op in ("json", "jsonl", "npy", "hdf5", "arrow", "example", "member"):
        param = data.draw  # the mutators draw their own choices
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        root = Path(tmp) / "in"
        shutil.copytree(folder, root)
        where = apply(root, str(root) + uri[len(str(folder)):], rel, op, param)
        episodes, rejected, error = read(kind, where, options)
    texts = [f"{r.location}: {r.reason}" for r in rejected] + ([error] if error else [])
    for text in texts:
        assert "\n" not in text and "\r" not in text, f"multi-line message: {text!r}"
        assert UNEXPECTED not in text, f"only the last-resort boundary caught it: {text}"
    if op == "rename":
        assert error is None and len(episodes) == n_clean, (
            f"renamed to {where!r}: {len(episodes)} episodes instead of {n_clean}: {texts[:3]}")
        assert len(rejected) == n_rejected_clean

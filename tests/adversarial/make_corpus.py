"""Build the adversarial corpus: bad inputs for every source format and the catalog.

Every case starts from a good fixture in ``tests/fixtures/`` and breaks exactly one thing, with the
byte-level tools of its format written here (gzip, ``np.save``, TFRecord framing with CRC32C, the
``tf.train.Example`` wire format, HDF5 via h5py, tar, Parquet). Nothing is hand-edited or
committed: the tests build each case into a temporary folder, and ``python make_corpus.py OUT``
writes them all (plus ``OUT/index.json``) for a look by hand.

A case is a row of a table: ``(name, kind, builder, outcome, pattern)``. The builder writes the
input under a folder and returns a :class:`Built` (the URI to read, reader options, and for pickle
and path-escape cases a *marker* path that must never appear). ``outcome`` is what a correct reader
does with it:

* ``error``: the input as a whole is refused with a :class:`~trajcorpus.errors.TrajcorpusError`
  (raised by ``units()`` or ``read()``, or a ``Rejected(kind="unit")`` quarantining the file);
* ``quarantine``: the bad record becomes a ``Rejected`` and every other record still comes out
  (``survivors`` of them);
* ``ignored``: the bad part is not data the reader uses; everything reads as usual and the marker
  stays absent.

``pattern`` is a regex the error's or the rejection's text (``location: reason``) must match: it
names the file and the byte offset, key or field, and the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import json
import re
import shutil
import struct
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

__all__ = ["Built", "Case", "CASES", "OUTCOMES", "build", "build_clean", "cases_for", "main",
           "variant_of"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]
OUTCOMES = ("error", "quarantine", "ignored")


@dataclasses.dataclass(frozen=True)
class Built:
    """What a builder made: where to read it, with which options, and what must never exist."""

    uri: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    marker: Path | None = None  # created only if data ran as code or a path escaped


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    kind: str  # a source kind (SPEC 8) or "catalog"
    outcome: str
    pattern: str
    builder: Callable[[Path, Path], Built]
    survivors: int | None = None  # good episodes still expected (quarantine / ignored)
    what: str = ""  # one line for docs/reliability.md


CASES: list[Case] = []


def case(name: str, kind: str, outcome: str, pattern: str, *, survivors: int | None = None,
         what: str = "") -> Callable[[Callable[[Path, Path], Built]], Callable[[Path, Path], Built]]:
    """Register a builder as a case of the table."""
    if outcome not in OUTCOMES:
        raise ValueError(outcome)

    def deco(fn: Callable[[Path, Path], Built]) -> Callable[[Path, Path], Built]:
        CASES.append(Case(name, kind, outcome, pattern, fn, survivors,
                          what or (fn.__doc__ or "").strip().splitlines()[0]))
        return fn

    return deco


def cases_for(kind: str) -> list[Case]:
    return [c for c in CASES if c.kind == kind]


def build(c: Case, dest: Path, fixtures: Path = FIXTURES) -> Built:
    """Build case ``c`` into ``dest / c.name`` (created)."""
    out = dest / c.name
    out.mkdir(parents=True, exist_ok=False)
    return c.builder(fixtures, out)


# =================================================================================================
# Byte-level tools (independent of the readers under test)
# =================================================================================================

class Boom:
    """Pickles to a call of ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_npy(marker: Path) -> bytes:
    """An .npy payload holding a pickled object array whose unpickling creates ``marker``."""
    arr = np.empty(1, dtype=object)
    arr[0] = Boom(marker)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray, *, fortran: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asfortranarray(arr) if fortran else arr, allow_pickle=False)
    return buf.getvalue()


def load_npy_gz(path: Path) -> np.ndarray:
    """A good fixture's gzip + np.save payload (never unpickles)."""
    with gzip.open(path, "rb") as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def write_gz(path: Path, payload: bytes) -> None:
    path.write_bytes(gzip.compress(payload, compresslevel=1, mtime=0))


def zero_bomb_gzip(total: int, prefix: bytes = b"") -> bytes:
    """A gzip stream of ``prefix`` + ``total`` zero bytes, cheap to make: one member repeated."""
    chunk = 16 << 20
    member = gzip.compress(bytes(chunk), compresslevel=9, mtime=0)
    return gzip.compress(prefix, mtime=0) + member * (total // chunk)


def zlib_bomb(total: int) -> bytes:
    comp = zlib.compressobj(9)
    zeros = bytes(16 << 20)
    parts = [comp.compress(zeros) for _ in range(total // len(zeros))]
    return b"".join(parts) + comp.flush()


def truncate(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: int(len(data) * fraction)]


def flip(data: bytes, at: int, n: int = 16) -> bytes:
    """Invert ``n`` bytes at ``at`` (same length, so sizes and offsets stay plausible)."""
    b = bytearray(data)
    for i in range(at, min(at + n, len(b))):
        b[i] ^= 0xFF
    return bytes(b)


# -- TFRecord framing ---------------------------------------------------------------------------

def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def split_frames(raw: bytes) -> list[bytes]:
    """Record payloads of a good (uncompressed) TFRecord stream."""
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<Q", raw, pos)
        out.append(raw[pos + 12: pos + 12 + n])
        pos += 12 + n + 4
    return out


def frame(data: bytes, *, bad_length_crc: bool = False, bad_data_crc: bool = False,
          length: int | None = None) -> bytes:
    head = struct.pack("<Q", len(data) if length is None else length)
    lcrc = masked_crc(head) ^ (0x5A5A5A5A if bad_length_crc else 0)
    dcrc = masked_crc(data) ^ (0x5A5A5A5A if bad_data_crc else 0)
    return head + struct.pack("<I", lcrc) + data + struct.pack("<I", dcrc)


def read_tfrecord(path: Path) -> tuple[list[bytes], bool]:
    raw = path.read_bytes()
    gz = raw[:2] == b"\x1f\x8b"
    return split_frames(gzip.decompress(raw) if gz else raw), gz


def write_tfrecord(path: Path, frames: list[bytes], gz: bool) -> None:
    raw = b"".join(frames)
    path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0) if gz else raw)


# -- tf.train.Example wire format ---------------------------------------------------------------
# Example{1: Features{1: repeated Entry{1: key, 2: Feature{1 bytes|2 float|3 int64 list}}}}

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos: pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos: pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos: pos + 8], pos + 8
        else:
            raise ValueError(f"wire type {wire}")
        yield field, wire, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def parse_example(buf: bytes) -> dict[str, tuple[str, Any]]:
    """key -> ("bytes", [bytes]) | ("float", float32 array) | ("int64", int64 array)."""
    feats: dict[str, tuple[str, Any]] = {}
    for f, _, features in _fields(buf):
        if f != 1:
            continue
        for _, _, entry in _fields(features):
            key, feat = "", b""
            for f3, _, x in _fields(entry):
                if f3 == 1:
                    key = x.decode()
                elif f3 == 2:
                    feat = x
            feats[key] = _parse_feature(feat)
    return feats


def _parse_feature(buf: bytes) -> tuple[str, Any]:
    for f, _, lst in _fields(buf):
        kind = {1: "bytes", 2: "float", 3: "int64"}[f]
        vals: list[Any] = []
        for _, wire, x in _fields(lst):
            if kind == "bytes":
                vals.append(bytes(x))
            elif kind == "float":
                vals.extend(np.frombuffer(x, "<f4").tolist())
            elif wire == 2:
                pos = 0
                while pos < len(x):
                    v, pos = _read_varint(x, pos)
                    vals.append(_signed(v))
            else:
                vals.append(_signed(x))
        if kind == "float":
            return kind, np.asarray(vals, np.float32)
        if kind == "int64":
            return kind, np.asarray(vals, np.int64)
        return kind, vals
    return "bytes", []


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str, vals: Any) -> bytes:
    if kind == "bytes":
        return _len_field(1, b"".join(_len_field(1, v) for v in vals))
    if kind == "float":
        body = np.asarray(vals, "<f4").tobytes()
        return _len_field(2, _len_field(1, body) if body else b"")
    body = b"".join(_varint(int(v)) for v in np.asarray(vals, np.int64))
    return _len_field(3, _len_field(1, body) if body else b"")


def serialize_example(feats: dict[str, tuple[str, Any]]) -> bytes:
    entries = b"".join(
        _len_field(1, _len_field(1, k.encode()) + _len_field(2, _feature(*v)))
        for k, v in sorted(feats.items()))
    return _len_field(1, entries)


# -- images --------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


@functools.lru_cache(maxsize=2)
def png_bomb(width: int = 9000, height: int = 9000) -> bytes:
    """A valid grayscale PNG of ``width*height`` pixels (81 MPixel, above the 64 MPixel limit)."""
    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + zero pixels
    rows_per = max(1, (16 << 20) // len(row))
    block = row * rows_per
    parts, done = [], 0
    while done < height:
        n = min(rows_per, height - done)
        parts.append(comp.compress(block if n == rows_per else row * n))
        done += n
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b""))


def jpeg_with_size(data: bytes, width: int = 65000, height: int = 65000) -> bytes:
    """A real JPEG whose frame header (SOFn) declares ``width x height``."""
    b = bytearray(data)
    pos = 2
    while pos < len(b):
        marker = b[pos + 1]
        seg = struct.unpack_from(">H", b, pos + 2)[0]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", b, pos + 5, height, width)
            return bytes(b)
        pos += 2 + seg
    raise ValueError("no SOF marker")


def corrupt_jpeg(data: bytes) -> bytes:
    """Headers intact, entropy-coded data cut short and garbled: decoding must fail."""
    sos = data.index(b"\xff\xda")
    return data[: sos + 40] + b"\x00\xff\x00" * 8


def corrupt_png(data: bytes) -> bytes:
    """A PNG whose image data bytes are inverted (its chunk CRC no longer matches)."""
    idat = data.index(b"IDAT")
    return flip(data, idat + 20, 64)


def _copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return dst


# =================================================================================================
# catalog.yaml
# =================================================================================================

def _catalog(out: Path, edit: Callable[[str], str | bytes]) -> Built:
    text = edit((REPO / "catalog.yaml").read_text(encoding="utf-8"))
    path = out / "catalog.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return Built(str(path))


def _after_id(text: str, entry: str, line: str) -> str:
    anchor = f"  - id: {entry}\n"
    assert anchor in text
    return text.replace(anchor, anchor + line + "\n", 1)


@case("catalog-unknown-key", "catalog", "error",
      r"catalog\.yaml:\d+: entry 'demo-minari' field 'colour': unknown key")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: an entry has a key the schema does not know (a typo must not be ignored)"""
    return _catalog(out, lambda t: _after_id(t, "demo-minari", "    colour: blue"))


@case("catalog-wrong-type", "catalog", "error",
      r"catalog\.yaml:\d+: entry 'demo-d4rl' field 'mixture_weight': .*number")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: a number field holds a string"""
    return _catalog(out, lambda t: _after_id(t, "demo-d4rl", "    mixture_weight: heavy"))


@case("catalog-nested-wrong-type", "catalog", "error",
      r"catalog\.yaml:\d+: entry 'demo-rlds' field 'sequence\.length': .*integer")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: a nested setting has the wrong type (sequence length as a list)"""
    return _catalog(out, lambda t: _after_id(t, "demo-rlds", "    sequence: {length: [1, 2]}"))


@case("catalog-anchor-bomb", "catalog", "error", r"catalog\.yaml:\d+: YAML expands to more than")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: a billion-laughs alias bomb (9 levels x 10 aliases)"""
    lines = ["bomb0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"bomb{i}: &a{i} [{refs}]")
    return _catalog(out, lambda t: t + "\n".join(lines) + "\n")


@case("catalog-python-tag", "catalog", "error",
      r"catalog\.yaml:\d+: .*(constructor|tag)")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: a !!python/object/apply tag that would create a file if constructed"""
    marker = out / "PWNED-by-yaml"
    built = _catalog(out, lambda t: _after_id(
        t, "demo-coco-captions",
        f'    homepage: !!python/object/apply:builtins.open ["{marker}", "w"]'))
    return dataclasses.replace(built, marker=marker)


@case("catalog-non-utf8", "catalog", "error", r"catalog\.yaml: not UTF-8 at byte \d+")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: a Latin-1 byte inside a description (not UTF-8)"""
    return _catalog(out, lambda t: _after_id(t, "demo-d4rl", "    citation: caf\u00e9").encode(
        "utf-8").replace("caf\u00e9".encode(), b"caf\xe9"))


@case("catalog-duplicate-id", "catalog", "error",
      r"catalog\.yaml:\d+: entry 'demo-minari' field 'id': duplicate id")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: two entries share an id (one config would overwrite the other's output)"""
    return _catalog(out, lambda t: t.replace("  - id: demo-d4rl\n", "  - id: demo-minari\n"))


@case("catalog-id-path", "catalog", "error",
      r"catalog\.yaml:\d+: entry '\.\./\.\./escape' field 'id': .*pattern")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: an id that would be a path outside OUT (ids name output folders)"""
    return _catalog(out, lambda t: t.replace("  - id: demo-d4rl\n", "  - id: ../../escape\n"))


@case("catalog-bad-image-size", "catalog", "error",
      r"catalog\.yaml:\d+: entry 'demo-rlds' field 'tokenize\.image_size': .*multiples of 16")
def _(fx: Path, out: Path) -> Built:
    """catalog.yaml: an image size that cannot be cut into 16x16 patches"""
    def edit(t: str) -> str:  # the tokenize line of the demo-rlds entry, whatever it holds now
        out, n = re.subn(r"(id: demo-rlds\n(?:    .*\n)*?    tokenize: )\{[^}\n]*\}",
                         r"\1{image_size: [84, 84]}", t, count=1)
        assert n == 1, "demo-rlds tokenize line not found in catalog.yaml"
        return out

    return _catalog(out, edit)


# =================================================================================================
# TFRecord formats: rlu-atari (episode layout, gzip) and rlds (plain, TFDS)
# =================================================================================================

RLU_FILE = "Pong/run_1-00000-of-00001"


def _rlu(fx: Path, out: Path, edit_records: Callable[[list[bytes]], list[bytes]] | None = None,
         edit_raw: Callable[[bytes], bytes] | None = None) -> Built:
    root = _copy(fx / "rlu_atari_episodes", out / "rlu_atari_episodes")
    path = root / RLU_FILE
    if edit_records is not None:
        frames, gz = read_tfrecord(path)
        write_tfrecord(path, edit_records(frames), gz)
    if edit_raw is not None:
        path.write_bytes(edit_raw(path.read_bytes()))
    return Built(str(root))


def _framed(records: list[bytes]) -> list[bytes]:
    return [frame(r) for r in records]


def _rlu_edit_example(index: int, edit: Callable[[dict], None]) -> Callable[[list[bytes]], list]:
    def go(records: list[bytes]) -> list[bytes]:
        ex = parse_example(records[index])
        edit(ex)
        records = list(records)
        records[index] = serialize_example(ex)
        return _framed(records)
    return go


@case("rlu-bad-length-crc", "rlu-atari", "error",
      r"run_1-00000-of-00001 @ offset \d+.*: record 1: bad length CRC")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: the second record's length CRC is wrong (framing lost: the file stops there)"""
    return _rlu(fx, out, lambda r: [frame(x, bad_length_crc=(i == 1)) for i, x in enumerate(r)])


@case("rlu-bad-data-crc", "rlu-atari", "quarantine",
      r"run_1-00000-of-00001 @ offset \d+.*record 1: bad data CRC", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: the second record's data CRC is wrong (the framing holds: the others survive)"""
    return _rlu(fx, out, lambda r: [frame(x, bad_data_crc=(i == 1)) for i, x in enumerate(r)])


@case("rlu-truncated-record", "rlu-atari", "error",
      r"run_1-00000-of-00001 @ offset \d+.*record 2: truncated record")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: the gzip stream is complete but its last TFRecord stops mid-data"""
    return _rlu(fx, out, lambda r: _framed(r)[:2] + [frame(r[2])[: len(r[2]) // 2]])


@case("rlu-truncated-gzip", "rlu-atari", "error",
      r"run_1-00000-of-00001.*truncated gzip|run_1-00000-of-00001.*(end of|EOF)")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: the gzip file itself is cut in half"""
    return _rlu(fx, out, edit_raw=truncate)


@case("rlu-gzip-crc", "rlu-atari", "error",
      r"run_1-00000-of-00001.*corrupt gzip stream.*CRC check failed")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: the gzip trailer's CRC32 does not match the inflated data"""
    return _rlu(fx, out, edit_raw=lambda b: flip(b, len(b) - 8, 4))


@case("rlu-garbled-deflate", "rlu-atari", "error",
      r"run_1-00000-of-00001 @ offset \d+.*record \d+: (corrupt gzip|bad (length|data) CRC)")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: 64 bytes in the middle of the deflate stream are inverted"""
    return _rlu(fx, out, edit_raw=lambda b: flip(b, len(b) // 2, 64))


@case("rlu-huge-length", "rlu-atari", "error",
      r"run_1-00000-of-00001 @ offset 0.*record 0: declared length \d+ bytes too large")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: a record declares 2^62 bytes (correct length CRC): no giant allocation"""
    return _rlu(fx, out, lambda r: [frame(r[0], length=1 << 62)] + _framed(r[1:]))


@case("rlu-gzip-bomb", "rlu-atari", "error",
      r"run_1-00000-of-00001.*record 0: (declared length \d+ bytes too large|bad data CRC)")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: a 1 MB gzip file that inflates to 1 GiB of zeros behind a 1 GiB+ record"""
    root = _copy(fx / "rlu_atari_episodes", out / "rlu_atari_episodes")
    head = struct.pack("<Q", (1 << 30) + 16)
    head += struct.pack("<I", masked_crc(head))
    (root / RLU_FILE).write_bytes(zero_bomb_gzip(1 << 30, prefix=head))
    return Built(str(root))


@case("rlu-unknown-feature", "rlu-atari", "ignored", r"", survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: an Example carries a feature key the layout does not define (TF ignores it)"""
    return _rlu(fx, out, _rlu_edit_example(0, lambda ex: ex.__setitem__(
        "surprise", ("bytes", [b"x"]))))


@case("rlu-missing-feature", "rlu-atari", "quarantine",
      r"run_1-00000-of-00001 @ offset \d+.*actions.*missing|missing.*actions", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: the second Example lacks its 'actions' feature"""
    return _rlu(fx, out, _rlu_edit_example(1, lambda ex: ex.pop("actions")))


@case("rlu-length-mismatch", "rlu-atari", "quarantine",
      r"run_1-00000-of-00001 @ offset \d+.*(rewards|actions|observations).*\d+.*\d+", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: 'actions' has one value fewer than the episode has frames"""
    def edit(ex: dict) -> None:
        kind, v = ex["actions"]
        ex["actions"] = (kind, v[:-1])
    return _rlu(fx, out, _rlu_edit_example(0, edit))


def _rlu_rewards(value: float) -> Callable[[dict], None]:
    def edit(ex: dict) -> None:
        for key in ("clipped_rewards", "unclipped_rewards"):
            kind, v = ex[key]
            v = v.copy()
            v[5] = value
            ex[key] = (kind, v)
    return edit


@case("rlu-nan-reward", "rlu-atari", "quarantine", r"rewards.*non-finite value nan at step 5",
      survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: a NaN reward at step 5 of the first episode"""
    return _rlu(fx, out, _rlu_edit_example(0, _rlu_rewards(float("nan"))))


@case("rlu-inf-reward", "rlu-atari", "quarantine", r"rewards.*non-finite value inf at step 5",
      survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: an infinite reward at step 5 of the second episode"""
    return _rlu(fx, out, _rlu_edit_example(1, _rlu_rewards(float("inf"))))


def _rlu_action(value: int) -> Callable[[dict], None]:
    def edit(ex: dict) -> None:
        kind, v = ex["actions"]
        v = v.copy()
        v[3] = value
        ex["actions"] = (kind, v)
    return edit


@case("rlu-action-1024", "rlu-atari", "quarantine",
      r"actions.*discrete value 1024 outside \[0, 1024\)", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: a discrete action of 1024 (outside the token range; never wrapped)"""
    return _rlu(fx, out, _rlu_edit_example(2, _rlu_action(1024)))


@case("rlu-action-negative", "rlu-atari", "quarantine",
      r"actions.*discrete value -1 outside \[0, 1024\)", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: a discrete action of -1"""
    return _rlu(fx, out, _rlu_edit_example(0, _rlu_action(-1)))


def _rlu_frame(make: Callable[[bytes], bytes]) -> Callable[[dict], None]:
    def edit(ex: dict) -> None:
        kind, frames = ex["observations"]
        frames = list(frames)
        frames[7] = make(frames[7])
        ex["observations"] = (kind, frames)
    return edit


@case("rlu-corrupt-png", "rlu-atari", "quarantine",
      r"run_1-00000-of-00001.*observations.*cannot decode image", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: one PNG frame's image data is garbled"""
    return _rlu(fx, out, _rlu_edit_example(1, _rlu_frame(corrupt_png)))


@case("rlu-png-bomb", "rlu-atari", "quarantine",
      r"run_1-00000-of-00001.*observations.*(decompression bomb|exceeds the limit)", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: one frame is a 9000x9000 PNG (a decompression bomb)"""
    bomb = png_bomb()
    return _rlu(fx, out, _rlu_edit_example(1, _rlu_frame(lambda _: bomb)))


@case("rlu-empty-episode", "rlu-atari", "quarantine",
      r"run_1-00000-of-00001 @ offset \d+.*(empty episode|0 steps|no steps|no frames)",
      survivors=2)
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: an episode record with zero steps"""
    def edit(ex: dict) -> None:
        for key, (kind, v) in list(ex.items()):
            if key in ("observations", "actions", "clipped_rewards", "unclipped_rewards",
                       "discounts"):
                ex[key] = (kind, v[:0])
    return _rlu(fx, out, _rlu_edit_example(1, edit))


RLDS_DIR = "dmc_jaco_stack_2_bricks_vision/1.0.0"
RLDS_SHARD = "dmc_jaco_stack_2_bricks_vision-train.tfrecord-00000"


def _rlds(fx: Path, out: Path, edit_records: Callable[[list[bytes]], list[bytes]] | None = None,
          *, edit_file: tuple[str, Callable[[bytes], bytes]] | None = None) -> Built:
    """Only the first shard (4 episodes) is kept, to stay small."""
    src = fx / "robot_stacking" / "rlds" / RLDS_DIR
    root = out / RLDS_DIR
    root.mkdir(parents=True)
    for name in ("features.json", "metadata.json", RLDS_SHARD):
        shutil.copyfile(src / name, root / name)
    info = json.loads((src / "dataset_info.json").read_text())
    split = info["splits"][0]
    split["shardLengths"] = split["shardLengths"][:1]
    split["numBytes"] = str((src / RLDS_SHARD).stat().st_size)
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2))
    if edit_records is not None:
        frames, gz = read_tfrecord(root / RLDS_SHARD)
        write_tfrecord(root / RLDS_SHARD, edit_records(frames), gz)
    if edit_file is not None:
        name, fn = edit_file
        (root / name).write_bytes(fn((root / name).read_bytes()))
    return Built(str(root))


def _rlds_edit(index: int, edit: Callable[[dict], None]) -> Callable[[list[bytes]], list[bytes]]:
    def go(records: list[bytes]) -> list[bytes]:
        records = list(records)
        ex = parse_example(records[index])
        edit(ex)
        records[index] = serialize_example(ex)
        return _framed(records)
    return go


@case("rlds-bad-data-crc", "rlds", "quarantine",
      r"tfrecord-00000 @ offset \d+.*record 2: bad data CRC", survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlds: the third episode's data CRC is wrong"""
    return _rlds(fx, out, lambda r: [frame(x, bad_data_crc=(i == 2)) for i, x in enumerate(r)])


@case("rlds-bad-length-crc", "rlds", "error",
      r"tfrecord-00000 @ offset 0.*record 0: bad length CRC")
def _(fx: Path, out: Path) -> Built:
    """rlds: the first record's length CRC is wrong"""
    return _rlds(fx, out, lambda r: [frame(x, bad_length_crc=(i == 0)) for i, x in enumerate(r)])


@case("rlds-truncated-shard", "rlds", "error",
      r"tfrecord-00000 @ offset \d+.*record \d+: truncated record")
def _(fx: Path, out: Path) -> Built:
    """rlds: the shard file is cut in the middle of a record"""
    return _rlds(fx, out, edit_file=(RLDS_SHARD, lambda b: b[: len(b) * 3 // 5]))


@case("rlds-unknown-feature", "rlds", "quarantine",
      r"tfrecord-00000 @ offset \d+.*steps/observation/x_ray.*(unknown|not declared)",
      survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlds: an episode carries a key that features.json does not declare"""
    def edit(ex: dict) -> None:
        n = len(ex["steps/is_first"][1])
        ex["steps/observation/x_ray"] = ("float", np.zeros(n, np.float32))
    return _rlds(fx, out, _rlds_edit(1, edit))


@case("rlds-zlib-bomb", "rlds", "quarantine",
      r"tfrecord-00000.*joints_pos.*(exceed|beyond|more than|too large)", survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlds: one zlib-encoded joints_pos blob (96 bytes declared) inflates to 64 MiB"""
    bomb = zlib_bomb(64 << 20)

    def edit(ex: dict) -> None:
        kind, blobs = ex["steps/observation/joints_pos"]
        ex["steps/observation/joints_pos"] = (kind, [bomb] + list(blobs[1:]))
    return _rlds(fx, out, _rlds_edit(0, edit))


@case("rlds-corrupt-png", "rlds", "quarantine",
      r"tfrecord-00000.*steps/observation/image.*cannot decode image", survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlds: one camera PNG is garbled"""
    def edit(ex: dict) -> None:
        kind, imgs = ex["steps/observation/image"]
        ex["steps/observation/image"] = (kind, [imgs[0], corrupt_png(imgs[1])] + list(imgs[2:]))
    return _rlds(fx, out, _rlds_edit(3, edit))


@case("rlds-non-utf8-instruction", "rlds", "quarantine",
      r"tfrecord-00000.*language_instruction.*(UTF-8|utf-8|decode)", survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlds: the language instruction is not UTF-8 (a Latin-1 byte)"""
    def edit(ex: dict) -> None:
        for key in ("steps/language_instruction", "episode_metadata/language_instruction"):
            kind, vals = ex[key]
            ex[key] = (kind, [b"stack the gr\xfcn block" for _ in vals])
    return _rlds(fx, out, _rlds_edit(0, edit))


@case("rlds-nan-action", "rlds", "quarantine", r"actions.*non-finite value nan", survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlds: a NaN inside a continuous action vector"""
    def edit(ex: dict) -> None:
        kind, v = ex["steps/action"]
        v = v.copy()
        v[4] = np.nan
        ex["steps/action"] = (kind, v)
    return _rlds(fx, out, _rlds_edit(1, edit))


@case("rlds-length-mismatch", "rlds", "quarantine",
      r"tfrecord-00000.*steps/reward.*\d+.*\d+", survivors=3)
def _(fx: Path, out: Path) -> Built:
    """rlds: steps/reward has fewer values than the episode has steps"""
    def edit(ex: dict) -> None:
        kind, v = ex["steps/reward"]
        ex["steps/reward"] = (kind, v[:-3])
    return _rlds(fx, out, _rlds_edit(2, edit))


@case("rlds-features-json-garbage", "rlds", "error", r"features\.json")
def _(fx: Path, out: Path) -> Built:
    """rlds: features.json is not JSON"""
    return _rlds(fx, out, edit_file=("features.json", lambda b: b[: len(b) // 3]))


@case("rlds-shard-lengths-lie", "rlds", "error",
      r"(dataset_info\.json|tfrecord-00000).*(shardLengths|4.*5|5.*4|episodes)")
def _(fx: Path, out: Path) -> Built:
    """rlds: dataset_info.json declares 5 episodes in a shard that holds 4"""
    def edit(b: bytes) -> bytes:
        info = json.loads(b)
        info["splits"][0]["shardLengths"] = ["5"]
        return json.dumps(info).encode()
    return _rlds(fx, out, edit_file=("dataset_info.json", edit))


# =================================================================================================
# HDF5 formats: minari (and its arrow back-end) and d4rl
# =================================================================================================

MINARI_NS = "trajcorpus-fixtures"


def _minari(fx: Path, out: Path, dataset: str = "hopper/mixed-v0",
            edit: Callable[[Any], None] | None = None,
            edit_path: Callable[[Path], None] | None = None) -> Built:
    """One dataset of the namespace (40 episodes), in its namespace tree."""
    import h5py

    src_ns = fx / "mujoco" / "minari" / MINARI_NS
    root = out / MINARI_NS
    env = dataset.split("/")[0]
    _copy(src_ns / dataset, root / dataset)
    shutil.copyfile(src_ns / "namespace_metadata.json", root / "namespace_metadata.json")
    shutil.copyfile(src_ns / env / "namespace_metadata.json", root / env / "namespace_metadata.json")
    data = root / dataset / "data"
    if edit is not None:
        with h5py.File(data / "main_data.hdf5", "r+") as f:
            edit(f)
    if edit_path is not None:
        edit_path(data)
    return Built(str(root))


def _replace(group: Any, name: str, value: np.ndarray) -> None:
    del group[name]
    group.create_dataset(name, data=value)


@case("minari-missing-rewards", "minari", "quarantine",
      r"main_data\.hdf5.*episode_7/rewards.*missing", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari: one episode group has no 'rewards' dataset"""
    return _minari(fx, out, edit=lambda f: f["episode_7"].__delitem__("rewards"))


@case("minari-length-mismatch", "minari", "quarantine",
      r"main_data\.hdf5.*episode_3.*(observations|actions).*\d+.*\d+", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari: observations has N entries instead of N+1"""
    return _minari(fx, out, edit=lambda f: _replace(
        f["episode_3"], "observations", f["episode_3/observations"][:-2]))


@case("minari-empty-episode", "minari", "quarantine", r"episode_5.*(empty episode|0 steps)",
      survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari: an episode with zero steps (one observation, no actions)"""
    def edit(f: Any) -> None:
        g = f["episode_5"]
        _replace(g, "observations", g["observations"][:1])
        for k in ("actions", "rewards", "terminations", "truncations"):
            _replace(g, k, g[k][:0])
        g.attrs["total_steps"] = 0
    return _minari(fx, out, edit=edit)


@case("minari-nan-observation", "minari", "quarantine",
      r"observations.*non-finite value nan at index \(4, 2\)", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari: a NaN in an observation"""
    def edit(f: Any) -> None:
        obs = f["episode_9/observations"][...]
        obs[4, 2] = np.nan
        _replace(f["episode_9"], "observations", obs)
    return _minari(fx, out, edit=edit)


@case("minari-inf-reward", "minari", "quarantine", r"rewards.*non-finite value -?inf at step 2",
      survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari: an infinite reward"""
    def edit(f: Any) -> None:
        r = f["episode_11/rewards"][...]
        r[2] = -np.inf
        _replace(f["episode_11"], "rewards", r)
    return _minari(fx, out, edit=edit)


@case("minari-string-actions", "minari", "quarantine",
      r"main_data\.hdf5.*episode_2.*actions.*(dtype|float|type)", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari: actions stored as strings (wrong dtype)"""
    def edit(f: Any) -> None:
        n = f["episode_2/actions"].shape[0]
        _replace(f["episode_2"], "actions", np.array([b"left"] * n))
    return _minari(fx, out, edit=edit)


@case("minari-metadata-garbage", "minari", "error", r"metadata\.json")
def _(fx: Path, out: Path) -> Built:
    """minari: data/metadata.json is cut in half (not JSON)"""
    def edit(data: Path) -> None:
        m = data / "metadata.json"
        m.write_bytes(truncate(m.read_bytes()))
    return _minari(fx, out, edit_path=edit)


@case("minari-truncated-hdf5", "minari", "error", r"main_data\.hdf5")
def _(fx: Path, out: Path) -> Built:
    """minari: main_data.hdf5 is cut in half"""
    def edit(data: Path) -> None:
        h = data / "main_data.hdf5"
        h.write_bytes(truncate(h.read_bytes()))
    return _minari(fx, out, edit_path=edit)


@case("minari-arrow-truncated", "minari", "quarantine", r"data/6/part-0\.arrow", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari (arrow back-end): one episode's Arrow file is cut in half"""
    def edit(data: Path) -> None:
        p = data / "6" / "part-0.arrow"
        p.write_bytes(truncate(p.read_bytes()))
    return _minari(fx, out, "hopper/mixed-arrow-v0", edit_path=edit)


@case("minari-arrow-wrong-type", "minari", "quarantine",
      r"data/8/part-0\.arrow \[rewards\]: .*(type|dtype|string|numeric)", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari (arrow back-end): the rewards column holds strings"""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    def edit(data: Path) -> None:
        p = data / "8" / "part-0.arrow"
        with pa.memory_map(str(p)) as src:
            table = ipc.open_file(src).read_all()
        rewards = pa.array([str(x) for x in table.column("rewards").to_pylist()])
        table = table.set_column(table.schema.get_field_index("rewards"), "rewards", rewards)
        with pa.OSFile(str(p), "wb") as sink, ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
    return _minari(fx, out, "hopper/mixed-arrow-v0", edit_path=edit)


def _d4rl(fx: Path, out: Path, edit: Callable[[Any], None] | None = None) -> Built:
    import h5py

    path = _copy(fx / "mujoco" / "d4rl" / "hopper-mixed-v2.hdf5", out / "hopper-mixed-v2.hdf5")
    if edit is not None:
        with h5py.File(path, "r+") as f:
            edit(f)
    return Built(str(path))


@case("d4rl-missing-terminals", "d4rl", "error", r"hopper-mixed-v2\.hdf5.*terminals.*missing")
def _(fx: Path, out: Path) -> Built:
    """d4rl: the 'terminals' dataset is missing (episode boundaries unknown)"""
    return _d4rl(fx, out, lambda f: f.__delitem__("terminals"))


@case("d4rl-length-mismatch", "d4rl", "error",
      r"hopper-mixed-v2\.hdf5.*rewards.*10750.*10754|hopper-mixed-v2\.hdf5.*10754.*rewards.*10750")
def _(fx: Path, out: Path) -> Built:
    """d4rl: 'rewards' has 4 entries fewer than 'observations'"""
    return _d4rl(fx, out, lambda f: _replace(f, "rewards", f["rewards"][:-4]))


@case("d4rl-inf-observation", "d4rl", "quarantine",
      r"observations.*non-finite value inf", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """d4rl: an infinite observation inside the first episode"""
    def edit(f: Any) -> None:
        obs = f["observations"][...]
        obs[3, 1] = np.inf
        _replace(f, "observations", obs)
    return _d4rl(fx, out, edit)


@case("d4rl-nan-reward", "d4rl", "quarantine", r"rewards.*non-finite value nan", survivors=39)
def _(fx: Path, out: Path) -> Built:
    """d4rl: a NaN reward in the last episode"""
    def edit(f: Any) -> None:
        r = f["rewards"][...]
        r[-2] = np.nan
        _replace(f, "rewards", r)
    return _d4rl(fx, out, edit)


@case("d4rl-not-hdf5", "d4rl", "error", r"hopper-mixed-v2\.hdf5.*not a readable HDF5")
def _(fx: Path, out: Path) -> Built:
    """d4rl: the file is cut to its first 4 KiB"""
    built = _d4rl(fx, out)
    p = Path(built.uri)
    p.write_bytes(p.read_bytes()[:4096])
    return built


@case("d4rl-2d-rewards", "d4rl", "error", r"hopper-mixed-v2\.hdf5.*rewards.*(shape|1-D|\[N\])")
def _(fx: Path, out: Path) -> Built:
    """d4rl: 'rewards' has shape [N, 2] instead of [N]"""
    return _d4rl(fx, out, lambda f: _replace(f, "rewards", np.stack([f["rewards"][...]] * 2, 1)))


# =================================================================================================
# Image-caption formats: coco-captions, img2dataset, hf-image-parquet
# =================================================================================================

def _coco(fx: Path, out: Path, edit_json: Callable[[dict], None] | None = None,
          edit_image: tuple[str, Callable[[bytes], bytes]] | None = None,
          raw: Callable[[bytes], bytes] | None = None) -> Built:
    root = _copy(fx / "image_caption" / "coco", out / "coco")
    ann = root / "annotations" / "captions_train2017.json"
    if edit_json is not None:
        data = json.loads(ann.read_text(encoding="utf-8"))
        edit_json(data)
        ann.write_text(json.dumps(data), encoding="utf-8")
    if raw is not None:
        ann.write_bytes(raw(ann.read_bytes()))
    if edit_image is not None:
        name, fn = edit_image
        p = root / "train2017" / name
        p.write_bytes(fn(p.read_bytes()))
    return Built(str(root))


COCO_IMG = "000000069813.jpg"  # an image with a single caption


@case("coco-corrupt-jpeg", "coco-captions", "quarantine",
      r"000000069813\.jpg.*cannot decode image", survivors=25)
def _(fx: Path, out: Path) -> Built:
    """coco: one photo's JPEG data is cut short and garbled"""
    return _coco(fx, out, edit_image=(COCO_IMG, corrupt_jpeg))


@case("coco-jpeg-bomb", "coco-captions", "quarantine",
      r"000000069813\.jpg.*(decompression bomb|exceeds the limit)", survivors=25)
def _(fx: Path, out: Path) -> Built:
    """coco: one JPEG declares 65000x65000 pixels"""
    return _coco(fx, out, edit_image=(COCO_IMG, jpeg_with_size))


@case("coco-empty-caption", "coco-captions", "quarantine", r"(empty|blank) caption",
      survivors=25)
def _(fx: Path, out: Path) -> Built:
    """coco: one caption is whitespace only"""
    return _coco(fx, out, edit_json=lambda d: d["annotations"][4].__setitem__("caption", "  "))


@case("coco-non-utf8", "coco-captions", "quarantine",
      r"captions_train2017\.json \[annotation \d+\]: caption is not valid UTF-8 \(byte 0xe9",
      survivors=25)
def _(fx: Path, out: Path) -> Built:
    """coco: the annotation file has a Latin-1 byte inside one caption (only that one is lost)"""
    return _coco(fx, out, raw=lambda b: b.replace(b"A close up of a tabby", b"A caf\xe9 tabby", 1))


@case("coco-missing-image", "coco-captions", "quarantine",
      r"000000069813\.jpg.*(not found|missing|no such)", survivors=25)
def _(fx: Path, out: Path) -> Built:
    """coco: an image listed in the annotations is not on disk"""
    built = _coco(fx, out)
    (Path(built.uri) / "train2017" / COCO_IMG).unlink()
    return built


@case("coco-path-traversal", "coco-captions", "quarantine",
      r"file_name.*\.\./", survivors=25)
def _(fx: Path, out: Path) -> Built:
    """coco: an image's file_name is '../../escape.jpg' (a real JPEG waits there)"""
    built = _coco(fx, out, edit_json=lambda d: _set_file_name(d, "../../escape.jpg"))
    shutil.copyfile(fx / "image_caption" / "coco" / "train2017" / COCO_IMG, out / "escape.jpg")
    return built


@case("coco-absolute-path", "coco-captions", "quarantine", r"file_name.*/", survivors=25)
def _(fx: Path, out: Path) -> Built:
    """coco: an image's file_name is an absolute path to a real JPEG"""
    target = out / "elsewhere" / "photo.jpg"
    _copy(fx / "image_caption" / "coco" / "train2017" / COCO_IMG, target)
    return _coco(fx, out, edit_json=lambda d: _set_file_name(d, str(target)))


def _set_file_name(d: dict, name: str) -> None:
    for img in d["images"]:
        if img["file_name"] == COCO_IMG:
            img["file_name"] = name


@case("coco-dangling-annotation", "coco-captions", "quarantine",
      r"(image_id|image).*999999999", survivors=26)
def _(fx: Path, out: Path) -> Built:
    """coco: a caption refers to an image id that does not exist"""
    return _coco(fx, out, edit_json=lambda d: d["annotations"].append(
        {"image_id": 999999999, "id": 1, "caption": "An orphan caption."}))


I2D_SHARD = "00000"


def _i2d(fx: Path, out: Path, edit_tar: Callable[[list[tuple[tarfile.TarInfo, bytes | None]]],
                                                 None] | None = None,
         raw: Callable[[bytes], bytes] | None = None) -> Built:
    """Shard 00000 only (10 images + one failed download)."""
    src = fx / "image_caption" / "img2dataset" / "output"
    root = out / "output"
    root.mkdir()
    for suffix in (".tar", ".parquet", "_stats.json"):
        shutil.copyfile(src / f"{I2D_SHARD}{suffix}", root / f"{I2D_SHARD}{suffix}")
    tar_path = root / f"{I2D_SHARD}.tar"
    if edit_tar is not None:
        members: list[tuple[tarfile.TarInfo, bytes | None]] = []
        with tarfile.open(tar_path) as t:
            for m in t.getmembers():
                members.append((m, t.extractfile(m).read() if m.isfile() else None))
        edit_tar(members)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            for info, data in members:
                t.addfile(info, io.BytesIO(data) if data is not None else None)
        tar_path.write_bytes(buf.getvalue())
    if raw is not None:
        tar_path.write_bytes(raw(tar_path.read_bytes()))
    return Built(str(root))


def _member(name: str, data: bytes | None = None, *, kind: bytes = tarfile.REGTYPE,
            link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if data is not None else 0
    info.mode = 0o444
    return info, data


def _extra_sample(members: list, stem: str, *, jpg: tuple | None = None) -> None:
    """Append a sample named ``stem`` (jpg from sample 0000000, a caption)."""
    image = next(d for i, d in members if i.name == "0000000.jpg")
    members.append(jpg or _member(f"{stem}.jpg", image))
    members.append(_member(f"{stem}.txt", b"A sample that must not be read."))


@case("i2d-member-dotdot", "img2dataset", "quarantine",
      r"00000\.tar.*\.\./\.\./escape/0000077", survivors=10)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: tar members named '../../escape/0000077.*' (path traversal)"""
    built = _i2d(fx, out, lambda m: _extra_sample(m, "../../escape/0000077"))
    return dataclasses.replace(built, marker=out / "escape")


@case("i2d-member-absolute", "img2dataset", "quarantine",
      r"00000\.tar @ offset \d+ \[(<root>|/).*/abs/0000078\.(jpg|txt)\]: .*(unsafe|absolute)",
      survivors=10)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: tar members with absolute names"""
    stem = f"{out}/abs/0000078"
    built = _i2d(fx, out, lambda m: _extra_sample(m, stem))
    return dataclasses.replace(built, marker=out / "abs")


@case("i2d-symlink", "img2dataset", "quarantine", r"00000\.tar.*0000079\.jpg.*(link|regular)",
      survivors=10)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a sample's image is a symlink to /etc/passwd"""
    return _i2d(fx, out, lambda m: _extra_sample(
        m, "0000079", jpg=_member("0000079.jpg", kind=tarfile.SYMTYPE, link="/etc/passwd")))


@case("i2d-hardlink", "img2dataset", "quarantine", r"00000\.tar.*0000080\.jpg.*(link|regular)",
      survivors=10)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a sample's image is a hard link to another member"""
    return _i2d(fx, out, lambda m: _extra_sample(
        m, "0000080", jpg=_member("0000080.jpg", kind=tarfile.LNKTYPE, link="0000000.jpg")))


@case("i2d-pyd-member", "img2dataset", "ignored", r"", survivors=10)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a sample carries a .pyd member (webdataset's default decoder unpickles it)"""
    marker = out / "PWNED-by-pyd"
    payload = _pickle_bytes(marker)
    built = _i2d(fx, out, lambda m: m.insert(3, _member("0000000.pyd", payload)))
    return dataclasses.replace(built, marker=marker)


@case("i2d-pickle-member", "img2dataset", "ignored", r"", survivors=10)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a sample carries a .pickle member"""
    marker = out / "PWNED-by-pickle"
    payload = _pickle_bytes(marker)
    built = _i2d(fx, out, lambda m: m.insert(6, _member("0000001.pickle", payload)))
    return dataclasses.replace(built, marker=marker)


def _pickle_bytes(marker: Path) -> bytes:
    import pickle

    return pickle.dumps(Boom(marker))


def _set_member(members: list, name: str, data: bytes) -> None:
    for i, (info, _) in enumerate(members):
        if info.name == name:
            info.size = len(data)
            members[i] = (info, data)
            return
    raise KeyError(name)


@case("i2d-non-utf8-caption", "img2dataset", "quarantine",
      r"00000\.tar.*0000002.*(UTF-8|utf-8|decode)", survivors=9)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a caption .txt is not UTF-8"""
    return _i2d(fx, out, lambda m: _set_member(m, "0000002.txt", b"A caf\xe9 cup of espresso."))


@case("i2d-empty-caption", "img2dataset", "quarantine",
      r"00000\.tar.*0000003.*(empty|blank) caption", survivors=9)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a caption .txt is empty"""
    return _i2d(fx, out, lambda m: _set_member(m, "0000003.txt", b""))


@case("i2d-corrupt-jpeg", "img2dataset", "quarantine",
      r"00000\.tar.*0000004\.jpg.*cannot decode image", survivors=9)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a JPEG member is cut short and garbled"""
    def edit(m: list) -> None:
        data = next(d for i, d in m if i.name == "0000004.jpg")
        _set_member(m, "0000004.jpg", corrupt_jpeg(data))
    return _i2d(fx, out, edit)


@case("i2d-png-bomb", "img2dataset", "quarantine",
      r"00000\.tar.*0000006.*(decompression bomb|exceeds the limit)", survivors=9)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: an image member is a 9000x9000 PNG bomb (named .jpg)"""
    bomb = png_bomb()
    return _i2d(fx, out, lambda m: _set_member(m, "0000006.jpg", bomb))


@case("i2d-truncated-tar", "img2dataset", "error", r"00000\.tar.*(truncat|unexpected end|EOF)")
def _(fx: Path, out: Path) -> Built:
    """img2dataset: the tar shard is cut in the middle of a member"""
    return _i2d(fx, out, raw=lambda b: b[: len(b) // 2 + 100])


@case("i2d-huge-declared-size", "img2dataset", "error",
      r"00000\.tar @ offset \d+: member '0000001\.jpg' declares 1073741824 bytes, above the limit")
def _(fx: Path, out: Path) -> Built:
    """img2dataset: the header of member 0000001.jpg declares 1 GiB of data"""
    built = _i2d(fx, out)
    p = Path(built.uri) / f"{I2D_SHARD}.tar"
    raw = bytearray(p.read_bytes())
    h = _tar_header_offsets(bytes(raw))["0000001.jpg"]
    raw[h + 124: h + 136] = b"%011o\x00" % (1 << 30)
    raw[h + 148: h + 156] = b"        "
    raw[h + 148: h + 156] = b"%06o\x00 " % sum(raw[h: h + 512])
    p.write_bytes(bytes(raw))
    return built


@case("i2d-huge-declared-size-base256", "img2dataset", "error",
      r"00000\.tar @ offset \d+: member '0000001\.jpg' declares 1099511627776 bytes, above the limit")
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a GNU base-256 size field declares 2^40 bytes (tarfile would skip for ever)"""
    built = _i2d(fx, out)
    p = Path(built.uri) / f"{I2D_SHARD}.tar"
    raw = bytearray(p.read_bytes())
    h = _tar_header_offsets(bytes(raw))["0000001.jpg"]
    raw[h + 124: h + 136] = b"\x80" + (1 << 40).to_bytes(11, "big")
    raw[h + 148: h + 156] = b"        "
    raw[h + 148: h + 156] = b"%06o\x00 " % sum(raw[h: h + 512])
    p.write_bytes(bytes(raw))
    return built


def _tar_header_offsets(raw: bytes) -> dict[str, int]:
    """member name -> offset of its 512-byte header (plain ustar/GNU names only)."""
    out, pos = {}, 0
    while pos + 512 <= len(raw) and raw[pos: pos + 512].strip(b"\x00"):
        out[raw[pos: pos + 100].rstrip(b"\x00").decode()] = pos
        size = int(raw[pos + 124: pos + 136].strip(b"\x00 ") or b"0", 8)
        pos += 512 + (size + 511) // 512 * 512
    return out


HF_FILE = "train-00000-of-00001.parquet"


def _hf(fx: Path, out: Path, edit: Callable[[Any], Any] | None = None,
        raw: Callable[[bytes], bytes] | None = None, compression: str = "snappy") -> Built:
    import pyarrow.parquet as pq

    root = out / "data"
    root.mkdir()
    src = fx / "image_caption" / "hf_parquet" / "data" / HF_FILE
    if edit is None and raw is None:
        shutil.copyfile(src, root / HF_FILE)
    else:
        table = pq.read_table(src)
        if edit is not None:
            table = edit(table)
        pq.write_table(table, root / HF_FILE, compression=compression)
        if raw is not None:
            (root / HF_FILE).write_bytes(raw((root / HF_FILE).read_bytes()))
    return Built(str(root))


def _hf_set(row: int, *, image: dict | None = None, caption: str | None = None,
            drop_caption: bool = False) -> Callable[[Any], Any]:
    import pyarrow as pa

    def edit(table: Any) -> Any:
        images = table.column("image").to_pylist()
        captions = table.column("caption").to_pylist()
        if image is not None:
            images[row] = {**images[row], **image}
        if caption is not None or drop_caption:
            captions[row] = caption
        return table.set_column(0, table.schema.field("image"),
                                pa.array(images, table.schema.field("image").type)
                                ).set_column(1, table.schema.field("caption"),
                                             pa.array(captions, pa.string()))
    return edit


def _hf_image_bytes(fx: Path, row: int) -> bytes:
    import pyarrow.parquet as pq

    t = pq.read_table(fx / "image_caption" / "hf_parquet" / "data" / HF_FILE, columns=["image"])
    return t.column("image")[row].as_py()["bytes"]


@case("hf-corrupt-jpeg", "hf-image-parquet", "quarantine",
      r"train-00000-of-00001\.parquet.*(row|@ offset) 3.*cannot decode image", survivors=19)
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: row 3's image bytes are a cut and garbled JPEG"""
    return _hf(fx, out, _hf_set(3, image={"bytes": corrupt_jpeg(_hf_image_bytes(fx, 3))}))


@case("hf-jpeg-bomb", "hf-image-parquet", "quarantine",
      r"train-00000-of-00001\.parquet.*(row|@ offset) 4.*(decompression bomb|exceeds the limit)",
      survivors=19)
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: row 4's JPEG declares 65000x65000 pixels"""
    return _hf(fx, out, _hf_set(4, image={"bytes": jpeg_with_size(_hf_image_bytes(fx, 4))}))


@case("hf-null-caption", "hf-image-parquet", "quarantine",
      r"train-00000-of-00001\.parquet.*(row|@ offset) 5.*caption", survivors=19)
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: row 5's caption is null"""
    return _hf(fx, out, _hf_set(5, drop_caption=True))


@case("hf-empty-caption", "hf-image-parquet", "quarantine",
      r"train-00000-of-00001\.parquet.*(row|@ offset) 6.*(empty|blank) caption", survivors=19)
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: row 6's caption is the empty string"""
    return _hf(fx, out, _hf_set(6, caption=""))


@case("hf-path-only-image", "hf-image-parquet", "quarantine",
      r"train-00000-of-00001\.parquet.*(row|@ offset) 7.*(no image bytes|bytes)", survivors=19)
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: row 7 has no image bytes, only a path to a real local file"""
    target = out / "photo.jpg"
    target.write_bytes(_hf_image_bytes(fx, 7))
    return _hf(fx, out, _hf_set(7, image={"bytes": None, "path": str(target)}))


@case("hf-missing-column", "hf-image-parquet", "error",
      r"train-00000-of-00001\.parquet.*caption")
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: the file has no caption column"""
    return _hf(fx, out, lambda t: t.drop_columns(["caption"]))


@case("hf-truncated", "hf-image-parquet", "error", r"train-00000-of-00001\.parquet")
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: the Parquet file is cut in half (no footer)"""
    built = _hf(fx, out)
    p = Path(built.uri) / HF_FILE
    p.write_bytes(truncate(p.read_bytes()))
    return built


@case("hf-zstd-bomb", "hf-image-parquet", "quarantine",
      r"train-00000-of-00001\.parquet \[row 0\]: image of 83886080 bytes exceeds the limit",
      survivors=19)
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: a zstd Parquet whose row 0 image cell inflates to 80 MiB of zeros"""
    return _hf(fx, out, _hf_set(0, image={"bytes": bytes(80 << 20)}), compression="zstd")


# =================================================================================================
# dqn-replay: gzip + np.save checkpoints
# =================================================================================================
# A small but faithful replay: the first 1,757 slots of Breakout/1 suffix 0 (9 whole episodes, each
# after its 3 padding slots), in a buffer of capacity 1,758 whose last slot was never written, as
# Dopamine's first log looks. add_count = 1757, invalid_range = [cursor-1 .. cursor+3] mod C.

DQN_SLOTS = 1757
DQN_LOGS = "Breakout/1/replay_logs"
DQN_FILES = ("observation", "action", "reward", "terminal", "add_count", "invalid_range")


def dqn_name(field: str, suffix: int = 0) -> str:
    store = field in ("observation", "action", "reward", "terminal")
    return f"{'$store$_' if store else ''}{field}_ckpt.{suffix}.gz"


@functools.lru_cache(maxsize=1)
def _dqn_arrays(fixtures: Path) -> dict[str, np.ndarray]:
    src = fixtures / "atari_dqn_replay" / DQN_LOGS
    out: dict[str, np.ndarray] = {}
    for field in ("observation", "action", "reward", "terminal"):
        a = load_npy_gz(src / dqn_name(field))
        b = np.zeros((DQN_SLOTS + 1,) + a.shape[1:], a.dtype)
        b[:DQN_SLOTS] = a[:DQN_SLOTS]
        out[field] = b
    k, c = DQN_SLOTS, DQN_SLOTS + 1
    out["add_count"] = np.array(k, np.int64)
    out["invalid_range"] = np.array([(k + i) % c for i in range(-1, 4)], np.int64)
    return out


def _dqn(fx: Path, out: Path, edit: Callable[[dict[str, np.ndarray]], None] | None = None,
         raw: dict[str, Callable[[bytes], bytes]] | None = None) -> Built:
    """``edit`` changes arrays before np.save; ``raw`` changes a file's gzip bytes after."""
    arrays = {k: v.copy() for k, v in _dqn_arrays(fx).items()}
    if edit is not None:
        edit(arrays)
    logs = out / "atari_dqn_replay" / DQN_LOGS
    logs.mkdir(parents=True)
    for field, arr in arrays.items():
        payload = arr if isinstance(arr, bytes) else npy_bytes(arr)
        write_gz(logs / dqn_name(field), payload)
    for field, fn in (raw or {}).items():
        p = logs / dqn_name(field)
        p.write_bytes(fn(p.read_bytes()))
    return Built(str(out / "atari_dqn_replay"))


def _dqn_payload(field: str, payload: bytes) -> Callable[[dict], None]:
    return lambda a: a.__setitem__(field, payload)  # bytes: written as the .npy payload as is


def _dqn_set(field: str, slot: int, value: Any) -> Callable[[dict], None]:
    def edit(a: dict) -> None:
        a[field][slot] = value
    return edit


DQN_FILE = r"Breakout/1/replay_logs/"


@case("dqn-truncated-gzip", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_observation_ckpt\.0\.gz @ offset \d+: truncated gzip")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the observation file is cut in half"""
    return _dqn(fx, out, raw={"observation": truncate})


@case("dqn-gzip-crc", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_action_ckpt\.0\.gz @ offset \d+: corrupt gzip.*(CRC|check)")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the action file's gzip CRC32 does not match its data"""
    return _dqn(fx, out, raw={"action": lambda b: flip(b, len(b) - 8, 4)})


@case("dqn-garbled-deflate", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_observation_ckpt\.0\.gz @ offset \d+: (corrupt gzip|truncated)")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: 64 bytes in the middle of the observation file's deflate data are inverted"""
    return _dqn(fx, out, raw={"observation": lambda b: flip(b, len(b) // 2, 64)})


@case("dqn-not-gzip", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_reward_ckpt\.0\.gz @ offset \d+: .*(gzip|header)")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the reward file is a bare .npy, not gzip"""
    def edit(a: dict) -> None:
        a["reward"] = npy_bytes(a["reward"])
    return _dqn(fx, out, edit, raw={"reward": gzip.decompress})


@case("dqn-npy-bad-magic", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_reward_ckpt\.0\.gz @ offset 0: bad \.npy header")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the reward payload does not start with the .npy magic"""
    def edit(a: dict) -> None:
        a["reward"] = b"\x93NUMPZ" + npy_bytes(a["reward"])[6:]
    return _dqn(fx, out, edit)


@case("dqn-npy-bad-header-dict", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_terminal_ckpt\.0\.gz @ offset 0: bad \.npy header")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the terminal payload's header dict is not a Python literal"""
    def edit(a: dict) -> None:
        good = npy_bytes(a["terminal"])
        hlen = struct.unpack_from("<H", good, 8)[0]
        bad = b"{'descr': __import__('os'), 'shape': (1758,)}".ljust(hlen - 1) + b"\n"
        a["terminal"] = good[:10] + bad + good[10 + hlen:]
    return _dqn(fx, out, edit)


@case("dqn-wrong-dtype", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_action_ckpt\.0\.gz @ offset 0: bad \.npy header: dtype '<f8', "
      r"expected '<i4'")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: actions saved as float64 instead of int32"""
    return _dqn(fx, out, lambda a: a.__setitem__("action", a["action"].astype(np.float64)))


@case("dqn-wrong-shape", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_observation_ckpt\.0\.gz.*shape.*84, 80")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: frames are 84x80 instead of 84x84"""
    return _dqn(fx, out, lambda a: a.__setitem__(
        "observation", np.ascontiguousarray(a["observation"][:, :, :80])))


@case("dqn-fortran-order", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_observation_ckpt\.0\.gz @ offset 0: bad \.npy header: "
      r"fortran_order")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the observation array is saved in Fortran order"""
    return _dqn(fx, out, lambda a: a.__setitem__(
        "observation", npy_bytes(a["observation"], fortran=True)))


@case("dqn-pickled-object-array", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_action_ckpt\.0\.gz @ offset 0: bad \.npy header: object dtype")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the action file is a pickled object array whose loading would create a file"""
    marker = out / "PWNED-by-npy"
    built = _dqn(fx, out, _dqn_payload("action", pickle_npy(marker)))
    return dataclasses.replace(built, marker=marker)


@case("dqn-pickled-episode-end-indices", "dqn-replay", "ignored", r"", survivors=9)
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: a Dopamine 4.x pickled episode_end_indices file sits beside the checkpoint"""
    marker = out / "PWNED-by-episode-end-indices"
    built = _dqn(fx, out)
    write_gz(Path(built.uri) / DQN_LOGS / "episode_end_indices_ckpt.0.gz", pickle_npy(marker))
    return dataclasses.replace(built, marker=marker)


@case("dqn-length-mismatch", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_reward_ckpt\.0\.gz: length mismatch: 1757 slots but .*1758")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the reward file of the checkpoint has one slot fewer than the others"""
    return _dqn(fx, out, lambda a: a.__setitem__("reward", a["reward"][:-1]))


@case("dqn-observation-length-mismatch", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_observation_ckpt\.0\.gz @ offset 0: .*shape \(1700, 84, 84\), "
      r"expected \(1758, 84, 84\)")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the observation file holds 1,700 frames for 1,758 slots"""
    return _dqn(fx, out, lambda a: a.__setitem__("observation", a["observation"][:1700]))


@case("dqn-missing-file", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_terminal_ckpt\.0\.gz: missing")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the checkpoint has no terminal file"""
    built = _dqn(fx, out)
    (Path(built.uri) / DQN_LOGS / dqn_name("terminal")).unlink()
    return built


@case("dqn-huge-declared-shape", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_observation_ckpt\.0\.gz @ offset 0: bad \.npy header: "
      r"\d+ slots outside")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the observation header declares 2^40 frames (a 7 PB array)"""
    def edit(a: dict) -> None:
        header = {"descr": "|u1", "fortran_order": False, "shape": (1 << 40, 84, 84)}
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, header)
        a["observation"] = buf.getvalue() + a["observation"].tobytes()[:1 << 16]
    return _dqn(fx, out, edit)


@case("dqn-gzip-bomb", "dqn-replay", "error",
      DQN_FILE + r"add_count_ckpt\.0\.gz @ offset \d+: \d+ bytes follow the \.npy payload")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: add_count's 8-byte payload is followed by 256 MiB of zeros (0.3 MB of gzip)"""
    built = _dqn(fx, out)
    p = Path(built.uri) / DQN_LOGS / dqn_name("add_count")
    p.write_bytes(zero_bomb_gzip(256 << 20, prefix=npy_bytes(np.array(DQN_SLOTS, np.int64))))
    return built


@case("dqn-negative-add-count", "dqn-replay", "error",
      DQN_FILE + r"add_count_ckpt\.0\.gz: add_count -5 out of range")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: add_count is negative"""
    return _dqn(fx, out, lambda a: a.__setitem__("add_count", np.array(-5, np.int64)))


@case("dqn-terminal-not-bool", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_terminal_ckpt\.0\.gz \[slot 400\]: terminal flag 7 is not 0/1")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: a terminal flag of 7"""
    return _dqn(fx, out, _dqn_set("terminal", 400, 7))


@case("dqn-nan-reward", "dqn-replay", "quarantine",
      r"Breakout/1.*rewards.*non-finite value nan at step 50", survivors=8)
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: a NaN reward at step 50 of the third episode (slots 327..558)"""
    return _dqn(fx, out, _dqn_set("reward", 327 + 50, np.nan))


@case("dqn-inf-reward", "dqn-replay", "quarantine",
      r"Breakout/1.*rewards.*non-finite value inf at step 0", survivors=8)
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: an infinite reward on the first step of the first episode"""
    return _dqn(fx, out, _dqn_set("reward", 3, np.inf))


@case("dqn-action-1024", "dqn-replay", "quarantine",
      r"Breakout/1.*action 1024 at step 10 outside", survivors=8)
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: action 1024 at step 10 of the second episode (slots 194..323)"""
    return _dqn(fx, out, _dqn_set("action", 194 + 10, 1024))


@case("dqn-action-1024-token-range", "dqn-replay", "quarantine",
      r"Breakout/1.*actions.*discrete value 1024 outside \[0, 1024\)", survivors=8)
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: action 1024 with num_actions=4096 allowed: the token range still refuses it"""
    built = _dqn(fx, out, _dqn_set("action", 1216 + 7, 1024))
    return dataclasses.replace(built, options={"num_actions": 4096})


@case("dqn-action-negative", "dqn-replay", "quarantine",
      r"Breakout/1.*action -3 at step 20 outside", survivors=8)
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: action -3 at step 20 of the last episode (slots 1544..1757)"""
    return _dqn(fx, out, _dqn_set("action", 1544 + 20, -3))


@case("dqn-nonzero-padding", "dqn-replay", "error",
      r"Breakout/1/replay_logs.*(padding|slot 1541)")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: a padding slot before an episode holds a non-zero action"""
    return _dqn(fx, out, _dqn_set("action", 1541, 2))


# =================================================================================================
# What a file declares about itself (issue 12): types, nesting, sizes, ids, names
# =================================================================================================

def _json_file(name: str, edit: Callable[[Any], Any]) -> tuple[str, Callable[[bytes], bytes]]:
    return name, lambda data: json.dumps(edit(json.loads(data))).encode()


def _first_split(edit: Callable[[dict], None]) -> Callable[[Any], Any]:
    def go(info: Any) -> Any:
        edit(info["splits"][0])
        return info
    return go


@case("rlds-dataset-info-list", "rlds", "error",
      r"dataset_info\.json \[<root>\]: Input should be a valid dictionary")
def _(fx: Path, out: Path) -> Built:
    """rlds: dataset_info.json is a JSON list holding the object"""
    return _rlds(fx, out, edit_file=_json_file("dataset_info.json", lambda d: [d]))


@case("rlds-shard-length-float", "rlds", "error",
      r"dataset_info\.json \[splits\.0\.shardLengths\.0\]: ")
def _(fx: Path, out: Path) -> Built:
    """rlds: a shard length written as the string "4.0" (protobuf JSON writes int64 as "4")"""
    return _rlds(fx, out, edit_file=_json_file(
        "dataset_info.json", _first_split(lambda s: s.__setitem__("shardLengths", ["4.0"]))))


@case("rlds-huge-declared-tensor", "rlds", "error",
      r"features\.json \[steps/action\]: declared shape \[1099511627776\] of 4-byte values "
      r"needs 4398046511104 bytes, above the limit")
def _(fx: Path, out: Path) -> Built:
    """rlds: features.json declares a 2^40-value action per step (4 TiB): no allocation"""
    def edit(data: bytes) -> bytes:
        doc = json.loads(data)
        steps = doc["featuresDict"]["features"]["steps"]["sequence"]["feature"]
        steps["featuresDict"]["features"]["action"]["tensor"]["shape"]["dimensions"] = \
            [str(1 << 40)]
        return json.dumps(doc).encode()
    return _rlds(fx, out, edit_file=("features.json", edit))


@case("rlds-empty-shard", "rlds", "error",
      r"tfrecord-00000: empty TFRecord file: no records \(0 bytes\)")
def _(fx: Path, out: Path) -> Built:
    """rlds: the shard file is empty (0 bytes) while dataset_info.json declares 4 episodes"""
    return _rlds(fx, out, edit_file=(RLDS_SHARD, lambda data: b""))


@case("rlu-empty-shard", "rlu-atari", "error",
      r"run_1-00000-of-00001: empty TFRecord file: no records \(0 bytes\)")
def _(fx: Path, out: Path) -> Built:
    """rlu-atari: the shard file is empty (0 bytes): the error names it, not an episode"""
    built = _rlu(fx, out, edit_raw=lambda data: b"")
    return Built(built.uri, {"layout": "episodes"})


def _minari_meta(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def go(data: Path) -> None:
        meta = json.loads((data / "metadata.json").read_text())
        edit(meta)
        (data / "metadata.json").write_text(json.dumps(meta))
    return go


def _string_shapes(meta: dict) -> None:
    space = json.loads(meta["observation_space"])
    space["shape"] = [str(d) for d in space["shape"]]
    meta["observation_space"] = json.dumps(space)


@case("minari-string-shapes", "minari", "error",
      r"metadata\.json \[observation_space\.shape\.0\]: Input should be a valid integer")
def _(fx: Path, out: Path) -> Built:
    """minari: the observation space's shape is written as strings (["11"])"""
    return _minari(fx, out, edit_path=_minari_meta(_string_shapes))


@case("minari-deep-env-spec", "minari", "error",
      r"metadata\.json \[env_spec\]: JSON nested deeper than the limit of 64 levels")
def _(fx: Path, out: Path) -> Built:
    """minari: env_spec is a JSON string nested 100,000 levels deep"""
    return _minari(fx, out, edit_path=_minari_meta(
        lambda m: m.__setitem__("env_spec", "[" * 100_000 + "]" * 100_000)))


@case("minari-scalar-terminations", "minari", "quarantine",
      r"main_data\.hdf5 \[episode_5/terminations\]: expected one value per step, got a scalar",
      survivors=39)
def _(fx: Path, out: Path) -> Built:
    """minari: one episode's 'terminations' is a scalar, not one flag per step"""
    return _minari(fx, out, edit=lambda f: _replace(f["episode_5"], "terminations",
                                                    np.bool_(True)))


@case("coco-duplicate-image-id", "coco-captions", "quarantine",
      r"captions_train2017\.json \[annotation \d+\]: image_id 208838 is listed 2 times "
      r"\(images\[0\], images\[20\]\)", survivors=24)
def _(fx: Path, out: Path) -> Built:
    """coco: images[] lists id 208838 twice with different files (its 2 captions are ambiguous)"""
    def edit(d: dict) -> None:
        d["images"].append({**d["images"][0], "file_name": d["images"][1]["file_name"]})
    return _coco(fx, out, edit_json=edit)


@case("coco-deep-nesting", "coco-captions", "error",
      r"captions_train2017\.json: JSON nested deeper than the limit of 64 levels")
def _(fx: Path, out: Path) -> Built:
    """coco: a value of the annotation file is nested 100,000 levels deep"""
    return _coco(fx, out, raw=lambda data: data.replace(
        b'"annotations"', b'"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b', "annotations"', 1))


@case("i2d-member-json-deep", "img2dataset", "quarantine",
      r"00000\.tar @ offset \d+ \[0000004\.json\]: JSON nested deeper than the limit",
      survivors=9)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: a sample's .json member is nested 100,000 levels deep"""
    return _i2d(fx, out, lambda m: _set_member(m, "0000004.json",
                                               b"[" * 100_000 + b"]" * 100_000))


@case("i2d-duplicate-member", "img2dataset", "quarantine",
      r"00000\.tar @ offset \d+ \[0000004\.jpg\]: member appears twice in one sample",
      survivors=9)
def _(fx: Path, out: Path) -> Built:
    """img2dataset: sample 0000004 holds two .jpg members (the second is another photo)"""
    def edit(members: list) -> None:
        other = next(d for info, d in members if info.name == "0000006.jpg")
        at = next(i for i, (info, _) in enumerate(members) if info.name == "0000004.jpg")
        extra = tarfile.TarInfo("0000004.jpg")
        extra.size = len(other)
        members.insert(at + 1, (extra, other))
    return _i2d(fx, out, edit)


def _hf_metadata(value: bytes) -> Callable[[Any], Any]:
    return lambda table: table.replace_schema_metadata({b"huggingface": value})


@case("hf-metadata-list", "hf-image-parquet", "error",
      r"train-00000-of-00001\.parquet \[huggingface\]: Input should be a valid dictionary")
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: the 'huggingface' schema metadata is a JSON list"""
    return _hf(fx, out, _hf_metadata(b'[{"info": {}}]'))


@case("hf-metadata-not-utf8", "hf-image-parquet", "error",
      r"train-00000-of-00001\.parquet \[huggingface\]: not UTF-8 \(byte 0xe9")
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: the 'huggingface' schema metadata holds a Latin-1 byte"""
    return _hf(fx, out, _hf_metadata(b'{"info": {"description": "caf\xe9"}}'))


@case("hf-image-bytes-int", "hf-image-parquet", "error",
      r"train-00000-of-00001\.parquet \[image\.bytes\]: image field 'bytes' must be binary")
def _(fx: Path, out: Path) -> Built:
    """hf-image-parquet: the Image struct's 'bytes' field is an int64"""
    import pyarrow as pa

    def edit(table: Any) -> Any:
        t = pa.struct([("bytes", pa.int64()), ("path", pa.string())])
        images = pa.array([{"bytes": i, "path": None} for i in range(table.num_rows)], t)
        i = table.schema.get_field_index("image")
        return table.set_column(i, "image", images).replace_schema_metadata(None)
    return _hf(fx, out, edit)


def _dqn_raw_header(field: str, header: str) -> Callable[[dict], None]:
    """A .npy version 1.0 payload whose header dict is ``header`` verbatim (np.save would
    refuse or rewrite it), followed by 64 zero bytes."""
    text = header.encode("latin-1")
    return _dqn_payload(field, b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
                        + bytes(64))


@case("dqn-npy-dimension-overflow", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_reward_ckpt\.0\.gz @ offset 0: bad \.npy header: "
      r"18446744073709551617 slots outside")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the reward header declares 2^64+1 slots (beyond int64: numpy's parser fails)"""
    return _dqn(fx, out, _dqn_raw_header(
        "reward", "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551617,), }"))


@case("dqn-npy-header-not-literal", "dqn-replay", "error",
      DQN_FILE + r"\$store\$_action_ckpt\.0\.gz @ offset 0: bad \.npy header: header is not a "
      r"Python literal")
def _(fx: Path, out: Path) -> Built:
    """dqn-replay: the action header holds an expression (2**70), not a literal"""
    return _dqn(fx, out, _dqn_raw_header(
        "action", "{'descr': '<i4', 'fortran_order': False, 'shape': (2**70,), }"))


# -- lerobot ---------------------------------------------------------------------------------

LR_V21_VIDEO = "videos/chunk-000/observation.images.cam_high/episode_000001.mp4"
LR_V30_EPISODES = "meta/episodes/chunk-000/file-000.parquet"


def _lerobot(fx: Path, out: Path, name: str = "v30_av1",
             edit: Callable[[Path], None] | None = None) -> Built:
    """A copy of a lerobot-written fixture (tests/fixtures/lerobot/NAME/dataset), then ``edit``."""
    root = out / "dataset"
    shutil.copytree(fx / "lerobot" / name / "dataset", root)
    if edit is not None:
        edit(root)
    return Built(str(root))


def _lr_info(change: Callable[[dict], None], name: str = "v30_av1") -> Callable[[Path, Path],
                                                                             Built]:
    def build_(fx: Path, out: Path) -> Built:
        def edit(root: Path) -> None:
            info = json.loads((root / "meta/info.json").read_text())
            change(info)
            (root / "meta/info.json").write_text(json.dumps(info))
        return _lerobot(fx, out, name, edit)
    return build_


def _lr_episodes_meta(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Rewrite v3.0 meta/episodes/chunk-000/file-000.parquet through a pyarrow Table edit."""
    def edit(root: Path) -> None:
        import pyarrow.parquet as pq

        path = root / LR_V30_EPISODES
        pq.write_table(change(pq.read_table(path)), path)
    return edit


def _lr_v21_lines(file: str, change: Callable[[dict], dict | None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "meta" / file
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        kept = [r for r in (change(dict(r)) for r in rows) if r is not None]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return edit


for _name, _what, _change, _pattern in (
        ("lerobot-unknown-version", "lerobot: info.json codebase_version is v9.9",
         lambda i: i.update(codebase_version="v9.9"),
         r"meta/info\.json \[codebase_version\]: unsupported codebase_version 'v9\.9'"),
        ("lerobot-info-features-list", "lerobot: info.json features is a list, not an object",
         lambda i: i.update(features=list(i["features"])),
         r"meta/info\.json \[features\]: Input should be a valid dictionary"),
        ("lerobot-info-fps-string", "lerobot: info.json fps is the string \"30\"",
         lambda i: i.update(fps="30"), r"meta/info\.json \[fps\]: Input should be a valid number"),
        ("lerobot-data-path-escape", "lerobot: data_path climbs out of the dataset folder",
         lambda i: i.update(data_path="../../{chunk_index:03d}/{file_index:03d}.parquet"),
         r"file-000\.parquet \[data_path\]: info\.json data_path gives "
         r"'\.\./\.\./000/000\.parquet', which leaves the dataset folder"),
        ("lerobot-data-path-attribute", "lerobot: data_path reads an attribute of a field",
         lambda i: i.update(data_path="data/{chunk_index.__class__}.parquet"),
         r"meta/info\.json \[data_path\]: template field \{chunk_index\.__class__\} is not one"),
        ("lerobot-camera-shape", "lerobot: a camera declared with shape [48, 64] (no channels)",
         lambda i: i["features"]["observation.images.front"].update(shape=[48, 64]),
         r"meta/info\.json \[features\.observation\.images\.front\.shape\]: camera shape")):
    case(_name, "lerobot", "error", _pattern, what=_what)(_lr_info(_change))


@case("lerobot-missing-video", "lerobot", "quarantine",
      r"episode_000001\.mp4: missing video file", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """lerobot v2.1: episode 1's camera video is deleted"""
    return _lerobot(fx, out, "v21_video", lambda root: (root / LR_V21_VIDEO).unlink())


@case("lerobot-truncated-video", "lerobot", "quarantine",
      r"episode_000001\.mp4: cannot open video: Invalid data found when processing input$",
      survivors=2)
def _(fx: Path, out: Path) -> Built:
    """lerobot v2.1: episode 1's video file is cut in half"""
    def edit(root: Path) -> None:
        data = (root / LR_V21_VIDEO).read_bytes()
        (root / LR_V21_VIDEO).write_bytes(data[: len(data) // 2])
    return _lerobot(fx, out, "v21_video", edit)


@case("lerobot-truncated-shared-video", "lerobot", "quarantine",
      r"file-000\.mp4 \[observation\.images\.front, episode 1\]: cannot decode: Invalid data",
      survivors=1)
def _(fx: Path, out: Path) -> Built:
    """lerobot v3.0: the front camera's file (3 episodes back to back) is cut at 60%"""
    def edit(root: Path) -> None:
        path = root / "videos/observation.images.front/chunk-000/file-000.mp4"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 6 // 10])
    return _lerobot(fx, out, "v30_av1", edit)


@case("lerobot-timestamps-beyond-video", "lerobot", "quarantine",
      r"file-000\.mp4 \[observation\.images\.front, episode 2\]: no frame within 0\.0167s of "
      r"7\.\d+s \(row 0 of 17; the video ends at 2\.7000s\)", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """lerobot v3.0: episode 2's front-camera time span starts 5 s after the video ends"""
    def change(table: Any) -> Any:
        for col in ("from_timestamp", "to_timestamp"):
            name = f"videos/observation.images.front/{col}"
            values = table.column(name).to_pylist()
            values[2] += 5.0
            table = table.set_column(table.schema.get_field_index(name), name,
                                     __import__("pyarrow").array(values))
        return table
    return _lerobot(fx, out, "v30_av1", _lr_episodes_meta(change))


@case("lerobot-more-frames-than-rows", "lerobot", "quarantine",
      r"episode_000001\.mp4 \[observation\.images\.cam_high, episode 1\]: 30 frames in the file "
      r"but the episode has 25 rows", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """lerobot v2.1: episode 1's rows (and length) cut to 25; its video still holds 30 frames"""
    def edit(root: Path) -> None:
        import pyarrow.parquet as pq

        path = root / "data/chunk-000/episode_000001.parquet"
        pq.write_table(pq.read_table(path).slice(0, 25), path)
        _lr_v21_lines("episodes.jsonl", lambda r: {**r, "length": 25}
                      if r["episode_index"] == 1 else r)(root)
    return _lerobot(fx, out, "v21_video", edit)


@case("lerobot-rows-vs-length", "lerobot", "quarantine",
      r"episode_000001\.parquet \[episode 1\]: 30 rows but the episode metadata says length 31",
      survivors=2)
def _(fx: Path, out: Path) -> Built:
    """lerobot v2.1: episodes.jsonl says episode 1 has 31 frames; its file holds 30 rows"""
    return _lerobot(fx, out, "v21_video", _lr_v21_lines(
        "episodes.jsonl", lambda r: {**r, "length": 31} if r["episode_index"] == 1 else r))


@case("lerobot-unknown-task-index", "lerobot", "quarantine",
      r"episode_000001\.parquet \[episode 1\]: task_index 1 is not in the tasks table",
      survivors=2)
def _(fx: Path, out: Path) -> Built:
    """lerobot v2.1: tasks.jsonl lacks the task episode 1 uses"""
    return _lerobot(fx, out, "v21_video", _lr_v21_lines(
        "tasks.jsonl", lambda r: None if r["task_index"] == 1 else r))


@case("lerobot-episodes-missing-column", "lerobot", "error",
      r"meta/episodes/chunk-000/file-000\.parquet \[dataset_from_index\]: missing column")
def _(fx: Path, out: Path) -> Built:
    """lerobot v3.0: the episode-metadata file has no dataset_from_index column"""
    return _lerobot(fx, out, "v30_av1", _lr_episodes_meta(
        lambda t: t.drop_columns(["dataset_from_index"])))


@case("lerobot-state-width", "lerobot", "quarantine",
      r"file-000\.parquet \[episode \d\]: column 'observation\.state' has 6 values per row, "
      r"info\.json declares shape \[7\]", survivors=0)
def _(fx: Path, out: Path) -> Built:
    """lerobot v3.0: info.json declares observation.state of shape [7]; the rows hold 6"""
    def change(info: dict) -> None:
        info["features"]["observation.state"].update(shape=[7], names=None)
    return _lr_info(change)(fx, out)


VPT_GOOD = "7.6/brisk-amber-otter-2fb9581649fd-20220412-101503"  # 50 lines, no GUI
VPT_GUI = "8.0/quiet-linen-heron-879997e26d5f-20220315-122354"  # 40 lines, GUI stretches


def _vpt(fx: Path, out: Path, lines: Callable[[list], list] | None = None,
         mp4: bytes | None = None, index: Any = None) -> Built:
    """Two VPT recordings and an index listing them and a lost one; ``lines`` edits the first
    recording's jsonl (a list of parsed lines, or raw strings for non-JSON), ``mp4`` replaces its
    video, ``index`` the index document."""
    relpaths = [VPT_GOOD, VPT_GUI]
    for rel in relpaths:
        (out / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".mp4", ".jsonl"):
            shutil.copyfile(fx / "vpt" / "data" / f"{rel}{suffix}", out / "data" / f"{rel}{suffix}")
    first = out / "data" / f"{VPT_GOOD}.jsonl"
    if lines is not None:
        edited = lines([json.loads(x) for x in first.read_text().splitlines()])
        first.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                                 for x in edited))
    if mp4 is not None:
        (out / "data" / f"{VPT_GOOD}.mp4").write_bytes(mp4)
    doc = {"basedir": "data/",
           "relpaths": [*relpaths, "7.6/lost-upload-0123456789ab-20220412-103003"]}
    (out / "index.json").write_text(json.dumps(doc if index is None else index))
    return Built(str(out / "index.json"))


def _vpt_line(i: int, edit: Callable[[dict], Any]) -> Callable[[list], list]:
    def change(lines: list) -> list:
        lines[i] = edit(lines[i])
        return lines
    return change


def _without(key: str) -> Callable[[dict], dict]:
    return lambda d: {k: v for k, v in d.items() if k != key}


@case("vpt-line-not-json", "vpt", "quarantine",
      r"brisk-amber-otter.*\.jsonl line 5: not JSON", survivors=1)
def _(fx: Path, out: Path) -> Built:
    """vpt: line 5 of a recording's jsonl is not JSON (a cut write)"""
    return _vpt(fx, out, _vpt_line(5, lambda d: json.dumps(d)[:40]))


@case("vpt-no-hotbar", "vpt", "quarantine",
      r"\.jsonl line 0: no hotbar field \(recorder < 6\.11\)", survivors=1)
def _(fx: Path, out: Path) -> Built:
    """vpt: a recording without `hotbar` on any line (recorder < 6.11; the reference crashes)"""
    return _vpt(fx, out, lambda ls: [_without("hotbar")(d) for d in ls])


@case("vpt-hotbar-on-some-lines", "vpt", "quarantine",
      r"\.jsonl line 9: field 'hotbar' is present on some lines only", survivors=1)
def _(fx: Path, out: Path) -> Built:
    """vpt: one line lacks the `hotbar` the others have"""
    return _vpt(fx, out, _vpt_line(9, _without("hotbar")))


@case("vpt-nan-mouse", "vpt", "quarantine",
      r"\.jsonl line 4: field 'mouse\.dy' must be a finite number, got nan", survivors=1)
def _(fx: Path, out: Path) -> Built:
    """vpt: a mouse motion written as NaN"""
    return _vpt(fx, out, _vpt_line(4, lambda d: {**d, "mouse": {**d["mouse"], "dy": float("nan")}}))


@case("vpt-keys-wrong-type", "vpt", "quarantine",
      r"\.jsonl line 2: field 'keyboard\.keys' must be a list of str", survivors=1)
def _(fx: Path, out: Path) -> Built:
    """vpt: `keyboard.keys` holds a number"""
    return _vpt(fx, out, _vpt_line(2, lambda d: {**d, "keyboard": {**d["keyboard"], "keys": [7]}}))


@case("vpt-video-shorter", "vpt", "quarantine",
      r"brisk-amber-otter.*\.mp4: the video has 40 frames but the jsonl has 50 lines", survivors=1)
def _(fx: Path, out: Path) -> Built:
    """vpt: the video has fewer frames (40) than the jsonl has lines (50)"""
    return _vpt(fx, out, mp4=(fx / "vpt" / "data" / f"{VPT_GUI}.mp4").read_bytes())


@case("vpt-garbage-mp4", "vpt", "quarantine",
      r"brisk-amber-otter.*\.mp4: cannot open video: Invalid data found", survivors=1)
def _(fx: Path, out: Path) -> Built:
    """vpt: the mp4 is garbage after a valid-looking ftyp box"""
    return _vpt(fx, out, mp4=b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)


@case("vpt-index-list", "vpt", "error", r"index\.json: an index must be a JSON object")
def _(fx: Path, out: Path) -> Built:
    """vpt: the index is a JSON list of relpaths"""
    return _vpt(fx, out, index=[VPT_GOOD])


@case("vpt-index-escape", "vpt", "error",
      r"index\.json: relpaths\[0\] must be a relative path without '\.\.'")
def _(fx: Path, out: Path) -> Built:
    """vpt: a relpath climbs out of the basedir with '..'"""
    return _vpt(fx, out, index={"basedir": "data/", "relpaths": ["../../etc/passwd"]})


@case("vpt-options-garbage", "vpt", "ignored", r"", survivors=2)
def _(fx: Path, out: Path) -> Built:
    """vpt: a recording's -options.json is garbage (never read)"""
    built = _vpt(fx, out)
    (out / "data" / f"{VPT_GOOD}-options.json").write_bytes(b"\xff\xfe{{{ not json")
    return built


def build_clean(kind: str, dest: Path, variant: str = "", fixtures: Path = FIXTURES) -> Built:
    """The trimmed good input that the cases of ``kind`` (and ``variant``) break, unbroken."""
    makers: dict[tuple[str, str], Callable[[Path, Path], Built]] = {
        ("rlu-atari", ""): _rlu, ("rlds", ""): _rlds, ("minari", ""): _minari,
        ("minari", "arrow"): lambda fx, out: _minari(fx, out, "hopper/mixed-arrow-v0"),
        ("d4rl", ""): _d4rl, ("coco-captions", ""): _coco, ("img2dataset", ""): _i2d,
        ("hf-image-parquet", ""): _hf, ("dqn-replay", ""): _dqn,
        ("lerobot", ""): _lerobot,
        ("lerobot", "v21"): lambda fx, out: _lerobot(fx, out, "v21_video"),
        ("vpt", ""): _vpt,
    }
    dest.mkdir(parents=True, exist_ok=True)
    return makers[(kind, variant)](fixtures, dest)


def variant_of(c: Case) -> str:
    """Which clean input a case starts from, when a kind has more than one."""
    if c.name.startswith("minari-arrow"):
        return "arrow"
    v21 = ("lerobot-missing-video", "lerobot-truncated-video", "lerobot-more-frames-than-rows",
           "lerobot-rows-vs-length", "lerobot-unknown-task-index")
    return "v21" if c.name in v21 else ""


def main(argv: list[str] | None = None) -> int:
    """``python make_corpus.py OUT [NAME ...]``: write the cases (all by default) under OUT."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__.splitlines()[0])
        print("usage: make_corpus.py OUT [CASE ...]")
        return 2
    dest = Path(args[0])
    wanted = set(args[1:])
    index = []
    for c in CASES:
        if wanted and c.name not in wanted:
            continue
        built = build(c, dest)
        index.append({"name": c.name, "kind": c.kind, "outcome": c.outcome, "pattern": c.pattern,
                      "survivors": c.survivors, "what": c.what, "uri": built.uri,
                      "options": built.options,
                      "marker": str(built.marker) if built.marker else None})
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "index.json").write_text(json.dumps(index, indent=1))
    print(f"{len(index)} cases written under {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

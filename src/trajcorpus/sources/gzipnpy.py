"""A gzip file holding one ``np.save`` payload, read incrementally with bounded memory (the DQN
Replay Dataset's storage: ``$store$_observation_ckpt.N.gz`` is C x 84 x 84 bytes, 7 GB for
C = 10^6, so it is streamed, never loaded whole).
"""

from __future__ import annotations

import math
import zlib
from typing import IO

import numpy as np

try:  # ISA-L's inflate is 3-4x faster than zlib's on these frames; same API, optional
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - exercised where python-isal is absent
    _inflate = zlib  # type: ignore[assignment]

from .. import fs
from ..errors import SourceError
from .metadata import parse_npy_header

__all__ = ["GzipNpyStream", "read_small_array", "MAX_CAPACITY", "MAX_FRAME_PIXELS"]

MAX_CAPACITY = 1 << 24  # slots per checkpoint we accept (real data: 10^6); refuses header bombs
MAX_FRAME_PIXELS = 1 << 20
GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header + trailer (CRC32, ISIZE) checked by zlib itself
IN_CHUNK = 1 << 18  # compressed bytes per read: small, so unconsumed tails stay cheap to re-feed
OUT_CHUNK = 1 << 23  # decompressed bytes per zlib call: the bound on the stream's own memory


class GzipNpyStream:
    """A gzip file holding one ``np.save`` payload, decompressed incrementally with bounded memory.

    It reads the raw bytes through :func:`trajcorpus.fs.open_uri`, so gs:// streams as well, and
    turns every failure (truncation, corrupt deflate data, CRC mismatch, bad .npy header, trailing
    bytes) into a :class:`SourceError` naming the file, the compressed byte offset and the reason.
    """

    def __init__(self, uri: str):
        self.uri = uri
        try:
            self._fh: IO[bytes] = fs.open_uri(uri, "rb")
        except FileNotFoundError:
            raise SourceError(uri, "missing file") from None
        except OSError as e:
            raise SourceError(uri, f"cannot open: {e}") from None
        self._z = _inflate.decompressobj(GZIP_WBITS)
        self._in = b""
        self._buf = memoryview(b"")
        self._at = 0
        self._raw = 0  # compressed bytes read from the file so far
        self._ended = False
        self.position = 0  # payload (uncompressed) bytes handed out so far
        self.shape: tuple[int, ...] = ()
        self.dtype = np.dtype(np.uint8)
        self.header_size = 0

    def __enter__(self) -> GzipNpyStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    # -- errors ------------------------------------------------------------------------------------
    def error(self, reason: str) -> SourceError:
        return SourceError(self.uri, reason, offset=max(0, self._raw - len(self._in)))

    def _where(self) -> str:
        if self.header_size and len(self.shape) >= 1 and self.shape[0]:
            per = max(1, math.prod(self.shape[1:]) * self.dtype.itemsize)
            slot = (self.position - self.header_size) // per
            return f"uncompressed byte {self.position} (slot {slot} of {self.shape[0]})"
        return f"uncompressed byte {self.position}"

    # -- decompression -----------------------------------------------------------------------------
    def _read_raw(self) -> bytes:
        try:
            data = self._fh.read(IN_CHUNK)
        except OSError as e:
            raise self.error(f"read failed: {e}") from None
        self._raw += len(data)
        return data

    def _next_member(self) -> bool:
        """After one gzip member: start the next one, skip zero padding, or report the end."""
        rest = self._z.unused_data
        while True:
            rest = rest.lstrip(b"\0")
            if rest:
                break
            rest = self._read_raw()
            if not rest:
                return False
        if rest[:2] != b"\x1f\x8b":
            raise self.error(f"trailing bytes after the gzip stream at {self._where()}")
        self._z = _inflate.decompressobj(GZIP_WBITS)
        self._in = rest
        return True

    def _more(self) -> bool:
        """Decompress the next piece of payload into the buffer; False at the end of the data."""
        if self._ended:
            return False
        while True:
            if self._z.eof and not self._next_member():
                self._ended = True
                return False
            if not self._in:
                self._in = self._read_raw()
                if not self._in:
                    raise self.error(f"truncated gzip: the compressed data ends at {self._where()} "
                                     "before the end-of-stream marker")
            try:
                out = self._z.decompress(self._in, OUT_CHUNK)
            except (zlib.error, _inflate.error) as e:
                raise self.error(f"corrupt gzip data near {self._where()}: {e}") from None
            self._in = self._z.unconsumed_tail
            if out:
                self._buf, self._at = memoryview(out), 0
                return True

    def _advance(self, n: int, sink: memoryview | None) -> int:
        got = 0
        while got < n:
            if self._at >= len(self._buf) and not self._more():
                break
            k = min(n - got, len(self._buf) - self._at)
            if sink is not None:
                sink[got:got + k] = self._buf[self._at:self._at + k]
            self._at += k
            got += k
            self.position += k
        return got

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the data): the file API np.lib.format uses."""
        out = bytearray(n)
        got = self._advance(n, memoryview(out))
        return bytes(out[:got])

    def readinto(self, array: np.ndarray) -> None:
        """Fill a C-contiguous array from the payload or raise (truncated payload)."""
        view = memoryview(array).cast("B")
        need = len(view)
        if self._advance(need, view) != need:
            raise self.error(f"truncated payload: the data ends at {self._where()}, "
                             f"{self._payload_size()} payload bytes expected")

    def skip(self, n: int) -> None:
        if self._advance(n, None) != n:
            raise self.error(f"truncated payload: the data ends at {self._where()}, "
                             f"{self._payload_size()} payload bytes expected")

    def _payload_size(self) -> int:
        return self.header_size + math.prod(self.shape) * self.dtype.itemsize

    def finish(self) -> None:
        """Check that the payload ends exactly with the gzip data (and so that its CRC is right)."""
        extra = len(self._buf) - self._at
        while self._more():
            extra += len(self._buf)
            self._at = len(self._buf)
        if extra:
            raise self.error(f"{extra} bytes follow the .npy payload of {self._payload_size()} bytes")

    # -- .npy header -------------------------------------------------------------------------------
    def read_header(self, dtype: np.dtype | type, ndim: int) -> tuple[int, ...]:
        """Parse and check the .npy header (never unpickles); return the array shape.

        The header goes through :func:`~trajcorpus.sources.metadata.parse_npy_header` (a bounded
        literal with checked types), and the declared slot count and frame size are bounded
        before anything is allocated.
        """
        h = parse_npy_header(self.read, self.uri, limit=None)  # bounded below
        want = np.dtype(dtype)
        shape = h.shape

        def fail(reason: str) -> SourceError:
            return SourceError(self.uri, f"bad .npy header: {reason}", offset=0)

        if h.fortran_order:
            raise fail("fortran_order=True is not what Dopamine writes")
        if h.dtype != want:
            raise fail(f"dtype {h.dtype.str!r}, expected {want.str!r}")
        if len(shape) != ndim:
            raise fail(f"shape {shape} has {len(shape)} dimensions, expected {ndim}")
        if ndim and not 0 < shape[0] <= MAX_CAPACITY:
            raise fail(f"{shape[0]} slots outside [1, {MAX_CAPACITY}]")
        if math.prod(shape[1:]) > MAX_FRAME_PIXELS:
            raise fail(f"shape {shape} too large per slot")
        self.shape, self.dtype, self.header_size = tuple(shape), want, self.position
        return self.shape


def read_small_array(uri: str, dtype: np.dtype | type, ndim: int) -> np.ndarray:
    """Load a whole small payload (action/reward/terminal/add_count/invalid_range) safely."""
    with GzipNpyStream(uri) as z:
        shape = z.read_header(dtype, ndim)
        out = np.empty(shape, dtype)
        z.readinto(out)
        z.finish()
    return out

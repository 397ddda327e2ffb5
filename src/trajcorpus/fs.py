"""File-system access for every URI scheme, in one table (as webdataset keeps its URL schemes).

Readers and writers never call ``open`` on a user path directly; they go through :func:`open_uri`
so that local paths, ``gs://`` (gcsfs), ``memory://`` and anything else fsspec knows behave alike.

Paths are literal: a user's folder may be called ``runs[1]`` or ``what?``. fsspec treats ``*?[``
in a path as a glob pattern in ``glob``, ``rm``, ``copy`` and ``expand_path``; here a pattern is
only ever matched against *names inside* a folder (:func:`glob_literal`), and removing or copying a
path with such characters never goes through fsspec's pattern expansion.
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
from collections.abc import Iterator
from typing import IO, Any

import fsspec

__all__ = ["SCHEMES", "filesystem", "open_uri", "join", "exists", "listdir", "glob", "size",
           "strip_scheme", "is_local", "local_path", "makedirs", "rename", "remove",
           "glob_literal", "has_magic", "placeholder_reason", "check_input", "network_error",
           "public_location", "LOCAL_MARKER"]

# scheme -> (fsspec protocol, extra storage options). gs:// honours STORAGE_EMULATOR_HOST, which the
# test suite points at a local gcp-storage-emulator; gcsfs' gRPC probe is switched off because it
# stalls for 60 s against the emulator.
SCHEMES: dict[str, tuple[str, dict[str, Any]]] = {
    "": ("file", {}),
    "file": ("file", {}),
    "gs": ("gcs", {}),
    "gcs": ("gcs", {}),
    "memory": ("memory", {}),
    "s3": ("s3", {}),
    "http": ("http", {}),
    "https": ("https", {}),
    "hf": ("hf", {}),
}

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def _split(uri: str) -> tuple[str, str]:
    uri = os.fspath(uri)
    if "://" in uri:
        scheme, _ = uri.split("://", 1)
        return scheme, uri
    return "", uri


def filesystem(uri: str) -> fsspec.AbstractFileSystem:
    """The fsspec file system that serves ``uri``."""
    scheme, _ = _split(uri)
    if scheme not in SCHEMES:
        raise ValueError(f"{uri}: unsupported URI scheme {scheme!r} (known: {sorted(SCHEMES)})")
    protocol, options = SCHEMES[scheme]
    if protocol == "gcs":
        options = _gcs_options()
    return fsspec.filesystem(protocol, **options)


def _gcs_options() -> dict[str, Any]:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return {"endpoint_url": emulator, "token": "anon"}
    return {}


def strip_scheme(uri: str) -> str:
    scheme, rest = _split(uri)
    if scheme in ("", "file"):
        return rest.split("://", 1)[-1]
    return rest


def is_local(uri: str) -> bool:
    return _split(uri)[0] in ("", "file")


def local_path(uri: str) -> str:
    return os.path.abspath(strip_scheme(uri)) if is_local(uri) else uri


def open_uri(uri: str, mode: str = "rb", **kwargs: Any) -> IO:
    """Open ``uri`` for streaming; the caller closes it (use ``with``).

    Remote reads default to a read-ahead cache: gcsfs' default ("adaptive") prefetcher can wait
    seconds when a file is closed, which made a 2 MB HDF5 read over gs:// take 12 s.
    """
    if "r" in mode and not is_local(uri):
        kwargs.setdefault("cache_type", "readahead")
    return filesystem(uri).open(strip_scheme(uri), mode, **kwargs)


def join(base: str, *parts: str) -> str:
    base = os.fspath(base)
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def exists(uri: str) -> bool:
    return filesystem(uri).exists(strip_scheme(uri))


def size(uri: str) -> int:
    return int(filesystem(uri).size(strip_scheme(uri)))


def _with_scheme(uri: str, paths: list[str]) -> list[str]:
    """fsspec returns bare paths; give remote ones their scheme back so they can be reopened."""
    scheme, _ = _split(uri)
    if scheme in ("", "file"):
        return paths
    return [p if "://" in p else f"{scheme}://{p.lstrip('/')}" for p in paths]


def listdir(uri: str) -> list[str]:
    """Full URIs of the entries directly under ``uri``, sorted."""
    fs = filesystem(uri)
    paths = fs.ls(strip_scheme(uri), detail=False)
    return sorted(_with_scheme(uri, [p.rstrip("/") for p in paths]))


def glob(pattern: str) -> list[str]:
    """fsspec's glob: the *whole* argument is a pattern. Never pass a user's path through it;
    use :func:`glob_literal`."""
    fs = filesystem(pattern)
    return sorted(_with_scheme(pattern, fs.glob(strip_scheme(pattern))))


def has_magic(path: str) -> bool:
    """Whether fsspec would read ``path`` as a glob pattern."""
    return any(c in path for c in "*?[")


def glob_literal(folder: str, pattern: str) -> list[str]:
    """Full URIs of the entries directly in ``folder`` (taken literally, whatever characters its
    name holds) whose *name* matches ``pattern``; [] when the folder does not exist."""
    try:
        entries = listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [p for p in entries if fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pattern)]


def walk_files(uri: str) -> Iterator[str]:
    fs = filesystem(uri)
    for p in sorted(fs.find(strip_scheme(uri))):
        yield _with_scheme(uri, [p])[0]


def makedirs(uri: str) -> None:
    filesystem(uri).makedirs(strip_scheme(uri), exist_ok=True)


def rename(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``: atomic on a local disk; copy + delete on object stores.

    gcsfs' ``mv`` first tries GCS' moveTo call, which the local emulator answers with 501 after
    ~30 s of retries; a server-side copy and a delete is what a rename is on GCS anyway.
    """
    fs_ = filesystem(src)
    if is_local(src):
        fs_.mv(strip_scheme(src), strip_scheme(dst))
        return
    if has_magic(src) or has_magic(dst):  # copy() and rm() would expand the names as patterns
        fs_.cp_file(strip_scheme(src), strip_scheme(dst))
        fs_.rm_file(strip_scheme(src))
        return
    fs_.copy(strip_scheme(src), strip_scheme(dst))
    fs_.rm(strip_scheme(src))


def remove(uri: str) -> None:
    """Delete ``uri`` (a file or a folder with everything below it), taken literally."""
    fs = filesystem(uri)
    path = strip_scheme(uri)
    if not fs.exists(path):
        return
    if is_local(uri) or not has_magic(path):  # the local rm never expands patterns
        fs.rm(path, recursive=True)
        return
    for p in sorted(fs.find(path, withdirs=True), key=len, reverse=True) or [path]:
        if fs.isfile(p):
            fs.rm_file(p)


_PLACEHOLDER = re.compile(r"YOUR[-_A-Z]*|<[^>]*>|\bMY-[A-Z]+")


def placeholder_reason(uri: str) -> str | None:
    """Why ``uri`` is a documentation placeholder (``gs://YOUR-BUCKET/...``), or None.

    A bucket name with capitals cannot exist on GCS or S3, so such a URI is refused before any
    request (which would otherwise retry for a minute and fail with a credentials error).
    """
    scheme, rest = _split(uri)
    if scheme in ("", "file"):
        return None  # a local folder may be called anything
    m = _PLACEHOLDER.search(rest)
    if m:
        return f"{m.group(0)!r} is a placeholder: replace it with a location of yours"
    if scheme in ("gs", "gcs", "s3"):
        bucket = rest.split("://", 1)[1].split("/", 1)[0]
        if bucket != bucket.lower():
            return f"bucket name {bucket!r} has capital letters, so no such bucket can exist"
    return None


_NETWORK_MODULES = ("aiohttp", "gcsfs", "google.auth", "google.api_core", "requests", "urllib3",
                    "huggingface_hub", "httpx", "fsspec.implementations.http")


def network_error(e: BaseException) -> str | None:
    """A one-line reason when ``e`` is a failure to reach or be served by a remote store (after
    the client's own bounded retries: gcsfs tries a request 6 times, about a minute), else
    None."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        mod = type(cur).__module__ or ""
        if isinstance(cur, (ConnectionError, TimeoutError, socket.gaierror)) \
                or mod.startswith(_NETWORK_MODULES):
            text = " ".join(str(e).split()) or type(e).__name__
            if len(text) > 300:
                text = text[:297] + "..."
            return f"cannot reach the remote store ({type(e).__name__}: {text})"
        cur = cur.__cause__ or cur.__context__
    return None


def check_input(uri: str) -> None:
    """Refuse a placeholder URI at once and a local input that does not exist, naming it (one
    message for every command that reads an input)."""
    from .errors import TrajcorpusError

    reason = placeholder_reason(uri)
    if reason:
        raise TrajcorpusError(uri, reason)
    if is_local(uri) and not os.path.exists(local_path(uri)):
        raise TrajcorpusError(uri, "no such file or folder (the input does not exist)")
    if _split(uri)[0] in ("http", "https"):
        reason = _http_problem(uri)
        if reason:
            raise TrajcorpusError(uri, reason)


HTTP_TRIES = 3


def _http_problem(uri: str, tries: int = HTTP_TRIES, timeout: float = 20) -> str | None:
    """Why an http(s) input cannot be read, after ``tries`` attempts 1 s, 2 s ... apart, or None.

    fsspec's HTTP file system reports a host it cannot reach as a missing file; this says which.
    """
    import time
    import urllib.error
    import urllib.request

    for attempt in range(tries):
        if attempt:
            time.sleep(2 ** (attempt - 1))
        try:
            req = urllib.request.Request(uri, method="HEAD")
            with urllib.request.urlopen(req, timeout=timeout):
                return None
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                return f"no such file (HTTP {e.code})"
            if e.code < 500:
                return None  # e.g. HEAD not allowed: let the reader try
            last = f"HTTP {e.code} {e.reason}"
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
    return f"cannot reach the remote store after {tries} tries ({last})"


LOCAL_MARKER = "<local>"


def public_location(uri: str) -> str:
    """``uri`` as published: remote URIs and paths relative inside the working folder as they
    are; any other local path reduced to ``<local>/NAME`` (the builder's folders are private)."""
    if not uri or not is_local(uri):
        return uri
    path = strip_scheme(uri)
    if not os.path.isabs(path) and not path.startswith(("..", "~")):
        return path
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return f"{LOCAL_MARKER}/{name}" if name else LOCAL_MARKER


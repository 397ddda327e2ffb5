"""img2dataset webdataset output (``NNNNN.tar`` + ``NNNNN.parquet`` + ``NNNNN_stats.json``) -> records.

Layout (img2dataset ``output_format="webdataset"``): each tar holds, per successful sample, members
``KEY.jpg`` (or .png/.webp), ``KEY.txt`` (the caption, UTF-8) and ``KEY.json`` (url, status,
sizes, ...), the members of one sample adjacent. ``NNNNN.parquet`` lists *every* input row of the
shard, failures included (status != "success", with ``error_message``, e.g. "HTTP Error 404").

One unit per shard. One record per successful sample; every failed download becomes a Rejected
naming the shard's parquet, the key and img2dataset's error message, so the audit lists them. A
sample the parquet calls a success but the tar lacks is a Rejected too.

The tar is read as a stream (``tarfile`` mode ``r|*``), never extracted: member names are only
parsed into (key, extension), never turned into paths. Links, absolute names and names with ``..``
are refused (Rejected naming the member and its byte offset); directories and other non-file members
are skipped; a member larger than ``imagecaption.MAX_IMAGE_BYTES`` is refused unread.

Records: task = option ``task`` or the catalog dataset id; agent = option ``agent`` or
"img2dataset"; template fields ``task``, ``agent``. episode_id = the img2dataset key (unique across
shards: it embeds the shard number); order = (shard number, key as integer) (the key is the row
of the input list). The caption is ``KEY.txt``, or the ``caption`` of ``KEY.json`` when there is no
.txt member. A ``KEY.json`` whose own ``key`` differs from its member name, or whose caption
differs from ``KEY.txt``, belongs to another sample (a buggy repacking): the sample is quarantined,
never paired with one of the two.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .. import fs
from ..errors import SourceError
from ..schemas.episode import Episode, Rejected
from .base import Unit
from .families import CaptionSource, TaskAgentOptions
from .imagecaption import (
    MAX_IMAGE_BYTES,
    caption_episode,
    caption_text,
    load_image,
    rejected,
    safe_relative_name,
)
from .metadata import Name, Strict, Text, parse_json, small_int, validate

__all__ = ["Img2DatasetSource", "IMAGE_EXTENSIONS", "split_member_name"]

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_STATUS_COLUMNS = ("key", "status", "error_message")
_USED = (*IMAGE_EXTENSIONS, "txt", "json")  # the members a record is made of; others stay unread
_TWICE = "\0twice"  # marks a sample with a repeated member (not a possible extension)


class MemberMeta(Strict):
    """A sample's ``KEY.json`` (img2dataset writes url, caption, status, sizes, ...)."""

    url: Text | None = None
    caption: Text | None = None
    key: Name | None = None
_SHARD = re.compile(r"^(\d{1,18})\.(tar|parquet)$")


def split_member_name(name: str) -> tuple[str, str] | None:
    """'dir/0000001.jpg' -> ('dir/0000001', 'jpg') (webdataset's rule: the extension starts at the
    first dot of the base name); None when the base name has no extension."""
    folder, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return None
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


class Img2DatasetSource(CaptionSource):
    """Reads an img2dataset webdataset output folder; one unit = one shard."""

    kind = "img2dataset"
    description = "img2dataset WebDataset tar shards (image + `.txt` caption + `.json` status)"
    Options = TaskAgentOptions

    def units(self) -> list[Unit]:
        shards: dict[str, dict[str, str]] = {}
        for uri in fs.glob_literal(self.uri, "*.tar") + fs.glob_literal(self.uri, "*.parquet"):
            m = _SHARD.match(uri.rsplit("/", 1)[-1])
            if m:
                shards.setdefault(m.group(1), {})[m.group(2)] = uri
        if not shards:
            raise SourceError(self.uri, "no img2dataset shards (NNNNN.tar / NNNNN.parquet) found")
        fields = {"task": self.opts.task or self.dataset,
                  "agent": self.opts.agent or "img2dataset"}
        task, agent = self.task_name(**fields), self.agent_name(**fields)
        return [Unit(key=name, uri=files.get("tar", ""), index=i,
                     params=(("shard", int(name)), ("parquet", files.get("parquet", "")),
                             ("task", task), ("agent", agent)))
                for i, (name, files) in enumerate(sorted(shards.items()))]

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        task = unit.param("task")
        status = self._status(unit.param("parquet"))
        for key, (ok, message) in status.items():
            if not ok:
                yield self.reject(f"{unit.param('parquet')} [{key}]",
                                  f"img2dataset could not fetch this sample: {message}",
                                  kind="missing", task=task)
        seen: set[str] = set()
        if unit.uri:
            yield from self._samples(unit, seen)
        for key, (ok, _) in status.items():
            if ok and key not in seen:
                yield self.reject(f"{unit.param('parquet')} [{key}]",
                                  "listed as a success in the parquet but absent from the tar "
                                  f"{unit.uri or '(no tar for this shard)'}", task=task)

    @staticmethod
    def _status(uri: str) -> dict[str, tuple[bool, str]]:
        """key -> (success?, status and error message) from the shard's parquet, if any."""
        if not uri:
            return {}
        try:
            with fs.open_uri(uri, "rb", cache_type="blockcache") as f:
                table = pq.read_table(f, columns=list(_STATUS_COLUMNS))
        except (OSError, ValueError, pa.ArrowException) as e:
            raise SourceError(uri, f"cannot read the shard's parquet: {e}") from None
        for name in _STATUS_COLUMNS:
            t = table.schema.field(name).type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)
                    or (name == "error_message" and pa.types.is_null(t))):
                raise SourceError(uri, f"column must hold text, got {t}", key=name)
        nulls = {c: table.column(c).null_count for c in ("key", "status")}
        if any(nulls.values()):
            bad = next(c for c, n in nulls.items() if n)
            raise SourceError(uri, f"{nulls[bad]} null values", key=bad)
        out: dict[str, tuple[bool, str]] = {}
        for key, status, message in zip(*(table.column(c).to_pylist()
                                          for c in _STATUS_COLUMNS), strict=True):
            if key in out:
                raise SourceError(uri, "key listed twice: its status is ambiguous", key=key)
            ok = status == "success"
            out[key] = (ok, f"{status}: {message}" if message else status)
        return out

    def _samples(self, unit: Unit, seen: set[str]) -> Iterator[Episode | Rejected]:
        """Stream the tar, group adjacent members by key, build one record per key."""
        uri, task = unit.uri, unit.param("task")
        current: str | None = None
        members: dict[str, tuple[bytes, int]] = {}
        try:
            with fs.open_uri(uri, "rb", cache_type="readahead") as raw, \
                    tarfile.open(fileobj=raw, mode="r|*") as tar:
                for m in tar:
                    name = m.name.removeprefix("./")
                    where = f"{uri} @ offset {m.offset} [{m.name}]"
                    if m.size > MAX_IMAGE_BYTES:
                        # tarfile would skip the declared size chunk by chunk (2^60 bytes: for
                        # ever), and nothing after a lying header can be trusted: stop the shard.
                        raise SourceError(uri, f"member {m.name!r} declares {m.size} bytes, "
                                          f"above the limit of {MAX_IMAGE_BYTES}: the rest of the "
                                          "shard is not read", offset=m.offset)
                    if m.issym() or m.islnk():
                        yield self.reject(where, f"link member refused (points to {m.linkname!r})",
                                          task=task)
                        continue
                    if not m.isfile():
                        continue  # directories, devices, fifos: nothing to read
                    if not safe_relative_name(name):
                        yield self.reject(where, "unsafe member name refused (absolute or '..')",
                                          task=task)
                        continue
                    parts = split_member_name(name)
                    if parts is None:
                        continue
                    key, ext = parts
                    if key != current:
                        if current is not None:
                            yield self._record(unit, current, members, seen)
                        current, members = key, {}
                    if ext in members:  # two KEY.jpg: which one is the image? never choose
                        members[_TWICE] = (ext.encode(), m.offset)
                    f = tar.extractfile(m) if ext in _USED else None  # others: never read
                    members[ext] = (f.read() if f is not None else b"", m.offset)
                if current is not None:
                    yield self._record(unit, current, members, seen)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise SourceError(uri, f"corrupt or truncated tar: {e}") from None

    def _record(self, unit: Unit, key: str, members: dict[str, tuple[bytes, int]],
                seen: set[str]) -> Episode | Rejected:
        uri, task = unit.uri, unit.param("task")
        if key in seen:
            return self.reject(f"{uri} [{key}]", "duplicate sample key (members of one sample "
                               "must be adjacent in a webdataset tar)", task=task)
        seen.add(key)
        if _TWICE in members:
            ext, offset = members[_TWICE]
            return self.reject(f"{uri} @ offset {offset} [{key}.{ext.decode()}]", "member appears "
                               "twice in one sample: which one belongs to it is ambiguous",
                               task=task)
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
        if image_ext is None:
            return self.reject(f"{uri} [{key}]", "sample has no image member "
                               f"(.{'/.'.join(IMAGE_EXTENSIONS)}); members: {sorted(members)}",
                               task=task)
        meta = MemberMeta()
        try:
            if "json" in members:
                where = f"{uri} @ offset {members['json'][1]}"
                meta = validate(parse_json(members["json"][0], where, key=f"{key}.json"),
                                MemberMeta, where, key=f"{key}.json")
            if meta.key is not None and meta.key != key:
                raise SourceError(where, f"the member's own key {meta.key!r} differs from its "
                                  f"name: its metadata belongs to another sample",
                                  key=f"{key}.json")
            if "txt" in members:
                caption = caption_text(members["txt"][0], f"{uri} @ offset {members['txt'][1]}",
                                       f"{key}.txt")
                if meta.caption is not None and meta.caption.strip() != caption.strip():
                    raise SourceError(uri, f"{key}.txt and {key}.json hold different captions: "
                                      "which one belongs to the image is ambiguous", key=key)
            else:
                caption = caption_text(meta.caption, uri, f"{key}.json caption")
            data, offset = members[image_ext]
            image = load_image(data, uri, key=f"{key}.{image_ext}", offset=offset)
        except SourceError as e:
            return rejected(self.dataset, e, task)
        order_key = small_int(key)
        if order_key is None:
            order_key = len(seen) - 1
        episode = caption_episode(
            dataset=self.dataset, task=task, agent=unit.param("agent"), episode_id=key,
            order=(unit.param("shard"), order_key), image=image, caption=caption,
            source={"uri": uri, "key": key, "offset": offset, "url": meta.url,
                    "parquet": unit.param("parquet") or None})
        return self.checked(episode, f"{uri} [{key}]")

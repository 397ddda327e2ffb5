"""Hugging Face image datasets stored as Parquet (what ``push_to_hub`` writes) -> records.

Layout: Parquet files whose image column is ``struct<bytes: binary, path: string>`` (the datasets
``Image`` feature, bytes embedded) beside a caption column. The features are in the schema metadata
key ``huggingface`` (``{"info": {"features": {...}}}``): the first ``Image`` feature is the image
column and the first ``Value("string")`` feature the caption column, unless options
``image_column`` / ``caption_column`` name them. Without that metadata the first
struct<bytes, path> column and the first string column are used.

Input: one ``.parquet`` file or a folder, searched recursively for ``*.parquet`` (hub layouts such as
``data/train-00000-of-00004.parquet`` or ``<config>/<split>/*.parquet``). One unit per file; the file
is streamed batch by batch (``ParquetFile.iter_batches``, only the two columns) through
``fs.open_uri``, so memory stays at one batch of encoded images.

Records: task = option ``task`` or the catalog dataset id; agent = option ``agent`` or the split
named by the file (``train`` for ``train-00000-of-00001.parquet``, else the file stem); template
fields ``task``, ``agent``, ``split``, ``file``. episode_id = "<path below the input>:<row>", order =
(file index, row). A row whose image is not embedded (bytes null) is rejected: its ``path`` points
into the machine that wrote the file. Captions are read as raw bytes so that invalid UTF-8 rejects
only its row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import fs
from ..errors import SourceError
from ..schemas.episode import Episode, Rejected
from .base import Unit
from .families import CaptionSource, TaskAgentOptions
from .imagecaption import MAX_IMAGE_BYTES, caption_episode, caption_text, load_image, rejected
from .metadata import Name, Strict, parse_json, validate

__all__ = ["HFImageParquetSource", "feature_columns"]

_SPLIT = re.compile(r"^([A-Za-z0-9_.]+?)-\d{5}-of-\d{5}$")
_BATCH_ROWS = 64


def _norm(uri: str) -> str:
    return fs.local_path(uri) if fs.is_local(uri) else fs.strip_scheme(uri)


class _HfInfo(Strict):
    features: dict[Name, Any] | None = None


class HfMetadata(Strict):
    """The schema metadata key ``huggingface``: ``{"info": {"features": {...}}}``."""

    info: _HfInfo | None = None


def _binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_image_struct(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) and t.get_field_index("bytes") >= 0


def _check_image_type(t: pa.DataType, uri: str, column: str) -> None:
    """The datasets Image struct: ``bytes`` binary, ``path`` (if any) text; anything else lies."""
    if not _is_image_struct(t):
        raise SourceError(uri, f"expected struct<bytes, path>, got {t}", key=column)
    for name, ok, want in (("bytes", _binary, "binary"), ("path", _string, "string")):
        i = t.get_field_index(name)
        if i >= 0 and not (ok(t.field(i).type) or pa.types.is_null(t.field(i).type)):
            raise SourceError(uri, f"image field '{name}' must be {want}, got {t.field(i).type}",
                              key=f"{column}.{name}")


def feature_columns(schema: pa.Schema, uri: str, image_column: str | None = None,
                    caption_column: str | None = None) -> tuple[str, str]:
    """(image column, caption column) from the ``huggingface`` metadata, options or the types."""
    features: dict[str, Any] = {}
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        meta = validate(parse_json(raw, uri, key="huggingface", what="'huggingface' metadata"),
                        HfMetadata, uri, key="huggingface")
        features = (meta.info.features if meta.info else None) or {}
    if not image_column:
        image_column = next((n for n, f in features.items()
                             if isinstance(f, dict) and f.get("_type") == "Image"), None) \
            or next((f.name for f in schema if _is_image_struct(f.type)), None)
    if not caption_column:
        caption_column = next((n for n, f in features.items()
                               if isinstance(f, dict) and f.get("_type") == "Value"
                               and f.get("dtype") in ("string", "large_string")), None) \
            or next((f.name for f in schema if _string(f.type)), None)
    names = schema.names
    if not image_column or image_column not in names:
        raise SourceError(uri, f"no image column {image_column or ''!r} (columns: {names}; set "
                          "option image_column)", key="image_column")
    if not caption_column or caption_column not in names:
        raise SourceError(uri, f"no caption column {caption_column or ''!r} (columns: {names}; "
                          "set option caption_column)", key="caption_column")
    for column in (image_column, caption_column):
        if len(schema.get_all_field_indices(column)) != 1:
            raise SourceError(uri, "column name appears more than once in the schema", key=column)
    _check_image_type(schema.field(image_column).type, uri, image_column)
    t = schema.field(caption_column).type
    if not (_string(t) or _binary(t) or pa.types.is_null(t)):
        raise SourceError(uri, f"caption column must hold text, got {t}", key=caption_column)
    return image_column, caption_column


class HFImageParquetOptions(TaskAgentOptions):
    image_column: str | None = None  # default: from the metadata, else the first Image feature
    caption_column: str | None = None  # default: ... the first string feature


class HFImageParquetSource(CaptionSource):
    """Reads HF image-caption Parquet files; one unit = one file, streamed in batches."""

    kind = "hf-image-parquet"
    description = "Hugging Face Parquet: `Image` feature bytes + caption column"
    Options = HFImageParquetOptions

    def units(self) -> list[Unit]:
        if self.uri.endswith(".parquet"):
            files, base = [self.uri], _norm(self.uri).rsplit("/", 1)[0]
        else:
            files = [u for u in fs.walk_files(self.uri) if u.endswith(".parquet")]
            base = _norm(self.uri).rstrip("/")
        if not files:
            raise SourceError(self.uri, "no .parquet files found")
        units = []
        for i, uri in enumerate(sorted(files)):
            path = _norm(uri)
            rel = path[len(base) + 1:] if path.startswith(base + "/") else path.rsplit("/", 1)[-1]
            stem = rel.rsplit("/", 1)[-1].removesuffix(".parquet")
            m = _SPLIT.match(stem)
            fields = {"task": self.opts.task or self.dataset,
                      "agent": self.opts.agent or (m.group(1) if m else stem),
                      "split": m.group(1) if m else "", "file": stem}
            units.append(Unit(key=rel, uri=uri, index=i,
                              params=(("file_index", i), ("name", rel.removesuffix(".parquet")),
                                      ("task", self.task_name(**fields)),
                                      ("agent", self.agent_name(**fields)))))
        return units

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        uri = unit.uri
        try:
            with fs.open_uri(uri, "rb", cache_type="blockcache") as f:
                pf = pq.ParquetFile(f)
                image_col, caption_col = feature_columns(
                    pf.schema_arrow, uri, self.opts.image_column,
                    self.opts.caption_column)
                row = 0
                for batch in pf.iter_batches(batch_size=_BATCH_ROWS,
                                             columns=[image_col, caption_col]):
                    images = batch.column(image_col)
                    blobs = images.field("bytes").to_pylist()
                    paths = (images.field("path").to_pylist()
                             if images.type.get_field_index("path") >= 0 else [None] * len(blobs))
                    valid = images.is_valid().to_pylist()
                    captions = batch.column(caption_col).cast(pa.binary()).to_pylist()
                    for blob, path, ok, raw in zip(blobs, paths, valid, captions, strict=True):
                        yield self._record(unit, row, blob if ok else None, path, raw)
                        row += 1
        except (OSError, pa.ArrowException) as e:
            raise SourceError(uri, f"cannot read parquet: {e}") from None

    def _record(self, unit: Unit, row: int, blob: bytes | None, path: str | None,
                raw_caption: bytes | None) -> Episode | Rejected:
        uri, task = unit.uri, unit.param("task")
        key = f"row {row}"
        try:
            caption = caption_text(raw_caption, uri, key)
            if blob is None:
                raise SourceError(uri, "image bytes are not embedded (path "
                                  f"{path!r} refers to the machine that wrote the file)", key=key)
            if len(blob) > MAX_IMAGE_BYTES:
                raise SourceError(uri, f"image of {len(blob)} bytes exceeds the limit of "
                                  f"{MAX_IMAGE_BYTES}", key=key)
            image = load_image(blob, uri, key=key)
        except SourceError as e:
            return rejected(self.dataset, e, task)
        episode = caption_episode(
            dataset=self.dataset, task=task, agent=unit.param("agent"),
            episode_id=f"{unit.param('name')}:{row}", order=(unit.param("file_index"), row),
            image=image, caption=caption, source={"uri": uri, "row": row, "path": path})
        return self.checked(episode, f"{uri} [{key}]")

"""catalog.yaml and its typed model: which corpora exist, where, and how each is processed.

Models are frozen pydantic models with ``extra="forbid"`` so an unknown key is an error, not a
silently ignored typo. :func:`load_catalog` keeps the YAML line of every key so each error names the
file, the line, the entry id and the field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import CatalogError

__all__ = [
    "SOURCE_KINDS",
    "FilterSettings",
    "TextModelSettings",
    "TokenizeSettings",
    "SequenceSettings",
    "ReferenceScore",
    "ReferenceSettings",
    "FieldSemantics",
    "SemanticsSettings",
    "DatasetEntry",
    "Catalog",
    "load_catalog",
    "parse_catalog",
]

SOURCE_KINDS: tuple[str, ...] = (
    "dqn-replay", "rlu-atari", "minari", "d4rl", "coco-captions", "img2dataset",
    "hf-image-parquet", "rlds", "vpt",
)
MAX_YAML_NODES = 100_000  # an alias ("billion laughs") bomb expands past this and is refused


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterSettings(_Frozen):
    """SPEC section 3: W = max(1, min(max_window, floor(window_fraction * N)))."""

    enabled: bool = True
    fraction: float = Field(0.8, gt=0.0, le=1.0)
    window_fraction: float = Field(0.1, gt=0.0, le=1.0)
    max_window: int = Field(1000, ge=1)


class TextModelSettings(_Frozen):
    """Load a SentencePiece model from ``path``, or train one from the corpus text when null."""

    path: str | None = None
    vocab_size: int = Field(32000, ge=8, le=32000)
    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"


class TokenizeSettings(_Frozen):
    image_size: tuple[int, int] | None = None  # (H, W), multiples of 16; None: the kind's default
    mu_law: bool = True
    mu_law_exempt: tuple[str, ...] = ()  # fields already in [-1, 1], e.g. "actions"
    text_fields: tuple[str, ...] | None = None  # None: every text observation
    text_model: TextModelSettings = TextModelSettings()
    # "auto": identity / whole row-column skipping for shrinks of <= 10% (84 -> 80) / antialiased
    # box filter otherwise; see docs/tokenization.md for the trade-off (1-px lines on skipped rows)
    resample: Literal["auto", "nearest", "bilinear", "box"] = "auto"
    image_channels: Literal[1, 3] | None = None  # None: keep grayscale as 1, colour as 3

    @field_validator("image_size")
    @classmethod
    def _multiple_of_16(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and (v[0] <= 0 or v[1] <= 0 or v[0] % 16 or v[1] % 16):
            raise ValueError(f"image_size sides must be positive multiples of 16, got {list(v)}")
        return v


class SequenceSettings(_Frozen):
    length: int = Field(1024, ge=16)
    prompt_probability: float = Field(0.25, ge=0.0, le=1.0)
    prompt_tokens: int = Field(256, ge=0)
    prompt_end_share: float = Field(0.5, ge=0.0, le=1.0)  # goal-conditioning share of prompts
    vl_pairs: int = Field(5, ge=1)


class ReferenceScore(_Frozen):
    """One task's reference returns: a random policy's and an expert's or a human's."""

    random: float | None = None
    expert: float | None = None
    expert_kind: Literal["expert", "human"] = "expert"


class ReferenceSettings(_Frozen):
    """Published reference returns by task name, and where they come from (a citation)."""

    source: str = ""
    scores: dict[str, ReferenceScore] = {}

    @field_validator("scores")
    @classmethod
    def _cited(cls, v: dict, info: Any) -> dict:
        if v and not info.data.get("source"):
            raise ValueError("reference scores need a 'source' (their citation)")
        return v


class FieldSemantics(_Frozen):
    """What one field's dimensions mean, when neither the source nor the environment says."""

    names: tuple[str, ...] = ()  # one per dimension of the flattened per-step shape
    units: tuple[str, ...] = ()
    description: str = ""
    representation: Literal["absolute", "delta"] | None = None  # for actions, when known


class SemanticsSettings(_Frozen):
    """Field name (an observation's, or "actions") -> its semantics, with their source."""

    source: str = ""
    fields: dict[str, FieldSemantics] = {}


class DatasetEntry(_Frozen):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal[SOURCE_KINDS]  # type: ignore[valid-type]
    uri: str
    description: str = ""
    task: str = "{task}"  # template over the reader's fields, e.g. "atari/{task}"
    agent: str = "{agent}"
    options: dict[str, Any] = {}
    filter: FilterSettings = FilterSettings()
    tokenize: TokenizeSettings = TokenizeSettings()
    sequence: SequenceSettings = SequenceSettings()
    mixture_weight: float = Field(1.0, ge=0.0)
    license: str
    citation: str = ""
    homepage: str = ""
    demo: bool = False
    reference: ReferenceSettings = ReferenceSettings()
    semantics: SemanticsSettings = SemanticsSettings()

    def resolve_uri(self, base_dir: str | None) -> str:
        """The entry's uri, relative ones taken against the catalog file's folder."""
        if "://" in self.uri or os.path.isabs(self.uri) or base_dir is None:
            return self.uri
        return os.path.normpath(os.path.join(base_dir, self.uri))


class Catalog(_Frozen):
    version: Literal[1] = 1
    datasets: tuple[DatasetEntry, ...]
    path: str | None = Field(None, exclude=True)

    def __iter__(self) -> Iterator[DatasetEntry]:  # type: ignore[override]
        return iter(self.datasets)

    def ids(self) -> list[str]:
        return [d.id for d in self.datasets]

    def get(self, dataset_id: str) -> DatasetEntry:
        for d in self.datasets:
            if d.id == dataset_id:
                return d
        raise CatalogError(self.path or "<catalog>", f"no dataset {dataset_id!r} "
                           f"(known: {', '.join(self.ids())})", entry=dataset_id)

    def uri_of(self, entry: DatasetEntry) -> str:
        return entry.resolve_uri(os.path.dirname(os.path.abspath(self.path)) if self.path else None)


# --- loading with line numbers -------------------------------------------------------------------

def _count_nodes(node: yaml.Node, path: str) -> None:
    seen = 0
    stack = [node]
    while stack:
        n = stack.pop()
        seen += 1
        if seen > MAX_YAML_NODES:
            raise CatalogError(path, f"YAML expands to more than {MAX_YAML_NODES} nodes "
                               "(alias bomb?)", line=n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def _line_map(node: yaml.Node) -> dict[tuple, int]:
    """(path tuple) -> 1-based line of the key (for mappings) or item (for sequences)."""
    out: dict[tuple, int] = {(): node.start_mark.line + 1}

    def walk(n: yaml.Node, prefix: tuple) -> None:
        if isinstance(n, yaml.MappingNode):
            keys: dict[Any, int] = {}
            for k, v in n.value:
                key = k.value
                if key in keys:
                    raise _DuplicateKey(prefix + (key,), k.start_mark.line + 1)
                keys[key] = 1
                out[prefix + (key,)] = k.start_mark.line + 1
                walk(v, prefix + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                out[prefix + (i,)] = v.start_mark.line + 1
                walk(v, prefix + (i,))

    walk(node, ())
    return out


class _DuplicateKey(Exception):
    def __init__(self, path: tuple, line: int):
        self.path, self.line = path, line


def _entry_id(data: Any, loc: tuple) -> str | None:
    if len(loc) >= 2 and loc[0] == "datasets" and isinstance(loc[1], int):
        try:
            entry = data["datasets"][loc[1]]
            return str(entry.get("id", f"#{loc[1]}")) if isinstance(entry, dict) else f"#{loc[1]}"
        except (KeyError, IndexError, TypeError):
            return None
    return None


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    for cut in range(len(loc), -1, -1):
        if tuple(loc[:cut]) in lines:
            return lines[tuple(loc[:cut])]
    return None


def _yaml_error(path: str, e: yaml.YAMLError) -> CatalogError:
    mark = getattr(e, "problem_mark", None)
    return CatalogError(path, f"not valid YAML: {getattr(e, 'problem', None) or e}",
                        line=mark.line + 1 if mark else None)


def parse_catalog(text: str, path: str = "<catalog>") -> Catalog:
    """Parse and validate catalog YAML; any problem is a :class:`CatalogError` with its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    if node is None:
        raise CatalogError(path, "empty catalog: expected a mapping with 'datasets'")
    _count_nodes(node, path)
    try:
        lines = _line_map(node)
    except _DuplicateKey as d:
        raise CatalogError(path, f"duplicate key {d.path[-1]!r}", line=d.line,
                           field=".".join(map(str, d.path))) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    if not isinstance(data, dict):
        raise CatalogError(path, "top level must be a mapping with 'datasets'", line=1)
    entries = data.get("datasets")
    if isinstance(entries, list):
        seen: dict[str, int] = {}
        for i, e in enumerate(entries):
            if isinstance(e, dict) and isinstance(e.get("id"), str):
                if e["id"] in seen:
                    raise CatalogError(path, f"duplicate id (first defined at line {seen[e['id']]})",
                                       line=lines.get(("datasets", i, "id")), entry=e["id"],
                                       field="id")
                seen[e["id"]] = lines.get(("datasets", i, "id"), 0)
    try:
        return Catalog(**data, path=path)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        entry = _entry_id(data, loc)
        field = ".".join(str(p) for p in loc[2:]) if entry is not None else ".".join(map(str, loc))
        reason = first["msg"]
        if first["type"] == "extra_forbidden":
            reason = "unknown key"
        elif first["type"] == "missing":
            reason = "missing required field"
        raise CatalogError(path, reason, line=_line_for(lines, loc), entry=entry,
                           field=field or None) from None
    except TypeError as err:
        raise CatalogError(path, str(err), line=1) from None


def load_catalog(path: str) -> Catalog:
    """Read catalog.yaml from a local path or URI."""
    from .. import fs

    try:
        with fs.open_uri(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CatalogError(path, "file not found") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CatalogError(path, f"not UTF-8 at byte {e.start}") from None
    return parse_catalog(text, path)

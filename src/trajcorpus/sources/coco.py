"""COCO captions (``annotations/captions_*.json`` + image folders) -> one record per (image, caption).

Layout (cocodataset.org, also what ``torchvision.datasets.CocoCaptions`` reads): the annotation file
holds ``images[] {id, file_name, width, height}`` and ``annotations[] {id, image_id, caption}``; the
annotations are NOT grouped by image, so captions are grouped by ``image_id`` here. The images of
``captions_<split>.json`` live in ``<root>/<split>/<file_name>`` (e.g. train2017/), or in the
folder given by option ``image_dir`` (relative to the root, or a full URI).

Records: task = option ``task`` or "coco"; agent = the annotation file stem (e.g.
"captions_train2017"); template fields ``task``, ``agent``, ``split``. episode_id =
"<image_id>:<annotation_id>", order = (image_id, annotation_id): COCO has no collection order, ids
give a stable one. Images are decoded once per image and shared by its captions' records. See
``imagecaption`` for the record shape.

The annotation file is parsed once, when planning units (the biggest, train2017, is ~90 MB); each
unit then carries its images' file names and captions, so workers never re-read the JSON. Invalid
UTF-8 bytes inside the file reject only the captions that contain them (the file is decoded with
``surrogateescape`` and each caption checked). Option ``images_per_unit`` (default 500).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pydantic
from pydantic import Field

from .. import fs
from ..errors import SourceError
from ..schemas.episode import Episode, Rejected
from .base import Label, SourceOptions, Unit
from .families import CaptionSource
from .imagecaption import (
    caption_episode,
    caption_text,
    load_image,
    read_bounded,
    rejected,
    safe_relative_name,
)
from .metadata import Name, Strict, parse_json, validate

__all__ = ["CocoCaptionsSource", "load_annotations"]

MAX_ANNOTATION_BYTES = 2 * 1024 * 1024 * 1024  # the JSON is read whole; refuse absurd sizes


_MAX_ENTRIES = 1 << 24  # 16 M images or captions per file (COCO train2017: 118 k / 591 k)


class CocoDoc(Strict):
    """The annotation file's top level; entries are typed one by one (one bad entry is one
    quarantined record, not a lost file)."""

    images: list[Any] = Field(max_length=_MAX_ENTRIES)
    annotations: list[Any] = Field(max_length=_MAX_ENTRIES)


_Id = Annotated[int, Field(ge=0, le=(1 << 63) - 1)]  # ids become the record's int64 order


class CocoImage(Strict):
    id: _Id
    file_name: Name


class CocoAnnotation(Strict):
    id: _Id
    image_id: _Id
    caption: Any = None  # checked per record by caption_text (its own one-line reasons)


def load_annotations(uri: str) -> dict[str, Any]:
    """Parse a COCO annotation file; invalid UTF-8 survives as surrogates for per-caption checks."""
    try:
        with fs.open_uri(uri, "rb", cache_type="readahead") as f:
            data = f.read(MAX_ANNOTATION_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(uri, "annotation file not found") from None
    if len(data) > MAX_ANNOTATION_BYTES:
        raise SourceError(uri, f"annotation file larger than {MAX_ANNOTATION_BYTES} bytes")
    doc = parse_json(data, uri, errors="surrogateescape")
    if not isinstance(doc, dict):
        raise SourceError(uri, "expected a JSON object with images and annotations")
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise SourceError(uri, "missing or not a list", key=key)
    validate(doc, CocoDoc, uri)
    return doc


def _typed(uri: str, doc: dict[str, Any], section: str, model: type, needs: str,
           problems: list[tuple[str, str]]) -> list[tuple[int, Any]]:
    """(index, typed entry) of ``doc[section]``; an entry that is not a ``model`` goes to
    ``problems`` (one quarantined record) with the field and reason."""
    out = []
    for i, raw in enumerate(doc[section]):
        try:
            out.append((i, validate(raw, model, uri, key=f"{section}[{i}]")))
        except SourceError as e:
            problems.append((e.where, f"{needs}: {e.reason}"))
    return out


def _plan(uri: str, doc: dict[str, Any]) -> tuple[list[tuple[int, str, tuple]], list[tuple]]:
    """(images sorted by id with their captions sorted by annotation id, problems).

    An image id listed twice, a file_name shared by several image ids, or an annotation id used
    twice, is ambiguous (which file, which picture, which caption?): every record involved is
    quarantined, never silently paired.
    """
    problems: list[tuple[str, str]] = []
    where_image: dict[int, list[int]] = {}
    files: dict[int, str] = {}
    for i, img in _typed(uri, doc, "images", CocoImage,
                         "image entry needs an integer id and a file_name string", problems):
        where_image.setdefault(img.id, []).append(i)
        files[img.id] = img.file_name
    dup_images = {k: v for k, v in where_image.items() if len(v) > 1}
    ids_of_file: dict[str, set[int]] = {}
    for image_id, name in files.items():
        if image_id not in dup_images:  # an id listed twice is quarantined as such already
            ids_of_file.setdefault(name, set()).add(image_id)
    shared_file = {i: sorted(ids) for ids in ids_of_file.values() if len(ids) > 1 for i in ids}
    anns = [a for _, a in _typed(uri, doc, "annotations", CocoAnnotation,
                                 "annotation needs integer id and image_id", problems)]
    ann_count: dict[int, int] = {}
    for ann in anns:
        ann_count[ann.id] = ann_count.get(ann.id, 0) + 1
    captions: dict[int, list[tuple[int, Any]]] = {}
    for ann in anns:
        where = f"{uri} [annotation {ann.id}]"
        if ann.image_id not in files:
            problems.append((where, f"references image_id {ann.image_id}, which images[] lacks"))
        elif ann.image_id in dup_images:
            listed = ", ".join(f"images[{j}]" for j in dup_images[ann.image_id])
            problems.append((where, f"image_id {ann.image_id} is listed {len(listed.split(','))}"
                             f" times ({listed}): which image the caption belongs to is "
                             "ambiguous"))
        elif ann.image_id in shared_file:
            problems.append((where, f"image_id {ann.image_id}'s file_name "
                             f"{files[ann.image_id]!r} is also the file of image id(s) "
                             f"{[i for i in shared_file[ann.image_id] if i != ann.image_id]}: "
                             "which picture the caption belongs to is ambiguous"))
        elif ann_count[ann.id] > 1:
            problems.append((where, f"annotation id {ann.id} is used {ann_count[ann.id]} times: "
                             "ids must be unique"))
        else:
            captions.setdefault(ann.image_id, []).append((ann.id, ann.caption))
    images = [(image_id, files[image_id], tuple(sorted(captions[image_id], key=lambda c: c[0])))
              for image_id in sorted(captions)]
    return images, problems


class CocoOptions(SourceOptions):
    image_dir: Label = None  # default: the split's folder beside annotations/
    images_per_unit: int = pydantic.Field(500, ge=1)
    task: Label = None  # default: "coco"


class CocoCaptionsSource(CaptionSource):
    """Reads COCO caption annotations; one unit = a run of images of one annotation file."""

    kind = "coco-captions"
    description = "COCO captions: `captions_*.json` annotations + JPEG images"
    Options = CocoOptions

    def _annotation_files(self) -> tuple[str, list[str]]:
        if self.uri.endswith(".json"):
            ann_dir = self.uri.rsplit("/", 1)[0] if "/" in self.uri else "."
            root = ann_dir.rsplit("/", 1)[0] if "/" in ann_dir else "."
            return root, [self.uri]
        files = fs.glob_literal(fs.join(self.uri, "annotations"), "captions_*.json")
        if not files:
            raise SourceError(self.uri, "no annotations/captions_*.json found (expected a COCO "
                              "folder with annotations/ and image folders)")
        return self.uri, files

    def _image_dir(self, root: str, split: str) -> str:
        opt = self.opts.image_dir
        if opt:
            return opt if "://" in opt or opt.startswith("/") else fs.join(root, opt)
        return fs.join(root, split)

    def units(self) -> list[Unit]:
        per_unit = self.opts.images_per_unit
        root, files = self._annotation_files()
        units: list[Unit] = []
        for ann_uri in files:
            stem = ann_uri.rsplit("/", 1)[-1].removesuffix(".json")
            split = stem.removeprefix("captions_")
            fields = {"task": self.opts.task or "coco", "agent": stem,
                      "split": split}
            task, agent = self.task_name(**fields), self.agent_name(**fields)
            image_dir = self._image_dir(root, split)
            if not fs.exists(image_dir):
                raise SourceError(ann_uri, f"image folder {image_dir} not found (COCO keeps the "
                                  f"images of captions_{split}.json in {split}/; set option "
                                  "image_dir otherwise)")
            images, problems = _plan(ann_uri, load_annotations(ann_uri))
            common = (("annotations", ann_uri), ("image_dir", image_dir), ("task", task),
                      ("agent", agent))
            chunks = [tuple(images[lo:lo + per_unit]) for lo in range(0, len(images), per_unit)]
            if problems and not chunks:
                chunks = [()]
            for n, chunk in enumerate(chunks):
                extra = (("problems", tuple(problems)),) if n == 0 and problems else ()
                first = chunk[0][0] if chunk else "-"
                units.append(Unit(key=f"{stem}/images from {first}", uri=ann_uri,
                                  index=len(units), params=common + (("images", chunk),) + extra))
        if not units:
            raise SourceError(self.uri, "no captions found")
        return units

    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        task, agent = unit.param("task"), unit.param("agent")
        ann_uri, image_dir = unit.param("annotations"), unit.param("image_dir")
        for location, reason in unit.param("problems", ()):
            yield self.reject(location, reason, task=task)
        for image_id, file_name, captions in unit.param("images"):
            image_uri = fs.join(image_dir, file_name)
            image, image_error = None, None
            if not safe_relative_name(file_name):
                image_error = SourceError(ann_uri, f"unsafe file_name {file_name!r} refused",
                                          key=f"image {image_id}")
            for ann_id, raw in captions:
                try:
                    caption = caption_text(raw, ann_uri, f"annotation {ann_id}")
                except SourceError as e:
                    yield rejected(self.dataset, e, task, note=f"image_id {image_id}")
                    continue
                if image is None and image_error is None:
                    try:
                        image = load_image(read_bounded(image_uri), image_uri,
                                           key=f"image_id {image_id}")
                    except SourceError as e:
                        image_error = e
                if image_error is not None:
                    yield rejected(self.dataset, image_error, task,
                                   note=f"annotation {ann_id}")
                    continue
                episode = caption_episode(
                    dataset=self.dataset, task=task, agent=agent,
                    episode_id=f"{image_id}:{ann_id}", order=(image_id, ann_id), image=image,
                    caption=caption,
                    source={"uri": image_uri, "annotations": ann_uri, "image_id": image_id,
                            "annotation_id": ann_id})
                yield self.checked(episode, f"{image_uri} [annotation {ann_id}]")

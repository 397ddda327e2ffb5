"""The one contract every source format implements (as Minari's backends share one abstract base).

A source turns a URI in its published layout into :class:`~trajcorpus.schemas.Episode` records.
It is split into *units* (a file, a checkpoint, a shard) that can be read independently, so the
Beam job can fan them out; episodes that cross units are emitted whole by the unit in which they
start. Reading a unit yields Episodes and, for inputs that cannot become valid episodes,
:class:`~trajcorpus.schemas.Rejected` records: one bad episode never stops the rest.

Adding a format = one module under ``sources/`` with a ``Source`` subclass that sets ``kind``
(registration happens by subclassing; every module of this package is imported by
:func:`load_kinds`, and a plugin package adds a kind through the ``trajcorpus.sources`` entry-point
group), a catalog entry and a fixture test.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar

import pydantic

from ..errors import SourceError, TrajcorpusError, one_line
from ..schemas.episode import Episode, Rejected

__all__ = ["Source", "SourceOptions", "Unit", "REGISTRY", "ENTRY_POINT_GROUP", "get_source",
           "open_source", "registered_kinds", "load_kinds", "kind_facts", "options_error",
           "unexpected", "UNEXPECTED", "Label", "Names", "Numbers"]

# The mark of an exception only the last-resort boundary caught (tests look for it).
UNEXPECTED = "a reader bug or unchecked input: please report it"

REGISTRY: dict[str, type[Source]] = {}
ENTRY_POINT_GROUP = "trajcorpus.sources"  # plugin packages register kinds here
_LOADED: list[bool] = []


@dataclasses.dataclass(frozen=True, order=True)
class Unit:
    """An independent piece of work: small, picklable, ordered by collection order."""

    key: str  # stable name, e.g. "Pong/1/ckpt.2" or a file URI
    uri: str
    index: int = 0
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)


class SourceOptions(pydantic.BaseModel):
    """A reader's ``options:`` block. Subclass per kind: an unknown or misspelt key is an error
    when the source is built (the catalog's own rule), and defaults live in one place."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def _one_or_many(value: Any) -> Any:
    """An option that names things takes one name or a list; numbers name things too."""
    if value is None:
        return None
    items = (value,) if isinstance(value, (str, int)) else value
    if isinstance(items, (list, tuple)):
        return tuple(str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                     for v in items)
    return items


# option types: ``games: Pong`` or ``games: [Pong, Breakout]``; ``runs: 1`` or ``runs: ["1", 2]``
Names = Annotated[tuple[str, ...] | None, pydantic.BeforeValidator(_one_or_many)]
Numbers = Annotated[tuple[int, ...] | None, pydantic.BeforeValidator(_one_or_many)]
# a name given in the options (``task: 5`` reads as "5")
Label = Annotated[str | None, pydantic.BeforeValidator(
    lambda v: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)]


class Source(abc.ABC):
    """Base class of all readers. Subclasses set ``kind`` and implement the two abstract methods.

    The class also owns its kind's facts, so nothing outside the module needs an edit when a kind
    is added: ``description`` (one sentence for the dataset card), ``task_categories`` and
    ``tags`` (Hugging Face hub metadata), ``carries_text`` (whether episodes can hold text
    observations) and ``Options`` (the validated options model; the instance gets ``opts``).
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    task_categories: ClassVar[tuple[str, ...]] = ()
    tags: ClassVar[tuple[str, ...]] = ()
    carries_text: ClassVar[bool] = True
    Options: ClassVar[type[SourceOptions]] = SourceOptions
    # options that pick sub-datasets of a root: dropped when ``--input`` names one dataset
    selection_options: ClassVar[tuple[str, ...]] = ()
    # the environment whose definition names fields when nothing else does ("atari": the ALE
    # action set, "mujoco": the Gymnasium joints; see trajcorpus.semantics)
    environment: ClassVar[str] = ""

    @classmethod
    def is_single_dataset(cls, uri: str) -> bool:
        """Whether ``uri`` is one dataset of this kind rather than a root holding several (only
        asked of kinds with ``selection_options``)."""
        return False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            if cls.kind in REGISTRY and REGISTRY[cls.kind] is not cls:
                raise TypeError(f"source kind {cls.kind!r} registered twice")
            REGISTRY[cls.kind] = cls

    def __init__(self, uri: str, *, dataset: str = "", options: Mapping[str, Any] | None = None,
                 task_template: str = "{task}", agent_template: str = "{agent}"):
        self.uri = uri.rstrip("/") if uri.endswith("/") and len(uri) > 1 else uri
        self.dataset = dataset or self.kind
        self.options = dict(options or {})
        self.task_template = task_template
        self.agent_template = agent_template
        self.opts = self._validated_options()

    def _validated_options(self) -> SourceOptions:
        """The options checked against ``Options``: a bad one is one SourceError naming it."""
        try:
            return self.Options.model_validate(self.options)
        except pydantic.ValidationError as err:
            _, reason = options_error(self.kind, self.Options, err)
            raise SourceError(self.uri, reason) from None

    @classmethod
    def own_references(cls, units: list[Unit]) -> dict[str, dict]:
        """Task -> reference scores the data itself declares (e.g. Minari's metadata), which win
        over the catalog's; most formats declare none."""
        return {}

    def rewardless(self) -> str | None:
        """Why the best-return filter cannot rank this input's episodes (it stores no rewards:
        LeRobot without ``next.reward``, VPT); None when it can. The job refuses at once to
        filter such an input instead of keeping an arbitrary fraction."""
        return None

    def unit_inputs(self, unit: Unit) -> tuple[str, ...]:
        """The files and folders whose bytes define ``unit``'s episodes: the build cache keys a
        unit on their sizes and modification times (``pipelines/buildcache.py``). The default,
        the whole input, is always right; a kind whose units read only their own files names
        them, so a grown corpus reuses its other units."""
        return (self.uri,)

    def field_names(self) -> dict[str, list[str]]:
        """Episode field -> per-dimension names from the input's own metadata (LeRobot's
        ``names``), for the manifest's semantics; most formats have none."""
        return {}

    # -- the contract -------------------------------------------------------------------------
    @abc.abstractmethod
    def units(self) -> list[Unit]:
        """The independent units of work, in collection order. Raises SourceError if none."""

    @abc.abstractmethod
    def read_unit(self, unit: Unit) -> Iterator[Episode | Rejected]:
        """Yield the episodes that start in ``unit`` (validated), and Rejected for bad ones."""

    # -- shared helpers -------------------------------------------------------------------------
    def name(self, template: str, fields: Mapping[str, Any]) -> str:
        try:
            return template.format(**fields)
        except KeyError as e:
            raise SourceError(self.uri, f"naming template {template!r} uses unknown field {e} "
                              f"(available: {sorted(fields)})") from None

    def task_name(self, **fields: Any) -> str:
        return self.name(self.task_template, fields)

    def agent_name(self, **fields: Any) -> str:
        return self.name(self.agent_template, fields)

    def checked(self, episode: Episode, location: str) -> Episode | Rejected:
        """Validate ``episode``; a failing one becomes a Rejected naming ``location``."""
        try:
            return episode.validate()
        except TrajcorpusError as e:
            return Rejected(self.dataset, location, str(e), "episode", episode.task)

    def reject(self, location: str, reason: str, kind: str = "episode",
               task: str = "") -> Rejected:
        """A quarantined input; pass ``task`` whenever the reader knows it (for the audit)."""
        return Rejected(self.dataset, one_line(location), one_line(reason), kind, task)

    def read(self) -> Iterator[Episode | Rejected]:
        """Every unit in order; a unit that fails as a whole becomes one Rejected(kind='unit')."""
        for unit in self.planned_units():
            yield from self.read_unit_safely(unit)

    def planned_units(self) -> list[Unit]:
        """``units()`` behind the same net: an unanticipated exception while planning is one
        SourceError naming the input and the exception type (the cause stays chained)."""
        try:
            return self.units()
        except TrajcorpusError:
            raise
        except Exception as e:  # noqa: BLE001
            raise unexpected(None, e, self.uri) from e

    def read_unit_safely(self, unit: Unit) -> Iterator[Episode | Rejected]:
        """``read_unit`` behind the last-resort boundary: whatever goes wrong, a Rejected unit.

        Each known class of bad input is refused at its cause with a TrajcorpusError; any other
        exception is a reader bug or an unchecked input class, and still must not stop the job.
        """
        try:
            yield from self.read_unit(unit)
        except TrajcorpusError as e:  # where = the file (and offset/key) the error names
            yield self.reject(e.where or unit.uri, e.reason, kind="unit",
                              task=unit.param("task", ""))
        except Exception as e:  # noqa: BLE001  (the net under the per-class checks)
            err = unexpected(unit, e)
            yield self.reject(err.where, err.reason, kind="unit", task=unit.param("task", ""))

    def episodes(self, skipped: list[Rejected] | None = None) -> Iterator[Episode]:
        """Strict iteration (what ``trajcorpus episodes`` uses): the first bad input raises.

        A ``Rejected`` of kind "missing" is a failure the producer itself recorded (an
        img2dataset 404), not bad input: it is appended to ``skipped`` instead of raising.
        """
        for unit in self.planned_units():
            try:
                for item in self.read_unit(unit):
                    if isinstance(item, Rejected):
                        if item.kind == "missing":
                            if skipped is not None:
                                skipped.append(item)
                            continue
                        raise SourceError(item.location, item.reason)
                    yield item
            except TrajcorpusError:
                raise
            except Exception as e:  # noqa: BLE001
                raise unexpected(unit, e) from e


def unexpected(unit: Unit | None, exc: BaseException, uri: str = "") -> SourceError:
    """The one-line error for an exception no check anticipated, naming the unit's file and the
    exception type (the traceback stays chained for ``--debug``)."""
    where = unit.uri if unit is not None else uri
    key = unit.key if unit is not None and unit.key != unit.uri else None
    return SourceError(where or "<input>", f"unexpected {type(exc).__name__} while reading: "
                       f"{one_line(exc) or '(no message)'} ({UNEXPECTED})", key=key)


def options_error(kind: str, model: type[SourceOptions], err: pydantic.ValidationError
                  ) -> tuple[str, str]:
    """(option name, one-line reason) of the first problem ``err`` reports."""
    first = err.errors()[0]
    field = ".".join(str(x) for x in first["loc"]) or "options"
    known = sorted(model.model_fields)
    if first["type"] == "extra_forbidden":
        return field, f"unknown {kind} option {field!r} (known: {known})"
    return field, f"{kind} option {field!r}: {one_line(first['msg'])} (known: {known})"


def load_kinds() -> None:
    """Register every kind: import each module of this package (a reader registers itself by
    subclassing), then each ``trajcorpus.sources`` entry point of installed plugin packages."""
    if _LOADED:
        return
    _LOADED.append(True)
    package = __name__.rsplit(".", 1)[0]
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001  (a broken plugin is one line naming it)
            raise TrajcorpusError(f"entry point {ENTRY_POINT_GROUP}:{ep.name} = {ep.value}",
                                  f"cannot load: {type(e).__name__}: {one_line(e)}") from e


def kind_facts(kind: str) -> dict[str, Any]:
    """What the manifest records about a kind (the dataset card reads it from there)."""
    cls = get_source(kind)
    return {"kind": kind, "description": cls.description,
            "task_categories": list(cls.task_categories), "tags": list(cls.tags),
            "carries_text": cls.carries_text}


def registered_kinds() -> list[str]:
    load_kinds()
    return sorted(REGISTRY)


def get_source(kind: str) -> type[Source]:
    load_kinds()
    try:
        return REGISTRY[kind]
    except KeyError:
        raise TrajcorpusError("", f"unknown source kind {kind!r} (known: "
                              f"{', '.join(sorted(REGISTRY))})") from None


def open_source(kind: str, uri: str, **kwargs: Any) -> Source:
    return get_source(kind)(uri, **kwargs)

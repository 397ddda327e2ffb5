"""Readers: one module per published format, all behind :class:`~trajcorpus.sources.base.Source`.

Importing this package registers every reader; ``get_source(kind)`` returns its class.
"""

from . import _load_all  # noqa: F401  (registers every reader)
from .base import REGISTRY, Source, Unit, get_source, open_source, registered_kinds

__all__ = ["REGISTRY", "Source", "Unit", "get_source", "open_source", "registered_kinds"]

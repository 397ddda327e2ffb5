"""Readers: one module per published format, all behind :class:`~trajcorpus.sources.base.Source`.

Importing this package registers every reader (each module of the package, and the kinds plugin
packages add through the ``trajcorpus.sources`` entry-point group); ``get_source(kind)`` returns
its class.
"""

from .base import REGISTRY, Source, Unit, get_source, load_kinds, open_source, registered_kinds

load_kinds()

__all__ = ["REGISTRY", "Source", "Unit", "get_source", "load_kinds", "open_source",
           "registered_kinds"]

"""Sources: where rows come from."""

from __future__ import annotations

from milvusdm.errors import InputError
from milvusdm.sources.base import Source
from milvusdm.spec import Source as SourceSpec


def open_source(spec: SourceSpec) -> Source:
    """The source for a manifest's ``spec.source`` (not opened yet)."""
    kind, settings = spec.one_of()
    if kind == "hdf5":
        from milvusdm.sources.hdf5 import Hdf5Source

        return Hdf5Source(settings)
    if kind == "faiss":
        from milvusdm.sources.faiss import FaissSource

        return FaissSource(settings)
    raise InputError(f"source.{kind} is not supported yet", "use source.hdf5 or source.faiss with this version of milvusdm")


__all__ = ["Source", "open_source"]

"""Sinks: where rows go."""

from __future__ import annotations

from milvusdm.errors import InputError
from milvusdm.sinks.base import Sink
from milvusdm.spec import Target


def open_sink(spec: Target) -> Sink:
    """The sink for a manifest's ``spec.target`` (not connected yet)."""
    kind, settings = spec.one_of()
    if kind == "milvus":
        from milvusdm.sinks.milvus import MilvusSink

        return MilvusSink(settings)
    if kind == "hdf5":
        from milvusdm.sinks.hdf5 import Hdf5Sink

        return Hdf5Sink(settings)
    raise InputError(f"target.{kind} is not supported yet", "use target.milvus or target.hdf5")


__all__ = ["Sink", "open_sink"]

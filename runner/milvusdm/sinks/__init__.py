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
    raise InputError(f"target.{kind} is not supported yet", "use target.milvus with this version of milvusdm")


__all__ = ["Sink", "open_sink"]

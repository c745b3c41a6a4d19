"""Sinks: where rows go."""

from __future__ import annotations

from milvusdm.errors import InputError
from milvusdm.sinks.base import KeySpan, Sink
from milvusdm.spec import S3Settings, Target


def open_sink(spec: Target, s3: S3Settings | None = None) -> Sink:
    """The sink for a manifest's ``spec.target`` (not connected yet); ``s3`` for s3:// paths."""
    kind, settings = spec.one_of()
    if kind == "milvus":
        from milvusdm.sinks.milvus import MilvusSink

        return MilvusSink(settings)
    if kind == "hdf5":
        from milvusdm.sinks.hdf5 import Hdf5Sink

        return Hdf5Sink(settings, s3)
    if kind == "parquet":
        from milvusdm.sinks.parquet import ParquetSink

        return ParquetSink(settings, s3)
    raise InputError(f"target.{kind} is not supported yet", "use target.milvus, target.hdf5 or target.parquet")


__all__ = ["KeySpan", "Sink", "open_sink"]

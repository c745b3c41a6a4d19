"""Sources: where rows come from."""

from __future__ import annotations

from milvusdm.sources.base import Source
from milvusdm.spec import S3Settings
from milvusdm.spec import Source as SourceSpec


def open_source(spec: SourceSpec, s3: S3Settings | None = None) -> Source:
    """The source for a manifest's ``spec.source`` (not opened yet); ``s3`` for s3:// paths."""
    kind, settings = spec.one_of()
    if kind == "hdf5":
        from milvusdm.sources.hdf5 import Hdf5Source

        return Hdf5Source(settings, s3)
    if kind == "parquet":
        from milvusdm.sources.parquet import ParquetSource

        return ParquetSource(settings, s3)
    if kind == "faiss":
        from milvusdm.sources.faiss import FaissSource

        return FaissSource(settings, s3)
    if kind == "milvus1x":
        from milvusdm.sources.milvus1x import Milvus1xSource

        return Milvus1xSource(settings, s3)
    from milvusdm.sources.milvus import MilvusSource

    return MilvusSource(settings)


__all__ = ["Source", "open_source"]

"""Real servers on loopback for tests and benchmarks (as in ``kopf.testing``)."""

from milvusdm.testing.milvus_server import QUICK_SETTINGS, EmbeddedMilvus, free_port_block
from milvusdm.testing.s3_server import MotoS3

__all__ = ["QUICK_SETTINGS", "EmbeddedMilvus", "MotoS3", "free_port_block"]

"""Real servers on loopback for tests and benchmarks (as in ``kopf.testing``)."""

from milvusdm.testing.milvus_server import EmbeddedMilvus, free_port_block

__all__ = ["EmbeddedMilvus", "free_port_block"]

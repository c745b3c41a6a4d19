"""milvusdm: move vectors into, out of and between Milvus 2.x collections."""

__version__ = "0.1.0"

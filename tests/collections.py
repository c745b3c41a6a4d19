"""A collection with every kind of field, and reading one back, for tests of Milvus sources."""

from __future__ import annotations

import numpy as np
from pymilvus import DataType

from tests.conftest import client_for

ROWS = 3000


def make_collection(
    where: dict, name: str = "items", rows: int = ROWS, dim: int = 16, seed: int = 7, prefix: str = "sku"
) -> None:
    """Varchar keys, every scalar kind, JSON, arrays, dynamic keys, two partitions, an HNSW index."""
    rng = np.random.default_rng(seed)
    client = client_for(where)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True, description="things for sale")
    schema.add_field("sku", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("in_stock", DataType.BOOL)
    schema.add_field("i8", DataType.INT8)
    schema.add_field("i16", DataType.INT16)
    schema.add_field("i32", DataType.INT32)
    schema.add_field("i64", DataType.INT64)
    schema.add_field("price", DataType.FLOAT)
    schema.add_field("weight", DataType.DOUBLE, description="in kg")
    schema.add_field("title", DataType.VARCHAR, max_length=200)
    schema.add_field("attrs", DataType.JSON)
    schema.add_field("sizes", DataType.ARRAY, element_type=DataType.INT32, max_capacity=4)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=3, max_length=12)
    client.create_collection(name, schema=schema)
    client.create_partition(name, "archive")
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="HNSW", metric_type="COSINE", params={"M": 8, "efConstruction": 64})
    client.create_index(name, index)
    vectors = rng.random((rows, dim), dtype=np.float32)
    data = [
        {
            "sku": f"{prefix}-{i:06d}",
            "embedding": vectors[i].tolist(),
            "in_stock": bool(i % 2),
            "i8": i % 100 - 50,
            "i16": i % 30000,
            "i32": i,
            "i64": 2**60 + i,
            "price": float(np.float32(i / 7)),
            "weight": i / 3,
            "title": f"item «{i}»",
            "attrs": {"colour": ["red", "blue"][i % 2], "n": i},
            "sizes": list(range(i % 5)),
            "tags": ["a", "b"][: i % 3],
            **({"note": f"dyn {i}"} if i % 4 else {}),
        }
        for i in range(rows)
    ]
    half = rows * 2 // 3
    if rows:
        client.insert(name, data[:half])
        client.insert(name, data[half:], partition_name="archive")
    client.flush(name)
    client.load_collection(name)
    client.close()


def rows_of(where: dict, name: str, partition: str | None = None, filter: str = 'sku >= ""') -> dict:
    client = client_for(where)
    client.load_collection(name)
    iterator = client.query_iterator(
        name, batch_size=1000, filter=filter, output_fields=["*"], partition_names=[partition] if partition else None
    )
    rows = {}
    while page := iterator.next():
        rows.update({row["sku"]: dict(row) for row in page})
    iterator.close()
    client.close()
    return rows


def make_hashes(where: dict, name: str = "hashes", rows: int = 300, alias: str | None = None) -> None:
    """Int64 keys and binary vectors under a BIN_IVF_FLAT index, optionally with an alias."""
    client = client_for(where)
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("bits", DataType.BINARY_VECTOR, dim=64)
    client.create_collection(name, schema=schema)
    index = client.prepare_index_params()
    index.add_index("bits", index_type="BIN_IVF_FLAT", metric_type="JACCARD", params={"nlist": 4})
    client.create_index(name, index)
    codes = np.random.default_rng(3).integers(0, 256, (rows, 8), dtype=np.uint8)
    client.insert(name, [{"pk": 2**62 + i, "bits": c.tobytes()} for i, c in enumerate(codes)])
    client.flush(name)
    if alias:
        client.create_alias(name, alias)
    client.close()


def make_docs(where: dict, name: str = "docs", rows: int = 400, dim: int = 8, seed: int = 5) -> None:
    """Int64 keys, float vectors, a JSON field and a dynamic field (in whatever database ``where`` names)."""
    client = client_for(where)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("meta", DataType.JSON)
    client.create_collection(name, schema=schema)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    client.create_index(name, index)
    vectors = np.random.default_rng(seed).random((rows, dim), dtype=np.float32)
    for lo in range(0, rows, 5000):
        client.insert(
            name,
            [
                {"id": -i, "vector": vectors[i].tolist(), "meta": {"n": i, "w": [i, "x"]}, "extra": i % 3}
                for i in range(lo, min(rows, lo + 5000))
            ],
        )
    client.flush(name)
    client.close()


def all_rows(where: dict, name: str, key: str, partition: str | None = None) -> dict:
    """Every row of a collection by key (any key type)."""
    client = client_for(where)
    client.load_collection(name)
    expr = f'{key} >= ""' if key == "sku" else f"{key} >= {1 - 2**63} || {key} < 0"
    iterator = client.query_iterator(
        name, batch_size=1000, filter=expr, output_fields=["*"], partition_names=[partition] if partition else None
    )
    rows = {}
    while page := iterator.next():
        rows.update({row[key]: dict(row) for row in page})
    iterator.close()
    client.close()
    return rows

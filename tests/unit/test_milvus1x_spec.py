"""source.milvus1x in the spec: tag names for 2.x, and the operator passes the MySQL password Secret."""

import pytest
import yaml

from milvusdm import spec
from milvusdm.env import META_PASSWORD
from milvusdm.errors import InputError
from milvusdm.milvus1x_meta import collections, partition_name
from milvusdm_operator.jobs import secret_env
from tests.conftest import REPO


@pytest.mark.parametrize(
    "tag,name", [("2021-q4", "_2021_q4"), ("tag a", "tag_a"), ("ok_1", "ok_1"), ("", "_"), ("商品", "__")]
)
def test_tags_map_to_valid_partition_names(tag, name):
    assert partition_name(tag) == name


def test_tags_mapping_to_one_name_are_refused():
    tables = [(1, "c", 0, 8, 1, "", ""), (2, "11", 0, 8, 1, "c", "a-b"), (3, "12", 0, 8, 1, "c", "a b")]
    with pytest.raises(InputError, match=r"both map to the 2\.x partition name .a_b."):
        collections([t[1:] for t in tables], [])


def test_operator_passes_the_meta_password_secret():
    migration = spec.parse(yaml.safe_load((REPO / "examples" / "milvus1x-to-milvus.yaml").read_text()))
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in secret_env(migration)}
    assert env[META_PASSWORD] == {"name": "legacy-mysql", "key": "password"}
    assert env["MILVUSDM_TARGET_TOKEN"] == {"name": "prod-milvus", "key": "token"}

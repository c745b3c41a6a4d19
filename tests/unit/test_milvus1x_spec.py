"""source.milvus1x in the spec: one collection, several or every live one (the model and the CRD agree),
which of them the meta allows, tag names for 2.x, and the operator passing the MySQL password Secret."""

import re

import pytest
import yaml

from milvusdm import spec
from milvusdm.env import META_PASSWORD
from milvusdm.errors import InputError
from milvusdm.milvus1x_meta import choose, collections, partition_name
from milvusdm_operator.jobs import secret_env
from tests.conftest import REPO
from tests.crd_validation import validate


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


def one_x(**source) -> spec.Milvus1xSource:
    return spec.Milvus1xSource.model_validate({"path": "/old", **source})


def test_collection_collections_and_neither_become_one_list():
    single = one_x(collection="a", partitions=["t", "_default"])
    assert not single.many and [(c.name, c.partitions) for c in single.chosen or []] == [("a", ["t", "_default"])]
    several = one_x(collections=[{"name": "a", "partitions": ["t"]}, {"name": "b"}])
    assert several.many and [(c.name, c.partitions) for c in several.chosen or []] == [("a", ["t"]), ("b", None)]
    every = one_x()
    assert every.many and every.chosen is None


@pytest.mark.parametrize(
    "source,phrase",
    [
        ({"collection": "a", "collections": [{"name": "b"}]}, "not both"),
        ({"partitions": ["t"]}, "partitions go with collection"),
        ({"collections": [{"name": "a"}, {"name": "a", "partitions": ["t"]}]}, "names a twice"),
        ({"collections": []}, "at least 1 item"),
        ({"collections": ["a"]}, "valid dictionary"),
        ({"collections": [{"name": "a", "partitions": []}]}, "at least 1 item"),
    ],
)
def test_bad_collection_choices_are_refused(source, phrase):
    with pytest.raises(ValueError, match=phrase):
        one_x(**source)


DEFINITION = yaml.safe_load((REPO / "crds" / "milvusmigrations.milvusdm.io.yaml").read_text())


@pytest.mark.parametrize(
    "source,target,valid",
    [
        ({"collections": [{"name": "a", "partitions": ["t"]}]}, {"milvus": {"rename": {"a": "b"}}}, True),
        ({}, {"milvus": {}}, True),
        ({}, {"hdf5": {"path": "/out/"}}, True),
        ({}, {"parquet": {"path": "/out/"}}, True),
        ({}, {"hdf5": {"path": "/out.h5"}}, False),
        ({}, {"milvus": {"collection": "c"}}, False),
        ({"collection": "a"}, {"milvus": {"collection": "c"}}, True),
        ({"collection": "a"}, {"milvus": {}}, False),
        ({"collection": "a", "collections": [{"name": "a"}]}, {"milvus": {}}, False),
        ({"partitions": ["t"]}, {"milvus": {}}, False),
        ({"collections": [{"name": "a"}, {"name": "a"}]}, {"milvus": {}}, False),
    ],
)
def test_the_crd_and_the_model_agree_on_collections(source, target, valid):
    document = {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": "m"},
        "spec": {"source": {"milvus1x": {"path": "/old", **source}}, "target": target},
    }
    assert (validate(DEFINITION, document) == []) == valid
    if valid:
        spec.parse(document)
    else:
        with pytest.raises(InputError):
            spec.parse(document)


def meta() -> dict:
    """Two live collections (one with a tag whose first partition was dropped), a dropped one, a substructure one."""
    tables = [
        ("docs", 0, 8, 1, "", ""),
        ("p1", 1, 8, 1, "docs", "t"),  # dropped, then re-created
        ("p2", 0, 8, 1, "docs", "t"),
        ("p3", 1, 8, 1, "docs", "gone"),
        ("codes", 0, 64, 3, "", ""),
        ("old", 1, 8, 1, "", ""),
    ]
    return collections(tables, [("p2", "s1", "f1", 1, 5), ("p1", "s0", "f0", 1, 9)])


def test_choose_defaults_to_every_live_collection_and_keeps_asked_tags():
    chosen = choose(meta(), None, "/old", "source.milvus1x.collections")
    assert [(c.name, [p.tag for p in ps]) for c, ps in chosen] == [("codes", ["_default"]), ("docs", ["_default", "t"])]
    ((docs, partitions),) = choose(meta(), [("docs", ["t", "t"])], "/old", "f")
    assert docs.name == "docs" and [(p.tag, p.rows) for p in partitions] == [("t", 5)]  # the live "t", once


@pytest.mark.parametrize(
    "wanted,phrase",
    [
        ([("docs", None), ("old", None)], "collection 'old' is not in /old (live collections: codes, docs)"),
        ([("docs", ["t", "gone"])], "collection 'docs' has no partition 'gone' (live tags: _default, t)"),
    ],
)
def test_choose_refuses_missing_or_dropped_names(wanted, phrase):
    with pytest.raises(InputError, match=re.escape(phrase)) as error:
        choose(meta(), wanted, "/old", "source.milvus1x.collections")
    assert "check source.milvus1x.collections" in error.value.fix


def test_choose_refuses_a_metric_it_cannot_migrate_before_any_copy():
    found = meta() | collections([("sub", 0, 64, 6, "", "")], [])
    with pytest.raises(InputError, match="SUBSTRUCTURE"):
        choose(found, None, "/old", "source.milvus1x.collections")

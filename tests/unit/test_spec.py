"""The manifest model: defaults, one-of rules, field paths in errors, credentials."""

import pytest

from milvusdm import spec
from milvusdm.errors import InputError


def document(source=None, target=None, **extra):
    return {
        "apiVersion": "milvusdm.io/v1alpha1",
        "kind": "MilvusMigration",
        "metadata": {"name": "m1", "labels": {"team": "search"}},
        "spec": {
            "source": source or {"hdf5": {"path": "data.h5"}},
            "target": target or {"milvus": {"collection": "items"}},
            **extra,
        },
    }


def test_defaults():
    migration = spec.parse(document())
    target = migration.spec.target.milvus
    assert (target.uri, target.mode, target.id_field, target.vector_field) == ("milvusdm.db", "create", "id", "vector")
    assert target.is_lite and target.index.type == "AUTOINDEX" and target.metric is None
    assert (migration.spec.batch_size, migration.spec.verify, migration.spec.parallelism) == (10_000, "sample", 1)
    assert migration.spec.source.one_of()[0] == "hdf5"


def test_camel_case_fields_and_server_uri():
    migration = spec.parse(
        document(
            target={"milvus": {"uri": "http://milvus:19530", "collection": "c", "idField": "pk", "mode": "append"}}
        )
    )
    assert migration.spec.target.milvus.id_field == "pk"
    assert not migration.spec.target.milvus.is_lite


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["spec"]["target"]["milvus"].update(colection="x"), "spec.target.milvus.colection: unknown field"),
        (lambda d: d["spec"].update(batchsize=5), "spec.batchsize: unknown field"),
        (lambda d: d["spec"].update(batchSize=0), "spec.batchSize: Input should be greater than or equal to 1"),
        (lambda d: d["spec"]["target"]["milvus"].update(mode="replace"), "spec.target.milvus.mode: Input should be"),
        (lambda d: d["spec"]["target"]["milvus"].update(metric="euclid"), "spec.target.milvus.metric"),
        (lambda d: d["spec"]["target"]["milvus"].update(collection="bad-name"), "spec.target.milvus.collection"),
        (lambda d: d["spec"]["source"].update(faiss={"path": "x"}), "spec.source: Value error, set exactly one of"),
        (lambda d: d["spec"].update(source={}), "spec.source: Value error, set exactly one of: hdf5, faiss, milvus"),
        (lambda d: d["spec"]["source"]["hdf5"].update(paths=["a"]), "spec.source.hdf5: Value error, set exactly one"),
        (lambda d: d.update(kind="Migration"), "kind: Input should be 'MilvusMigration'"),
        (lambda d: d.update(apiVersion="milvusdm.io/v1"), "apiVersion: Input should be"),
        (lambda d: d["metadata"].update(name="Not_A_DNS_Name"), "metadata.name"),
        (lambda d: d["spec"].pop("target"), "spec.target: Field required"),
    ],
)
def test_errors_name_the_field_path(change, message):
    bad = document()
    change(bad)
    with pytest.raises(InputError) as raised:
        spec.parse(bad)
    assert message in raised.value.problem


def test_load_reports_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(InputError, match="cannot read manifest"):
        spec.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        spec.load(broken)


def test_credentials_from_manifest_then_environment(monkeypatch):
    endpoint = spec.MilvusEndpoint(uri="http://m:19530", user="root")
    monkeypatch.setenv("MILVUSDM_TARGET_PASSWORD", "s3cret")
    monkeypatch.setenv("MILVUSDM_SOURCE_TOKEN", "not-for-target")
    assert endpoint.credentials("target") == {"user": "root", "password": "s3cret"}
    monkeypatch.delenv("MILVUSDM_TARGET_PASSWORD")
    assert spec.MilvusEndpoint(token="inline").credentials("target") == {"token": "inline"}


def test_secret_reference_without_its_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("MILVUSDM_TARGET_TOKEN", raising=False)
    endpoint = spec.MilvusEndpoint(uri="http://m:19530", tokenSecretRef={"name": "milvus", "key": "token"})
    with pytest.raises(InputError, match=r"Secret 'milvus' key 'token'.*MILVUSDM_TARGET_TOKEN is not set"):
        endpoint.credentials("target")
    monkeypatch.setenv("MILVUSDM_TARGET_TOKEN", "from-secret")
    assert endpoint.credentials("target") == {"token": "from-secret"}

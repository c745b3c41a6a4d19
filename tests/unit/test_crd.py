"""The CRD and the spec model agree: both accept every example and reject the same mistakes."""

import copy

import pytest
import yaml

from milvusdm import crd, spec
from milvusdm.errors import InputError
from tests.conftest import REPO
from tests.crd_validation import validate

CRD_FILE = REPO / "crds" / "milvusmigrations.milvusdm.io.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def definition():
    return yaml.safe_load(CRD_FILE.read_text())


def test_committed_crd_is_generated_from_the_model():
    assert CRD_FILE.read_text() == crd.render(), "run: milvusdm crd > crds/milvusmigrations.milvusdm.io.yaml"


def test_crd_names_and_columns(definition):
    names = definition["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "MilvusMigration",
        "milvusmigrations",
        ["mmig"],
        ["milvusdm"],
    )
    version = definition["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Progress",
        "Rows",
        "Source",
        "Target",
        "Age",
    ]
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert (conditions["x-kubernetes-list-type"], conditions["x-kubernetes-list-map-keys"]) == ("map", ["type"])


def test_examples_exist_for_every_path():
    assert {p.name for p in EXAMPLES} >= {
        "faiss-pvc-to-milvus.yaml",
        "milvus-to-hdf5-pvc.yaml",
        "hdf5-to-milvus-lite.yaml",
        "hdf5-to-milvus.yaml",
        "faiss-to-milvus.yaml",
        "milvus-to-milvus.yaml",
        "milvus-to-hdf5.yaml",
        "parallel-hdf5-to-milvus.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_both(definition, path):
    document = yaml.safe_load(path.read_text())
    assert validate(definition, document) == []
    spec.parse(document)


def base():
    return yaml.safe_load((REPO / "examples" / "hdf5-to-milvus.yaml").read_text())


INVALID = {
    "unknown field": lambda d: d["spec"]["target"]["milvus"].update(colection="x"),
    "two sources": lambda d: d["spec"]["source"].update(faiss={"path": "/x"}),
    "no source": lambda d: d["spec"].update(source={}),
    "path and paths": lambda d: d["spec"]["source"]["hdf5"].update(path="/x.h5"),
    "two targets": lambda d: d["spec"]["target"].update(hdf5={"path": "/x"}),
    "missing collection": lambda d: d["spec"]["target"]["milvus"].pop("collection"),
    "bad mode": lambda d: d["spec"]["target"]["milvus"].update(mode="replace"),
    "bad metric": lambda d: d["spec"]["target"]["milvus"].update(metric="cosine"),
    "batch size zero": lambda d: d["spec"].update(batchSize=0),
    "bad collection name": lambda d: d["spec"]["target"]["milvus"].update(collection="has-dash"),
    "parallelism too high": lambda d: d["spec"].update(parallelism=1000),
    "secret ref without key": lambda d: d["spec"]["target"]["milvus"].update(tokenSecretRef={"name": "s"}),
    "bad verify": lambda d: d["spec"].update(verify="all"),
    "parallel hdf5 export": lambda d: d["spec"].update(target={"hdf5": {"path": "/x.h5"}}, parallelism=2),
    "reserved volume name": lambda d: d["spec"]["job"]["volumes"][0].update(name="tmp"),
    "collection and collections": lambda d: d["spec"].update(
        source={"milvus": {"collection": "a", "collections": ["*"]}}
    ),
    "bad collection pattern": lambda d: d["spec"].update(source={"milvus": {"collections": ["a-b"]}}),
    "one target collection for many": lambda d: d["spec"].update(source={"milvus": {"collections": ["*"]}}),
    "dump without collections": lambda d: d["spec"].update(
        source={"milvus": {"collection": "a"}}, target={"dump": {"path": "/d"}}
    ),
    "many to one file": lambda d: d["spec"].update(source={"dump": {"path": "/d"}}, target={"hdf5": {"path": "/x.h5"}}),
    "dump in parallel": lambda d: d["spec"].update(
        source={"milvus": {"collections": ["*"]}}, parallelism=2, target={"dump": {"path": "/d"}}
    ),
}
# Pod settings are checked by the API server with Kubernetes' own schemas (the model passes them on).
INVALID_FOR_THE_API_SERVER = {
    "volume without a name": lambda d: d["spec"]["job"]["volumes"][0].pop("name"),
    "claim name as a number": lambda d: d["spec"]["job"]["volumes"][0]["persistentVolumeClaim"].update(claimName=7),
    "mount without a path": lambda d: d["spec"]["job"]["volumeMounts"][0].pop("mountPath"),
    "toleration seconds as text": lambda d: d["spec"]["job"].update(
        tolerations=[{"key": "a", "tolerationSeconds": "x"}]
    ),
    "unknown volume field": lambda d: d["spec"]["job"]["volumes"][0].update(hostpath={"path": "/"}),
    "node selector value as a list": lambda d: d["spec"]["job"].update(nodeSelector={"a": ["b"]}),
}


@pytest.mark.parametrize("name", INVALID_FOR_THE_API_SERVER)
def test_bad_pod_settings_fail_the_crd(definition, name):
    document = base()
    INVALID_FOR_THE_API_SERVER[name](document)
    assert validate(definition, document), f"the CRD accepted: {name}"


@pytest.mark.parametrize("name", INVALID)
def test_invalid_manifests_fail_both(definition, name):
    document = base()
    INVALID[name](document)
    assert validate(definition, document), f"the CRD accepted: {name}"
    with pytest.raises(InputError):
        spec.parse(document)


def test_spec_is_immutable_except_suspend(definition):
    old = base()
    suspended = copy.deepcopy(old)
    suspended["spec"]["suspend"] = True
    assert validate(definition, suspended, old=old) == []
    retargeted = copy.deepcopy(old)
    retargeted["spec"]["target"]["milvus"]["collection"] = "other"
    assert any("immutable" in e for e in validate(definition, retargeted, old=old))
    resized = copy.deepcopy(old)
    resized["spec"]["batchSize"] = 5
    assert any("immutable" in e for e in validate(definition, resized, old=old))


SCHEDULE_CRD = REPO / "crds" / "milvusmigrationschedules.milvusdm.io.yaml"


def test_committed_schedule_crd_is_generated_from_the_model():
    assert SCHEDULE_CRD.read_text() == crd.render(schedule=True), (
        "run: milvusdm crd --schedule > crds/milvusmigrationschedules.milvusdm.io.yaml"
    )


@pytest.mark.parametrize("path", sorted((REPO / "examples" / "schedules").glob("*.yaml")), ids=lambda p: p.name)
def test_schedule_examples_validate_against_both(path):
    from milvusdm.schedule import MilvusMigrationSchedule

    document = yaml.safe_load(path.read_text())
    assert validate(yaml.safe_load(SCHEDULE_CRD.read_text()), document) == []
    MilvusMigrationSchedule.model_validate(document)


def test_bad_schedules_are_refused():
    from pydantic import ValidationError

    from milvusdm.schedule import MilvusMigrationSchedule

    document = yaml.safe_load((REPO / "examples" / "schedules" / "nightly-export.yaml").read_text())
    for field, value, message in (
        ("schedule", "every night", "not a cron expression"),
        ("timeZone", "Mars/Olympus", "unknown time zone"),
    ):
        with pytest.raises(ValidationError, match=message):
            MilvusMigrationSchedule.model_validate({**document, "spec": {**document["spec"], field: value}})


def test_each_run_writes_under_its_own_time():
    import datetime

    from milvusdm.schedule import run_spec, to_prune

    at = datetime.datetime(2026, 11, 28, 3, 0, tzinfo=datetime.UTC)
    template = spec.parse(base()).spec
    assert run_spec(template, at).target.milvus.collection == "glove_20261128T030000Z"
    many = template.model_copy(
        update={
            "source": spec.Source(milvus=spec.MilvusSource(uri="http://m:19530", collections=["docs_*", "db2.faq"])),
            "target": spec.Target(milvus=spec.MilvusTarget(uri="http://t:19530", rename={"docs_a": "a"})),
        }
    )
    from milvusdm.instance import renamed

    rules = run_spec(many, at).target.milvus.rename
    assert renamed(rules, "default", "docs_a", None) == ("default", "a_20261128T030000Z")
    assert renamed(rules, "db2", "faq", None) == ("db2", "faq_20261128T030000Z")
    for path, expected in (
        ("/exports/", "/exports/20261128T030000Z/"),
        ("/exports/p.h5", "/exports/20261128T030000Z/p.h5"),
        ("/p.h5", "/20261128T030000Z/p.h5"),
        ("p.h5", "20261128T030000Z/p.h5"),
        ("s3://b/x/", "s3://b/x/20261128T030000Z/"),
    ):
        export = template.model_copy(update={"target": spec.Target(hdf5=spec.Hdf5Target(path=path))})
        assert run_spec(export, at).target.hdf5.path == expected
        parquet = template.model_copy(update={"target": spec.Target(parquet=spec.ParquetTarget(path=path))})
        assert run_spec(parquet, at).target.parquet.path == expected
    for path in ("s3://b/dumps", "s3://b/dumps/"):  # a dump's path is a folder, with or without its '/'
        dump = template.model_copy(update={"target": spec.Target(dump=spec.DumpTarget(path=path))})
        assert run_spec(dump, at).target.dump.path == "s3://b/dumps/20261128T030000Z/"
    assert to_prune(["n-3", "n-1", "n-2"], keep=2) == ["n-1"] and to_prune(["n-1"], keep=2) == []


def test_only_a_runs_own_timestamped_folder_may_be_pruned():
    from milvusdm.schedule import run_output

    template = spec.parse(base()).spec
    assert run_output("nightly-20261128t030000z", template) is None, "a Milvus target has no files"

    def output(kind: str, path: str, name: str = "nightly-20261128t030000z") -> str | None:
        model = {"hdf5": spec.Hdf5Target, "parquet": spec.ParquetTarget, "dump": spec.DumpTarget}[kind]
        return run_output(name, template.model_copy(update={"target": spec.Target(**{kind: model(path=path)})}))

    for kind, path, folder in (
        ("hdf5", "/exports/20261128T030000Z/", "/exports/20261128T030000Z/"),
        ("hdf5", "/exports/20261128T030000Z/p.h5", "/exports/20261128T030000Z/"),
        ("parquet", "20261128T030000Z/p.parquet", "20261128T030000Z/"),
        ("dump", "s3://b/dumps/20261128T030000Z", "s3://b/dumps/20261128T030000Z/"),
        ("hdf5", "s3://b/20261128T030000Z/p.h5", "s3://b/20261128T030000Z/"),
    ):
        assert output(kind, path) == folder
    for kind, path, name in (
        ("hdf5", "/exports/", "nightly-20261128t030000z"),  # the template's base folder
        ("hdf5", "/exports/p.h5", "nightly-20261128t030000z"),
        ("hdf5", "/exports/20261129T030000Z/", "nightly-20261128t030000z"),  # another run's
        ("dump", "/dumps/20261128T030000Z/x/", "nightly-20261128t030000z"),  # below the run's folder
        ("hdf5", "/exports/20261128T030000Z/../", "nightly-20261128t030000z"),
        ("hdf5", "/x/../20261128T030000Z/", "nightly-20261128t030000z"),
        ("hdf5", "/exports/20261128T030000Z/", "hand-made"),  # not a scheduled run's name
        ("hdf5", "s3://20261128T030000Z/p.h5", "nightly-20261128t030000z"),  # a bucket, not a prefix
    ):
        with pytest.raises(InputError, match="refusing to delete"):
            output(kind, path, name)

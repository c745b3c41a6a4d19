"""``milvusdm prune-output``: a scheduled run's output deleted (a local folder, an S3 prefix on a real
S3 endpoint), nothing beside it, again without error, and anything else refused."""

from __future__ import annotations

from milvusdm import storage
from tests.conftest import manifest

RUN = "nightly-20261128t030000z"
STAMP = "20261128T030000Z"
SOURCE = {"milvus": {"uri": "http://milvus:19530", "collection": "products"}}


def test_deletes_the_runs_folder_and_nothing_beside_it(tmp_path, run_cli):
    exports = tmp_path / "exports"
    for relative in (
        f"{STAMP}/p.h5",
        f"{STAMP}/p.h5.partial",
        f"{STAMP}/deeper/q.h5",
        "20261129T030000Z/p.h5",
        "keep.txt",
    ):
        (exports / relative).parent.mkdir(parents=True, exist_ok=True)
        (exports / relative).write_text(relative)
    path = manifest(tmp_path, SOURCE, {"hdf5": {"path": f"{exports}/{STAMP}/p.h5"}}, name=RUN)
    result = run_cli("prune-output", "-f", path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{RUN}: deleted {exports}/{STAMP}/ (3 files)"
    assert sorted(p.relative_to(exports).as_posix() for p in exports.rglob("*") if p.is_file()) == [
        "20261129T030000Z/p.h5",
        "keep.txt",
    ]
    again = run_cli("prune-output", "-f", path)
    assert again.exit_code == 0 and again.stdout.strip() == f"{exports}/{STAMP}/: already gone"


def test_deletes_the_runs_prefix_on_s3(tmp_path, run_cli, s3, monkeypatch):
    monkeypatch.setattr(storage, "DELETE_BATCH", 2)  # several DeleteObjects requests
    bucket, client = s3["bucket"], s3["client"]
    doomed = [f"dumps/{STAMP}/dump.json"] + [f"dumps/{STAMP}/default/c{i}/_default.h5" for i in range(4)]
    kept = ["dumps/20261129T030000Z/dump.json", f"dumps/{STAMP}x/dump.json", "dumps/README"]
    for key in doomed + kept:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    source = {"milvus": {"uri": "http://milvus:19530", "collections": ["*"]}}
    target = {"dump": {"path": f"s3://{bucket}/dumps/{STAMP}"}}
    path = manifest(tmp_path, source, target, name=RUN, s3=s3["settings"])
    result = run_cli("prune-output", "-f", path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"{RUN}: deleted s3://{bucket}/dumps/{STAMP}/ (5 files)"
    left = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in left) == sorted(kept)
    assert run_cli("prune-output", "-f", path).exit_code == 0


def test_refuses_what_is_not_a_runs_output(tmp_path, run_cli):
    exports = tmp_path / "exports"
    (exports / STAMP).mkdir(parents=True)
    (exports / "p.h5").write_text("the template's own file")
    for name, target in (
        (RUN, {"hdf5": {"path": f"{exports}/"}}),  # the template's base folder
        ("hand-made", {"hdf5": {"path": f"{exports}/{STAMP}/p.h5"}}),  # not a scheduled run
        (RUN, {"milvus": {"uri": "http://milvus:19530", "collection": "products"}}),
    ):
        result = run_cli("prune-output", "-f", manifest(tmp_path, SOURCE, target, name=name))
        assert result.exit_code == 2, result.stdout
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("milvusdm: error: ") and ("refusing to delete" in line or "no files" in line)
    assert (exports / "p.h5").exists() and (exports / STAMP).is_dir()

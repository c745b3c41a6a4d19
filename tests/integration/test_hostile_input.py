"""What a hostile tester found (issue #14, cases 8-15 and the rough edges): one line, the right exit
code, nothing left behind, and fix lines that lead somewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from milvusdm import spec
from milvusdm.checkpoint import FileCheckpoints, fingerprint
from milvusdm.testing.milvus_server import free_port_block
from tests.conftest import client_for, make_h5, manifest, read_back

INPUT, UNAVAILABLE = 2, 3


@pytest.fixture
def good(tmp_path, rng):
    return make_h5(tmp_path / "good.h5", rng.random((100, 4), dtype=np.float32), np.arange(100))


def nothing_in(target: dict) -> bool:
    client = client_for(target)
    try:
        return client.list_collections() == []
    finally:
        client.close()


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        ({"fields": {"score": "a", "flag": "a"}}, {}, "maps 'flag', 'score' to one field 'a'"),
        ({"fields": {"score": "id"}}, {}, "names a field 'id', the target's idField"),
        ({}, {"idField": "x", "vectorField": "x"}, "idField and vectorField are both 'x'"),
    ],
)
def test_names_that_would_collide_are_refused_by_validate(tmp_path, run_cli, lite, good, source, target, words):
    path = manifest(
        tmp_path, {"hdf5": {"path": str(good), **source}}, {"milvus": {**lite, "collection": "c", **target}}
    )
    result = run_cli("validate", "-f", path)
    assert result.exit_code == INPUT and words in result.stderr


def test_utf8_in_fixed_length_strings_is_decoded_and_bad_bytes_named(tmp_path, run_cli, lite, rng):
    titles = np.array(["café".encode(), b"plain", "naïve".encode()], dtype="S8")
    file = make_h5(tmp_path / "s.h5", rng.random((3, 4), dtype=np.float32), np.arange(3), datasets={"title": titles})
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file), "fields": {"title": "title"}}},
        {"milvus": {**lite, "collection": "c"}},
        verify="full",
    )
    assert run_cli("run", "-f", path, "-q", "--state", tmp_path / "state").exit_code == 0
    assert read_back(lite, "c")[1][0]["title"] == "café"

    bad = make_h5(
        tmp_path / "bad.h5",
        rng.random((3, 4), dtype=np.float32),
        np.arange(3),
        datasets={"title": np.array([b"ok", b"\xff\xfe", b"ok"], dtype="S4")},
    )
    path = manifest(
        tmp_path, {"hdf5": {"path": str(bad), "fields": {"title": "title"}}}, {"milvus": {**lite, "collection": "d"}}
    )
    result = run_cli("run", "-f", path, "-q", "--state", tmp_path / "state")
    assert result.exit_code == INPUT and "dataset '/title'" in result.stderr and "row 1, is not UTF-8" in result.stderr
    assert not list((tmp_path / "state").glob("*.json"))
    client = client_for(lite)
    assert client.list_collections() == ["c"]
    client.close()


def test_bad_local_paths_are_one_line_and_exit_2(tmp_path, run_cli, lite, good, monkeypatch):
    path = manifest(tmp_path, {"hdf5": {"path": str(good)}}, {"milvus": {**lite, "collection": "c"}})
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = run_cli("run", "-f", path, "-q", "--state", a_file)
    assert result.exit_code == INPUT and "cannot hold checkpoints" in result.stderr
    assert nothing_in(lite)

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    result = run_cli("validate", "-f", binary)
    assert result.exit_code == INPUT and "is not text" in result.stderr

    export = manifest(tmp_path, {"hdf5": {"path": str(good)}}, {"hdf5": {"path": str(a_file / "out.h5")}})
    result = run_cli("run", "-f", export, "-q", "--state", tmp_path / "state")
    assert result.exit_code == INPUT and "cannot create the folder" in result.stderr

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("MILVUSDM_KUBE_API", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = run_cli("run", "--resource", "ns/name")
    assert result.exit_code == INPUT and "no Kubernetes credentials" in result.stderr


def test_a_second_run_of_the_same_migration_is_locked_out(tmp_path, run_cli, lite, good):
    path = manifest(tmp_path, {"hdf5": {"path": str(good)}}, {"milvus": {**lite, "collection": "c"}})
    with FileCheckpoints(tmp_path / "state", "test").lock():
        result = run_cli("run", "-f", path, "-q", "--state", tmp_path / "state")
    assert result.exit_code == INPUT and "another run of this migration is in progress" in result.stderr
    assert nothing_in(lite)
    assert run_cli("run", "-f", path, "-q", "--state", tmp_path / "state").exit_code == 0  # the lock went with it


def test_the_checkpoints_identity_leaves_out_the_mode(tmp_path, lite, good):
    def migration(mode: str):
        path = manifest(tmp_path, {"hdf5": {"path": str(good)}}, {"milvus": {**lite, "collection": "c", "mode": mode}})
        return spec.load(path)

    assert fingerprint(migration("append")) == fingerprint(migration("overwrite"))


def test_json_on_failure_names_the_error_code_and_phase(tmp_path, run_cli, lite, rng):
    vectors = rng.random((300, 4), dtype=np.float32)
    vectors[250] = np.nan
    file = make_h5(tmp_path / "nan.h5", vectors)
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "c"}}, batchSize=100)
    result = run_cli("run", "-f", path, "-q", "--json", "--state", tmp_path / "state")
    assert result.exit_code == INPUT
    failure = json.loads(result.stdout)
    assert failure["exitCode"] == INPUT and failure["phase"] == "copy" and "NaN" in failure["error"]


def test_unreachable_before_anything_was_written_does_not_advise_resume(tmp_path, run_cli, good):
    uri = f"http://127.0.0.1:{free_port_block(size=1)}"
    path = manifest(
        tmp_path, {"hdf5": {"path": str(good)}}, {"milvus": {"uri": uri, "collection": "c", "timeoutSeconds": 2}}
    )
    result = run_cli("run", "-f", path, "-q", "--state", tmp_path / "state")
    assert result.exit_code == UNAVAILABLE and "--resume" not in result.stderr and "run it again" in result.stderr


def test_resume_refuses_a_source_replaced_under_the_same_name(tmp_path, run_cli, lite, rng):
    from dataclasses import replace

    from milvusdm.checkpoint import Checkpoint
    from milvusdm.sources.base import content_signature

    file = make_h5(tmp_path / "a.h5", rng.random((100, 4), dtype=np.float32), np.arange(100))
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "c"}})
    store = FileCheckpoints(tmp_path / "state", "test")
    saved = Checkpoint(
        fingerprint(spec.load(path)), position=0, rows=0, created=True, source=content_signature([str(file)])
    )
    make_h5(file, rng.random((100, 4), dtype=np.float32), np.arange(100))  # same name, other rows
    store.save(saved)
    result = run_cli("run", "-f", path, "-q", "--resume", "--state", tmp_path / "state")
    assert result.exit_code == INPUT and "changed since the interrupted run" in result.stderr
    store.save(replace(saved, source=content_signature([str(file)])))
    result = run_cli("run", "-f", path, "-q", "--resume", "--state", tmp_path / "state")
    assert "changed since" not in result.stderr

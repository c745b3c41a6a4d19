"""Shared fixtures: real Milvus targets (Lite in-process, an embedded server), files and manifests."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from pymilvus import MilvusClient
from typer.testing import CliRunner, Result

from milvusdm.cli import app
from milvusdm.testing import QUICK_SETTINGS, EmbeddedMilvus, MotoS3

SERVER_TOKEN = "root:Milvus"
REPO = Path(__file__).resolve().parents[1]


SERVER_FIXTURES = {"milvus_server", "source_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the embedded server, so ``-m "not server"`` never starts one:
    those using a server fixture, and the server case of the ``target`` fixture."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or params.get("target") == "server":
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory) -> EmbeddedMilvus:
    """One real Milvus standalone for the session, with authentication on."""
    with EmbeddedMilvus(tmp_path_factory.mktemp("milvus"), authorization=True, settings=QUICK_SETTINGS) as server:
        yield server


@pytest.fixture(scope="session")
def source_server(tmp_path_factory) -> EmbeddedMilvus:
    """A second real Milvus, running beside ``milvus_server``: the other cluster of a copy."""
    with EmbeddedMilvus(
        tmp_path_factory.mktemp("milvus-source"), authorization=True, settings=QUICK_SETTINGS
    ) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> MotoS3:
    """A real S3 endpoint (moto) with signature checks on."""
    with MotoS3() as server:
        yield server


@pytest.fixture
def s3(s3_server, monkeypatch, request) -> dict:
    """A fresh bucket, the right credentials in the environment, and the manifest's ``spec.s3``."""
    bucket = "test-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    s3_server.client().create_bucket(Bucket=bucket)
    for variable, value in s3_server.environment.items():
        monkeypatch.setenv(variable, value)
    return {
        "bucket": bucket,
        "client": s3_server.client(),
        "settings": {"endpoint": s3_server.endpoint, "region": "us-east-1", "pathStyle": True},
    }


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Checkpoints of runs given no --state go to the test's own folder: a run killed in one test
    must not leave a checkpoint in the shared working directory for the next test to trip on."""
    monkeypatch.setenv("MILVUSDM_STATE_DIR", str(tmp_path / ".milvusdm"))


def healthy(server: EmbeddedMilvus) -> EmbeddedMilvus:
    if not server.serving():
        state = "hung (alive, its port refused connections)" if server.alive else "died"
        why = "\n".join(server.crash_lines()) or "no panic or error line in its logs"
        was = server.uri
        server.restart()
        warnings.warn(
            f"the Milvus server at {was} had {state}; restarted at {server.uri} (its logs and data in "
            f"{server.base_dir}/crashed-N):\n{why}",
            stacklevel=2,
        )
    return server


@pytest.fixture(autouse=True)
def _shared_servers(request):
    """The session's servers, healthy for every test: one that crashed in an earlier test is
    started again (the crash fails that test alone, loudly); collections a test leaves loaded
    keep the servers busy, so they are dropped afterwards."""
    for name in sorted(SERVER_FIXTURES & set(request.fixturenames)):
        healthy(request.getfixturevalue(name))
    yield
    for name in sorted(SERVER_FIXTURES & set(request.fixturenames)):  # the target fixture asks for one late
        server = request.getfixturevalue(name)
        if server.serving():  # else the next test that needs it restarts it
            client = MilvusClient(uri=server.uri, token=SERVER_TOKEN)
            for database in client.list_databases():
                inside = MilvusClient(uri=server.uri, token=SERVER_TOKEN, db_name=database)
                for name in inside.list_collections():
                    for alias in inside.list_aliases(name, db_name=database)["aliases"]:
                        inside.drop_alias(alias)
                    inside.drop_collection(name)
                inside.close()
                if database != "default":
                    client.drop_database(database)
            client.close()


@pytest.fixture(params=["lite", "server"])
def target(request, tmp_path) -> dict:
    """Connection settings of each kind of real Milvus, as a manifest's target.milvus."""
    if request.param == "lite":
        return {"uri": str(tmp_path / "lite.db")}
    server = healthy(request.getfixturevalue("milvus_server"))
    return {"uri": server.uri, "token": SERVER_TOKEN}


@pytest.fixture
def lite(tmp_path) -> dict:
    return {"uri": str(tmp_path / "lite.db")}


def client_for(target: dict) -> MilvusClient:
    return MilvusClient(uri=target["uri"], token=target.get("token", ""), db_name=target.get("database", ""))


def read_back(target: dict, collection: str, vector_field: str = "vector", partition: str | None = None):
    """All rows of a collection: sorted ids and a dict id -> row."""
    client = client_for(target)
    client.load_collection(collection)
    iterator = client.query_iterator(
        collection, batch_size=1000, filter="", output_fields=["*"], partition_names=[partition] if partition else None
    )
    rows = {}
    while page := iterator.next():
        for row in page:
            rows[row["id"]] = row
    iterator.close()
    client.close()
    return np.array(sorted(rows), dtype=np.int64), rows


def make_h5(path: Path, vectors: np.ndarray, ids: np.ndarray | None = None, name: str = "embeddings", **extra) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=vectors, **extra.pop("dataset_options", {}))
        if ids is not None:
            f.create_dataset("ids", data=ids)
        for key, value in extra.pop("datasets", {}).items():
            f.create_dataset(key, data=value)
        for key, value in extra.items():
            f.attrs[key] = value
    return path


def manifest(tmp_path: Path, source: dict, target: dict, name: str = "test", **spec) -> Path:
    document = {
        "apiVersion": "milvusdm.io/v1alpha1",
        "kind": "MilvusMigration",
        "metadata": {"name": name},
        "spec": {"source": source, "target": target, **spec},
    }
    path = tmp_path / f"{name}-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Run ``milvusdm`` in-process; returns exit code, stdout and stderr."""
    runner = CliRunner()

    def invoke(*args: str, env: dict | None = None) -> Result:
        return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

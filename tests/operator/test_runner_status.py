"""The runner as the Job runs it: real rows into a real Milvus server, status into a CR (kmock)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid

import numpy as np
import pytest

from tests.conftest import REPO, SERVER_TOKEN, client_for, make_h5, read_back
from tests.operator.apiserver import versions
from tests.operator.conftest import SPAWNED
from tests.operator.test_operator import (
    JOBS,
    MIGRATIONS,
    NS,
    Emulator,
    condition,
    create,
    eventually,
    set_job_status,
    stored,
)
from tests.rbac import granted, used

pytestmark = [pytest.mark.kmock(cls=Emulator), pytest.mark.server]


def seed(kmock, name: str, source: dict, target: dict, **spec) -> None:
    kmock.objects[MIGRATIONS, NS, name] = {
        "apiVersion": "milvusdm.io/v1alpha1",
        "kind": "MilvusMigration",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": str(next(versions)),
        },
        "spec": {"source": source, "target": target, **spec},
    }


async def runner(kmock, name: str, index: int = 0, **env) -> asyncio.subprocess.Process:
    """`milvusdm run --resource` as the Job's container runs it (credentials from secretKeyRef env)."""
    environment = {
        **os.environ,
        "MILVUSDM_KUBE_API": str(kmock.url),
        "JOB_COMPLETION_INDEX": str(index),
        "MILVUSDM_TARGET_TOKEN": SERVER_TOKEN,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "milvusdm",
        "run",
        "--resource",
        f"{NS}/{name}",
        "-q",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    SPAWNED.append(process)
    return process


async def finish(process) -> str:
    out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode == 0, err.decode()[-2000:]
    return out.decode()


def target_for(server, collection, **extra):
    return {
        "milvus": {
            "uri": server.uri,
            "tokenSecretRef": {"name": "milvus", "key": "token"},
            "collection": collection,
            "index": {"type": "FLAT"},
            **extra,
        }
    }


async def test_runner_reports_exact_counts(api_server, milvus_server, tmp_path, rng):
    rows = 25_000
    file = make_h5(tmp_path / "d.h5", rng.random((rows, 16), dtype=np.float32), np.arange(rows) * 2)
    seed(api_server, "single", {"hdf5": {"path": str(file)}}, target_for(milvus_server, "from_job"), batchSize=2000)
    await finish(await runner(api_server, "single"))
    status = stored(api_server, MIGRATIONS, "single")["status"]
    assert (status["rowsCopied"], status["totalRows"], status["progress"]) == (rows, rows, "100%")
    assert status["shards"]["0"]["completed"] and status["shards"]["0"]["copied"] == rows
    assert status["verified"] == f"sample ({rows} ids present, 1000 rows equal, count {rows})"
    assert status["source"] == f"hdf5:{file}" and status["target"].endswith("/from_job")
    found, _ = read_back({"uri": milvus_server.uri, "token": SERVER_TOKEN}, "from_job")
    np.testing.assert_array_equal(found, np.arange(rows) * 2)
    calls, rules = used(api_server, "milvusdm/"), granted(REPO / "deploy" / "rbac.yaml", "milvusdm-runner")
    assert calls == rules - {("milvusdm.io", "milvusmigrations/status", "get")}, calls


async def test_indexed_shards_split_the_source(api_server, milvus_server, tmp_path, rng):
    rows = 30_001
    file = make_h5(tmp_path / "d.h5", rng.random((rows, 8), dtype=np.float32))
    seed(
        api_server,
        "sharded",
        {"hdf5": {"path": str(file)}},
        target_for(milvus_server, "sharded"),
        batchSize=1000,
        parallelism=2,
        verify="ids",
    )
    first, second = await asyncio.gather(runner(api_server, "sharded", 1), runner(api_server, "sharded", 0))
    await asyncio.gather(finish(first), finish(second))
    status = stored(api_server, MIGRATIONS, "sharded")["status"]
    assert {k: (s["copied"], s["total"], s["completed"]) for k, s in status["shards"].items()} == {
        "0": (15_000, 15_000, True),
        "1": (15_001, 15_001, True),
    }
    assert (status["rowsCopied"], status["totalRows"]) == (rows, rows)
    client = client_for({"uri": milvus_server.uri, "token": SERVER_TOKEN})
    client.load_collection("sharded")
    count = client.query("sharded", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    assert count == rows


async def test_sharded_overwrite_replaces_the_collection_only_once_the_whole_is_proven(
    api_server, milvus_server, tmp_path, rng
):
    endpoint = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    client = client_for(endpoint)
    client.create_collection("shared", dimension=8, auto_id=False)  # the user's rows, before the run
    old = np.arange(500, dtype=np.int64) + 10**9
    client.insert("shared", [{"id": int(i), "vector": [0.5] * 8} for i in old])
    rows = 30_001
    vectors = rng.random((rows, 8), dtype=np.float32)
    broken = vectors.copy()
    broken[25_000, 3] = np.nan  # in the second shard's range, after both shards wrote into the copy
    spec = {"batchSize": 1000, "parallelism": 2, "verify": "ids"}
    for name, data in (("broken", broken), ("clean", vectors)):
        file = make_h5(tmp_path / f"{name}.h5", data)
        seed(
            api_server,
            name,
            {"hdf5": {"path": str(file)}},
            target_for(milvus_server, "shared", mode="overwrite"),
            **spec,
        )
        shards = await asyncio.gather(runner(api_server, name, 1), runner(api_server, name, 0))
        await asyncio.gather(*(shard.communicate() for shard in shards))
        if name == "broken":
            assert shards[0].returncode == 2  # the NaN
            found, _ = read_back(endpoint, "shared")
            np.testing.assert_array_equal(found, old)  # untouched: the user's rows, only those
        else:
            assert [shard.returncode for shard in shards] == [0, 0]
            found, _ = read_back(endpoint, "shared")
            np.testing.assert_array_equal(found, np.arange(rows))
        assert client.list_collections() == ["shared"]  # no staging copy or retired collection left


async def test_restarted_pod_resumes_from_the_status(api_server, milvus_server, tmp_path, rng):
    rows = 200_000  # several seconds of copying: the kill lands mid-stream
    file = make_h5(tmp_path / "d.h5", rng.random((rows, 16), dtype=np.float32), rng.choice(2**40, rows, replace=False))
    seed(
        api_server,
        "restarted",
        {"hdf5": {"path": str(file)}},
        target_for(milvus_server, "restarted"),
        batchSize=1000,
        verify="full",
    )
    first = await runner(api_server, "restarted", MILVUSDM_STATUS_INTERVAL="0.1")  # several reports mid-copy
    killed_at = await eventually(
        lambda: (
            (
                stored(api_server, MIGRATIONS, "restarted")
                .get("status", {})
                .get("shards", {})
                .get("0", {})
                .get("position", 0)
                >= 15_000
            )
            and stored(api_server, MIGRATIONS, "restarted")["status"]["shards"]["0"]["position"]
        ),
        timeout=120,
    )
    first.send_signal(signal.SIGKILL)
    await first.communicate()
    assert killed_at < rows
    await finish(await runner(api_server, "restarted"))
    status = stored(api_server, MIGRATIONS, "restarted")["status"]
    assert status["verified"] == f"full ({rows} ids present, {rows} rows equal, count {rows})"
    assert status["rowsCopied"] == rows and status["shards"]["0"]["rows"] >= rows


async def test_runner_failure_lands_in_the_status(api_server, tmp_path):
    seed(
        api_server,
        "broken",
        {"hdf5": {"path": str(tmp_path / "missing.h5")}},
        {"milvus": {"uri": str(tmp_path / "x.db"), "collection": "c"}},
    )
    process = await runner(api_server, "broken")
    _, err = await process.communicate()
    assert process.returncode == 2
    status = stored(api_server, MIGRATIONS, "broken")["status"]
    assert (
        status["failureReason"] == "InvalidInput"
        and "missing.h5" in status["message"]
        and "does not exist" in status["message"]
    )
    assert err.decode().count("milvusdm: error:") == 1


async def test_operator_and_runner_take_a_migration_to_succeeded(cluster, milvus_server, tmp_path, rng):
    rows = 12_345
    file = make_h5(tmp_path / "d.h5", rng.random((rows, 8), dtype=np.float32))
    document = {
        "apiVersion": "milvusdm.io/v1alpha1",
        "kind": "MilvusMigration",
        "metadata": {"name": "whole"},
        "spec": {
            "source": {"hdf5": {"path": str(file)}},
            "target": target_for(milvus_server, "whole"),
            "verify": "ids",
        },
    }
    await create(cluster, document)
    job = await eventually(lambda: stored(cluster, JOBS, "mmig-whole"))
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["run", "--resource", f"{NS}/whole"]
    await set_job_status(cluster, "mmig-whole", active=1, startTime="2026-11-28T10:00:00Z")
    await finish(await runner(cluster, "whole"))  # what the Job's pod runs
    await set_job_status(
        cluster,
        "mmig-whole",
        active=0,
        succeeded=1,
        completionTime="2026-11-28T10:01:00Z",
        conditions=[{"type": "Complete", "status": "True"}],
    )
    done = await eventually(
        lambda: (
            stored(cluster, MIGRATIONS, "whole")["status"].get("phase") == "Succeeded"
            and stored(cluster, MIGRATIONS, "whole")
        )
    )
    status = done["status"]
    assert (status["rowsCopied"], status["totalRows"], status["progress"]) == (rows, rows, "100%")
    assert status["verified"] == f"ids ({rows} ids present, count {rows})"
    assert condition(done, "Ready")["status"] == "True"
    assert condition(done, "Ready")["message"].startswith("whole: copied 12345 rows")


async def test_runner_dumps_many_collections_with_a_status_key_each(api_server, milvus_server, tmp_path):
    from tests.collections import make_docs, make_hashes

    where = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    make_docs(where, rows=700)
    make_hashes(where, rows=300)
    out = tmp_path / "dump"
    source = {
        "milvus": {"uri": milvus_server.uri, "tokenSecretRef": {"name": "milvus", "key": "token"}, "collections": ["*"]}
    }
    seed(api_server, "dump", source, {"dump": {"path": str(out)}}, batchSize=200)
    await finish(await runner(api_server, "dump", MILVUSDM_SOURCE_TOKEN=SERVER_TOKEN))
    status = stored(api_server, MIGRATIONS, "dump")["status"]
    assert {k: (v["completed"], v["copied"]) for k, v in status["shards"].items()} == {
        "default.docs": (True, 700),
        "default.hashes": (True, 300),
    }
    assert {v["phase"] for v in status["shards"].values()} == {"Succeeded"}
    assert (status["rowsCopied"], status["totalRows"]) == (1000, 1000)
    assert status["message"] == "dump: 2 collections, 1000 rows copied and verified"
    listed = json.loads((out / "dump.json").read_text())["collections"]
    assert sorted((c["name"], c["rows"]) for c in listed) == [("docs", 700), ("hashes", 300)]


async def test_parallel_pods_share_many_collections_and_the_status_lists_each(api_server, milvus_server):
    """parallelism 2, three collections: the first pod plans (largest first, to the least loaded
    pod), each pod copies its share, every entry ends Succeeded, the last pod writes the run's result."""
    from tests.collections import all_rows, make_docs

    where = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    sizes = {"par_a": 900, "par_b": 500, "par_c": 300}
    for seed_value, (name, rows) in enumerate(sizes.items()):
        make_docs(where, name, rows=rows, seed=seed_value)
    endpoint = {"uri": milvus_server.uri, "tokenSecretRef": {"name": "milvus", "key": "token"}}
    source = {"milvus": endpoint | {"collections": ["par_*"]}}
    target = {"milvus": endpoint | {"rename": {"par_*": "copied_*"}}}
    seed(api_server, "many", source, target, batchSize=200, parallelism=2)
    second = await runner(api_server, "many", 1, MILVUSDM_SOURCE_TOKEN=SERVER_TOKEN)  # waits for the plan
    first = await runner(api_server, "many", 0, MILVUSDM_SOURCE_TOKEN=SERVER_TOKEN)
    outputs = await asyncio.gather(finish(first), finish(second))
    assert "many.default.par_a" in outputs[0] and "par_a" not in outputs[1]
    assert "many.default.par_b" in outputs[1] and "many.default.par_c" in outputs[1]
    status = stored(api_server, MIGRATIONS, "many")["status"]
    assert {k: (e["phase"], e["jobIndex"], e["copied"], e["completed"]) for k, e in status["shards"].items()} == {
        "default.par_a": ("Succeeded", 0, 900, True),
        "default.par_b": ("Succeeded", 1, 500, True),
        "default.par_c": ("Succeeded", 1, 300, True),
    }
    assert all(e["verified"].startswith("sample") and e["message"] for e in status["shards"].values())
    assert (status["rowsCopied"], status["totalRows"], status["progress"]) == (1700, 1700, "100%")
    assert (status["verified"], status["message"]) == (
        "sample (3 collections)",
        "many: 3 collections, 1700 rows copied and verified",
    )
    for name in sizes:
        assert all_rows(where, name.replace("par_", "copied_"), "id") == all_rows(where, name, "id")

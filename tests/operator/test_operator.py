"""The operator against a mock Kubernetes API (kmock) over real HTTP, with kopf running.

kmock stores objects and serves list/watch/patch but runs no Jobs: tests move Job status
themselves, as the Job controller would.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import urllib.request
import uuid

import kubernetes
import pytest
import yaml

import milvusdm_operator.handlers  # noqa: F401  (registers the handlers)
from tests.conftest import REPO
from tests.operator.apiserver import Emulator, versions

NS = "vectors"
MIGRATIONS = "milvusdm.io/v1alpha1/milvusmigrations"
JOBS = "batch/v1/jobs"
SCHEDULES = "milvusdm.io/v1alpha1/milvusmigrationschedules"


pytestmark = pytest.mark.kmock(cls=Emulator)


def assert_kept(kmock) -> None:
    """Everything written to the CRs is declared in the CRD, with the right types."""
    assert not getattr(kmock, "pruned", []), f"a real API server would drop: {kmock.pruned}"
    assert not getattr(kmock, "rejected", []), f"a real API server would refuse: {kmock.rejected}"


def api(kmock):
    configuration = kubernetes.client.Configuration()
    configuration.host = str(kmock.url)
    return kubernetes.client.ApiClient(configuration)


async def create(kmock, document: dict) -> dict:
    body = copy.deepcopy(document)
    body["metadata"].update(namespace=NS, uid=str(uuid.uuid4()), resourceVersion=str(next(versions)), generation=1)
    custom = kubernetes.client.CustomObjectsApi(api(kmock))
    await asyncio.to_thread(
        custom.create_namespaced_custom_object, "milvusdm.io", "v1alpha1", NS, "milvusmigrations", body
    )
    return body


async def eventually(check, timeout: float = 10.0):
    """Await until ``check()`` returns something truthy (and return it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            if result := check():
                return result
        except KeyError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


def stored(kmock, resource: str, name: str) -> dict:
    return kmock.objects[resource, NS, name].raw


async def set_job_status(kmock, name: str, **job_status) -> None:
    batch = kubernetes.client.BatchV1Api(api(kmock))
    await asyncio.to_thread(batch.patch_namespaced_job_status, name, NS, {"status": job_status})


def example(name: str) -> dict:
    return yaml.safe_load((REPO / "examples" / name).read_text())


def condition(resource: dict, kind: str) -> dict:
    return next(c for c in resource["status"]["conditions"] if c["type"] == kind)


async def test_creates_an_owned_job_with_secrets_as_references(cluster):
    migration = await create(cluster, example("faiss-to-milvus.yaml"))
    job = await eventually(lambda: stored(cluster, JOBS, "mmig-faiss-catalog"))
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "MilvusMigration",
        "faiss-catalog",
        migration["metadata"]["uid"],
        True,
    )
    assert job["metadata"]["labels"]["milvusdm.io/migration"] == "faiss-catalog"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/milvusdm:test"
    assert container["args"] == ["run", "--resource", f"{NS}/faiss-catalog"]
    assert {
        "name": "MILVUSDM_TARGET_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "milvus-credentials", "key": "password"}},
    } in container["env"]
    assert "completionMode" not in job["spec"]
    resource = await eventually(
        lambda: (
            stored(cluster, MIGRATIONS, "faiss-catalog").get("status", {}).get("jobName")
            and stored(cluster, MIGRATIONS, "faiss-catalog")
        )
    )
    assert resource["status"]["phase"] == "Pending"
    assert condition(resource, "Progressing")["status"] == "True"
    assert not resource["metadata"].get("finalizers"), "no finalizer: deletion never waits for the operator"
    account = stored(cluster, "v1/serviceaccounts", "milvusdm-runner")
    binding = stored(cluster, "rbac.authorization.k8s.io/v1/rolebindings", "milvusdm-runner")
    assert account["metadata"]["namespace"] == NS
    assert binding["roleRef"]["name"] == "milvusdm-runner"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "milvusdm-runner", "namespace": NS}]


async def test_parallel_migration_is_an_indexed_job(cluster):
    await create(cluster, example("parallel-hdf5-to-milvus.yaml"))
    job = await eventually(lambda: stored(cluster, JOBS, "mmig-deep1b-slice"))
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 4, 4)


async def test_status_follows_the_job(cluster):
    await create(cluster, example("hdf5-to-milvus.yaml"))
    await eventually(lambda: stored(cluster, JOBS, "mmig-glove-to-milvus"))
    name = "glove-to-milvus"
    await set_job_status(cluster, "mmig-glove-to-milvus", active=1, startTime="2026-11-28T10:00:00Z")
    running = await eventually(
        lambda: (
            stored(cluster, MIGRATIONS, name)["status"].get("phase") == "Running" and stored(cluster, MIGRATIONS, name)
        )
    )
    assert running["status"]["startTime"] == "2026-11-28T10:00:00Z" and running["status"]["observedGeneration"] == 1
    await set_job_status(
        cluster,
        "mmig-glove-to-milvus",
        active=0,
        succeeded=1,
        completionTime="2026-11-28T10:09:00Z",
        conditions=[{"type": "Complete", "status": "True"}],
    )
    done = await eventually(
        lambda: (
            stored(cluster, MIGRATIONS, name)["status"].get("phase") == "Succeeded"
            and stored(cluster, MIGRATIONS, name)
        )
    )
    assert condition(done, "Ready")["status"] == "True" and condition(done, "Progressing")["status"] == "False"
    assert done["status"]["completionTime"] == "2026-11-28T10:09:00Z"
    reasons = await eventually(
        lambda: (
            {e.get("reason") for e in events(cluster)} >= {"JobCreated", "Started", "Completed"}
            and {e.get("reason") for e in events(cluster)}
        )
    )
    assert "Failed" not in reasons


def events(kmock) -> list[dict]:
    return [obj.raw for key, obj in kmock.objects.items() if key[0].plural == "events" and not obj.deleted]


async def test_failed_job_fails_the_migration_with_the_runners_message(cluster):
    await create(cluster, example("hdf5-to-milvus.yaml"))
    await eventually(lambda: stored(cluster, JOBS, "mmig-glove-to-milvus"))
    custom = kubernetes.client.CustomObjectsApi(api(cluster))
    message = "Milvus at http://milvus.milvus.svc:19530 refused the credentials"
    await asyncio.to_thread(
        custom.patch_namespaced_custom_object_status,
        "milvusdm.io",
        "v1alpha1",
        NS,
        "milvusmigrations",
        "glove-to-milvus",
        {"status": {"message": message, "failureReason": "InvalidInput"}},
    )
    await set_job_status(
        cluster,
        "mmig-glove-to-milvus",
        failed=1,
        conditions=[{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}],
    )
    failed = await eventually(
        lambda: (
            stored(cluster, MIGRATIONS, "glove-to-milvus")["status"].get("phase") == "Failed"
            and stored(cluster, MIGRATIONS, "glove-to-milvus")
        )
    )
    assert (condition(failed, "Failed")["status"], condition(failed, "Failed")["reason"]) == (
        "True",
        "PodFailurePolicy",
    )
    assert condition(failed, "Failed")["message"] == message
    await eventually(lambda: any(e.get("reason") == "Failed" and e.get("type") == "Warning" for e in events(cluster)))


async def test_bad_spec_fails_without_a_job(cluster):
    bad = example("hdf5-to-milvus.yaml")  # valid for the CRD; only the operator can see the clash
    bad["metadata"]["name"] = "bad"
    bad["spec"]["job"]["env"] = [{"name": "MILVUSDM_TARGET_TOKEN", "value": "plain"}]
    await create(cluster, bad)
    resource = await eventually(
        lambda: (
            stored(cluster, MIGRATIONS, "bad").get("status", {}).get("phase") == "Failed"
            and stored(cluster, MIGRATIONS, "bad")
        )
    )
    assert (
        condition(resource, "Failed")["reason"] == "InvalidSpec"
        and resource["status"]["failureReason"] == "InvalidSpec"
    )
    assert "spec.job.env sets MILVUSDM_TARGET_TOKEN" in condition(resource, "Failed")["message"]
    await eventually(lambda: any(e.get("reason") == "InvalidSpec" for e in events(cluster)))
    assert not any(key[0].plural == "jobs" for key in cluster.objects)


async def test_the_api_server_keeps_only_what_the_crd_declares(cluster):
    """The mock API server prunes and refuses as a real one would, so a status field missing
    from the CRD fails the tests."""
    typo = example("hdf5-to-milvus.yaml")
    typo["spec"]["target"]["milvus"]["colection"] = "typo"
    await create(cluster, typo)
    assert cluster.pruned == [".spec.target.milvus.colection"]
    assert "colection" not in stored(cluster, MIGRATIONS, "glove-to-milvus")["spec"]["target"]["milvus"]
    custom = kubernetes.client.CustomObjectsApi(api(cluster))
    write = lambda status: asyncio.to_thread(  # noqa: E731
        custom.patch_namespaced_custom_object_status,
        "milvusdm.io",
        "v1alpha1",
        NS,
        "milvusmigrations",
        "glove-to-milvus",
        {"status": status, "spec": {"batchSize": 1}},
    )
    await write({"rowsCopied": 5, "undeclared": "x", "shards": {"0": {"copied": 5, "cursor": 1}}})
    status = stored(cluster, MIGRATIONS, "glove-to-milvus")["status"]
    assert (status["rowsCopied"], status["shards"]["0"]["copied"]) == (5, 5)
    assert "undeclared" not in status and "cursor" not in status["shards"]["0"]
    assert stored(cluster, MIGRATIONS, "glove-to-milvus")["spec"]["batchSize"] == 10000, "/status changes status only"
    with pytest.raises(kubernetes.client.ApiException) as refused:
        await write({"rowsCopied": "many"})
    assert refused.value.status == 422 and "rowsCopied" in cluster.rejected[0]
    assert cluster.pruned[1:] == [".status.undeclared", ".status.shards.0.cursor"]
    cluster.pruned.clear()
    cluster.rejected.clear()


async def test_suspend_and_resume(cluster):
    await create(cluster, example("hdf5-to-milvus.yaml"))
    name, job = "glove-to-milvus", "mmig-glove-to-milvus"
    await eventually(lambda: stored(cluster, JOBS, job))
    custom = kubernetes.client.CustomObjectsApi(api(cluster))
    patch = lambda value: asyncio.to_thread(  # noqa: E731  (each spec change bumps the generation)
        custom.patch_namespaced_custom_object,
        "milvusdm.io",
        "v1alpha1",
        NS,
        "milvusmigrations",
        name,
        {"spec": {"suspend": value}},
    )
    await patch(True)
    await eventually(lambda: stored(cluster, JOBS, job)["spec"]["suspend"] is True)
    suspended = await eventually(
        lambda: (
            stored(cluster, MIGRATIONS, name)["status"].get("phase") == "Suspended"
            and stored(cluster, MIGRATIONS, name)
        )
    )
    assert suspended["status"]["observedGeneration"] == 2
    await patch(False)
    await eventually(lambda: stored(cluster, JOBS, job)["spec"]["suspend"] is False)
    await eventually(lambda: stored(cluster, MIGRATIONS, name)["status"].get("phase") == "Pending")
    await eventually(lambda: {"Suspended", "Resumed"} <= {e.get("reason") for e in events(cluster)})


async def test_operator_rbac_is_exactly_what_it_uses(cluster):
    """Drive the whole lifecycle, then compare the calls made with deploy/rbac.yaml."""
    from tests.rbac import granted, used

    await create(cluster, example("hdf5-to-milvus.yaml"))
    await eventually(lambda: stored(cluster, JOBS, "mmig-glove-to-milvus"))
    await set_job_status(cluster, "mmig-glove-to-milvus", active=1)
    await eventually(lambda: stored(cluster, MIGRATIONS, "glove-to-milvus")["status"].get("phase") == "Running")
    custom = kubernetes.client.CustomObjectsApi(api(cluster))
    await asyncio.to_thread(
        custom.patch_namespaced_custom_object,
        "milvusdm.io",
        "v1alpha1",
        NS,
        "milvusmigrations",
        "glove-to-milvus",
        {"spec": {"suspend": True}},
    )
    await eventually(lambda: stored(cluster, JOBS, "mmig-glove-to-milvus")["spec"]["suspend"] is True)
    await eventually(lambda: {"Started", "Suspended"} <= {e.get("reason") for e in events(cluster)})
    calls = used(cluster, "kopf/", "milvusdm/")
    rules = granted(REPO / "deploy" / "rbac.yaml", "milvusdm-operator")
    assert calls <= rules, f"missing from the ClusterRole: {calls - rules}"
    unused = {(g, r, v) for g, r, v in rules - calls}
    explained = {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),  # kopf's resource scanning
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),  # (disabled under kmock)
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),  # checked by the API server on create
        ("milvusdm.io", "milvusmigrations/status", "get"),  # read through the main resource here
        # schedules and their runs: exercised (and checked) in test_schedules
        ("milvusdm.io", "milvusmigrations", "create"),
        ("milvusdm.io", "milvusmigrations", "delete"),
        ("milvusdm.io", "milvusmigrationschedules", "get"),
        ("milvusdm.io", "milvusmigrationschedules/status", "patch"),
        ("batch", "jobs", "get"),  # the Jobs deleting old runs' output
    }
    assert unused <= explained, f"granted but never used: {unused - explained}"


async def test_deleting_a_migration_never_hangs(cluster):
    await create(cluster, example("hdf5-to-milvus.yaml"))
    job = await eventually(lambda: stored(cluster, JOBS, "mmig-glove-to-milvus"))
    custom = kubernetes.client.CustomObjectsApi(api(cluster))
    await asyncio.to_thread(
        custom.delete_namespaced_custom_object, "milvusdm.io", "v1alpha1", NS, "milvusmigrations", "glove-to-milvus"
    )
    await eventually(lambda: cluster.objects[MIGRATIONS, NS, "glove-to-milvus"].deleted)
    # The Job goes with it through the garbage collector, which follows this reference:
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["controller"] and owner["blockOwnerDeletion"] and owner["kind"] == "MilvusMigration"
    await asyncio.sleep(0.5)
    assert len([key for key in cluster.objects if key[0].plural == "jobs"]) == 1, "no Job re-created"


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """GET /metrics over HTTP, parsed: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_follow_the_migrations(cluster):
    from milvusdm_operator import metrics

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.serve(port)
    before = scrape(port)
    count = lambda values, name: values.get((name, ()), 0)  # noqa: E731
    await create(cluster, example("hdf5-to-milvus.yaml"))
    await eventually(lambda: stored(cluster, JOBS, "mmig-glove-to-milvus"))
    await set_job_status(cluster, "mmig-glove-to-milvus", active=1, startTime="2026-11-28T10:00:00Z")
    custom = kubernetes.client.CustomObjectsApi(api(cluster))
    key = (("name", "glove-to-milvus"), ("namespace", NS))
    for rows, at in ((10_000, "2026-11-28T10:00:10Z"), (30_000, "2026-11-28T10:00:20Z")):  # as the runner reports
        await asyncio.to_thread(
            custom.patch_namespaced_custom_object_status,
            "milvusdm.io",
            "v1alpha1",
            NS,
            "milvusmigrations",
            "glove-to-milvus",
            {"status": {"rowsCopied": rows, "totalRows": 100_000, "lastBatchTime": at}},
        )
        await eventually(lambda rows=rows: scrape(port).get(("milvusdm_migration_rows_copied", key)) == rows)
    values = scrape(port)
    assert values["milvusdm_migration_rows_total", key] == 100_000
    assert values["milvusdm_migration_rows_per_second", key] == 2000.0  # 20k rows in 10 s
    assert values["milvusdm_migration_last_batch_timestamp_seconds", key] == 1795860020.0
    assert values["milvusdm_migration_phase", (*key, ("phase", "Running"))] == 1
    assert values["milvusdm_migration_phase", (*key, ("phase", "Succeeded"))] == 0
    assert count(values, "milvusdm_migrations_started_total") == count(before, "milvusdm_migrations_started_total") + 1
    await set_job_status(
        cluster,
        "mmig-glove-to-milvus",
        active=0,
        failed=1,
        conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    )
    await eventually(lambda: scrape(port).get(("milvusdm_migration_phase", (*key, ("phase", "Failed")))) == 1)
    values = scrape(port)
    assert count(values, "milvusdm_migrations_failed_total") == count(before, "milvusdm_migrations_failed_total") + 1
    assert count(values, "milvusdm_migrations_succeeded_total") == count(before, "milvusdm_migrations_succeeded_total")
    assert values["milvusdm_migration_rows_per_second", key] == 0
    await asyncio.to_thread(
        custom.delete_namespaced_custom_object, "milvusdm.io", "v1alpha1", NS, "milvusmigrations", "glove-to-milvus"
    )
    await eventually(lambda: ("milvusdm_migration_rows_copied", key) not in scrape(port))

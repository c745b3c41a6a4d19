"""MilvusMigrationSchedule against the mock cluster, with the operator running and time injected."""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
import uuid

import kubernetes
import kubernetes_validate
import pytest

from milvusdm_operator import schedules
from tests.conftest import REPO
from tests.operator.apiserver import Emulator
from tests.operator.test_operator import (
    JOBS,
    MIGRATIONS,
    NS,
    SCHEDULES,
    api,
    events,
    eventually,
    set_job_status,
    stored,
)
from tests.rbac import granted, used
from tests.unit.test_deploy import K8S_VERSION

pytestmark = pytest.mark.kmock(cls=Emulator)
UTC = datetime.UTC


class Clock:
    def __init__(self, at: str) -> None:
        self.now = datetime.datetime.fromisoformat(at).replace(tzinfo=UTC)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


@pytest.fixture
def scheduled(monkeypatch):
    """The clock in the test's hands."""
    clock = Clock("2026-11-28T02:59:00")
    monkeypatch.setattr(schedules, "clock", clock)
    monkeypatch.setattr(schedules, "TICK_SECONDS", 3600)  # ticks come from the test
    return clock


def export_schedule(**spec) -> dict:
    return {
        "apiVersion": "milvusdm.io/v1alpha1",
        "kind": "MilvusMigrationSchedule",
        "metadata": {
            "name": "nightly",
            "namespace": NS,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "creationTimestamp": "2026-11-28T00:00:00Z",
        },
        "spec": {
            "schedule": "0 3 * * *",
            "keep": 2,
            "template": {
                "labels": {"team": "search"},
                "spec": {
                    "source": {"milvus": {"uri": "http://milvus:19530", "collection": "products"}},
                    "target": {"hdf5": {"path": "s3://backups/products/"}},
                },
            },
            **spec,
        },
    }


async def add(kmock, document: dict) -> None:
    custom = kubernetes.client.CustomObjectsApi(api(kmock))
    await asyncio.to_thread(
        custom.create_namespaced_custom_object, "milvusdm.io", "v1alpha1", NS, "milvusmigrationschedules", document
    )
    await eventually(lambda: (NS, document["metadata"]["name"]) in schedules.known)


def runs(kmock) -> dict[str, dict]:
    return {
        key[2]: obj.raw for key, obj in kmock.objects.items() if key[0].plural == "milvusmigrations" and not obj.deleted
    }


async def finish(kmock, run: str, phase: str) -> None:
    """The run's Job ends (as the Job controller would say) and the operator marks the run."""
    condition = {"Succeeded": "Complete", "Failed": "Failed"}[phase]
    await eventually(lambda: stored(kmock, "batch/v1/jobs", f"mmig-{run}"))
    await set_job_status(
        kmock, f"mmig-{run}", completionTime="2026-11-28T03:10:00Z", conditions=[{"type": condition, "status": "True"}]
    )
    await eventually(lambda: stored(kmock, MIGRATIONS, run).get("status", {}).get("phase") == phase)


async def test_a_run_per_tick_kept_and_pruned(scheduled, cluster):
    await add(cluster, export_schedule())
    await schedules.tick()
    assert runs(cluster) == {}, "nothing due before 03:00"
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert status["nextScheduleTime"] == "2026-11-28T03:00:00Z" and status["conditions"][0]["reason"] == "Scheduled"

    scheduled.advance(minutes=2)  # 03:01
    await schedules.tick()
    (first,) = runs(cluster)
    run = runs(cluster)[first]
    assert first == "nightly-20261128t030000z"
    assert run["spec"]["target"]["hdf5"]["path"] == "s3://backups/products/20261128T030000Z/"
    assert run["metadata"]["labels"] == {"team": "search", "milvusdm.io/schedule": "nightly"}
    owner = run["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("MilvusMigrationSchedule", "nightly", True)
    await eventually(lambda: stored(cluster, "batch/v1/jobs", f"mmig-{first}"))  # the migration handler took it
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert (status["lastScheduleTime"], status["active"], status["nextScheduleTime"]) == (
        "2026-11-28T03:00:00Z",
        [first],
        "2026-11-29T03:00:00Z",
    )

    scheduled.advance(days=1)  # 03:01 next day, the first run still unfinished: Forbid waits
    await schedules.tick()
    assert set(runs(cluster)) == {first}
    await finish(cluster, first, "Failed")
    await schedules.tick()
    second = "nightly-20261129t030000z"
    assert set(runs(cluster)) == {first, second}
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert (status["lastRunResult"], status["lastRun"], status["active"]) == ("Failed", second, [second])

    for day in (2, 3):
        await finish(cluster, f"nightly-202611{27 + day}t030000z", "Succeeded")
        scheduled.advance(days=1)
        await schedules.tick()
    kept = {"nightly-20261129t030000z", "nightly-20261130t030000z", "nightly-20261201t030000z"}
    assert set(runs(cluster)) == {first, *kept}, "keep: 2 finished runs; the oldest stays until its output is gone"
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert status["lastRunResult"] == "Succeeded" and status["lastSuccessfulTime"] == "2026-11-28T03:10:00Z"
    output = "s3://backups/products/20261128T030000Z/"
    assert status["pruning"] == [{"run": first, "job": f"prune-{first}", "output": output, "phase": "Running"}]
    assert stored(cluster, JOBS, f"prune-{first}")["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "prune-output",
        "--resource",
        f"{NS}/{first}",
    ]
    await schedules.tick()
    assert first in runs(cluster), "the prune Job has not succeeded yet"
    await set_job_status(cluster, f"prune-{first}", conditions=[{"type": "Complete", "status": "True"}])
    await schedules.tick()
    assert set(runs(cluster)) == kept and cluster.objects[MIGRATIONS, NS, first].deleted
    assert stored(cluster, SCHEDULES, "nightly")["status"]["pruning"] == []
    schedule_calls = {
        c
        for c in used(cluster, "kopf/", "milvusdm/")
        if "schedule" in c[1] or c[1] == "jobs" or c[2] in ("create", "delete")
    }
    rules = granted(REPO / "deploy" / "rbac.yaml", "milvusdm-operator")
    assert schedule_calls <= rules, f"missing from the ClusterRole: {schedule_calls - rules}"
    assert {
        ("milvusdm.io", "milvusmigrations", "create"),
        ("milvusdm.io", "milvusmigrations", "delete"),
        ("milvusdm.io", "milvusmigrationschedules", "get"),
        ("milvusdm.io", "milvusmigrationschedules/status", "patch"),
        ("batch", "jobs", "get"),
    } <= schedule_calls


async def test_starting_deadline_suspend_and_time_zone(scheduled, cluster):
    await add(cluster, export_schedule(startingDeadlineSeconds=300, timeZone="Asia/Tokyo", schedule="0 12 * * *"))
    scheduled.advance(hours=1, minutes=30)  # 04:29 UTC = 13:29 in Tokyo: noon there was 03:00 UTC, 89 min ago
    await schedules.tick()
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert runs(cluster) == {} and status["missed"] == 1 and status["lastScheduleTime"] == "2026-11-28T03:00:00Z"
    assert status["nextScheduleTime"] == "2026-11-29T03:00:00Z"
    custom = kubernetes.client.CustomObjectsApi(api(cluster))
    await asyncio.to_thread(
        custom.patch_namespaced_custom_object,
        "milvusdm.io",
        "v1alpha1",
        NS,
        "milvusmigrationschedules",
        "nightly",
        {"spec": {"suspend": True}},
    )
    scheduled.advance(days=1)
    await schedules.tick()
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert runs(cluster) == {} and status["conditions"][0]["reason"] == "Suspended"
    assert "nextScheduleTime" not in status or status["nextScheduleTime"] is None
    await asyncio.to_thread(
        custom.patch_namespaced_custom_object,
        "milvusdm.io",
        "v1alpha1",
        NS,
        "milvusmigrationschedules",
        "nightly",
        {"spec": {"suspend": False}},
    )
    scheduled.advance(minutes=-30)  # 03:59 UTC the next day: within 300 s? no: noon was 59 min ago
    await schedules.tick()
    assert runs(cluster) == {}
    scheduled.advance(days=1, minutes=-58)  # 03:01 UTC: one minute after noon in Tokyo
    await schedules.tick()
    assert set(runs(cluster)) == {"nightly-20261130t030000z"}


def pod(kmock, job: str) -> dict:
    return stored(kmock, JOBS, job)["spec"]["template"]["spec"]


async def test_old_output_deleted_by_a_job_in_the_runs_pod_settings(scheduled, cluster, s3):
    """keep: 1 on a real S3 endpoint: the prune Job runs as the run did, deletes exactly the run's
    prefix, and only then the run goes; a failed prune Job keeps the run and says so."""
    bucket, client = s3["bucket"], s3["client"]
    secret = {"name": "backup-s3", "key": "id"}
    job_settings = {
        "serviceAccountName": "backup-writer",
        "envFrom": [{"configMapRef": {"name": "proxy"}}],
        "volumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "volumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    }
    document = export_schedule(keep=1)
    template = document["spec"]["template"]["spec"]
    template["target"]["hdf5"]["path"] = f"s3://{bucket}/products/"
    template["s3"] = {**s3["settings"], "accessKeyIdSecretRef": secret}
    template["job"] = job_settings
    await add(cluster, document)
    days = [f"nightly-202611{d}t030000z" for d in (28, 29, 30)]
    for day, run in enumerate(days):
        scheduled.advance(minutes=2 if day == 0 else 24 * 60)
        await schedules.tick()
        client.put_object(Bucket=bucket, Key=f"products/{run[-16:].upper()}/products.h5", Body=b"rows")
        await finish(cluster, run, "Succeeded")
        await schedules.tick()
        if day == 0:
            assert not any(key[0].plural == "jobs" and key[2].startswith("prune-") for key in cluster.objects)

    first, second, third = days
    job = stored(cluster, JOBS, f"prune-{first}")
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["metadata"]["ownerReferences"][0]["name"] == first, "it goes with the run's CR"
    assert "milvusdm.io/migration" not in job["metadata"]["labels"], "not mistaken for the run's own Job"
    runner, pruner = pod(cluster, f"mmig-{first}"), pod(cluster, f"prune-{first}")
    assert pruner["containers"][0]["args"] == ["prune-output", "--resource", f"{NS}/{first}"]
    assert runner["containers"][0]["args"][0] == "run"
    args = lambda spec: {**spec, "containers": [{**spec["containers"][0], "args": None}]}  # noqa: E731
    assert args(pruner) == args(runner), "same image, volumes, env (Secret references) and service account"
    assert first in runs(cluster)

    # What the Job's pod runs, against this API server and S3 (credentials as its secretKeyRef env).
    environment = {**os.environ, "MILVUSDM_KUBE_API": str(cluster.url)}
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "milvusdm", *pruner["containers"][0]["args"]],
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    prefix = f"s3://{bucket}/products/20261128T030000Z/"
    assert out.decode().strip() == f"{first}: deleted {prefix} (1 file)"
    left = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert left == ["products/20261129T030000Z/products.h5", "products/20261130T030000Z/products.h5"]
    await set_job_status(cluster, f"prune-{first}", conditions=[{"type": "Complete", "status": "True"}])
    await schedules.tick()
    assert first not in runs(cluster)

    # The second run's prune Job fails (say its credentials cannot delete): the run stays, and says why.
    await set_job_status(
        cluster,
        f"prune-{second}",
        conditions=[{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit code 2"}],
    )
    for _ in range(2):
        await schedules.tick()
    assert set(runs(cluster)) == {second, third}
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    (pruning,) = status["pruning"]
    assert (pruning["run"], pruning["phase"]) == (second, "Failed")
    pruned = next(c for c in status["conditions"] if c["type"] == "Pruned")
    assert (pruned["status"], pruned["reason"], pruned["message"]) == ("False", "PruneFailed", pruning["message"])
    assert (
        f"could not delete s3://{bucket}/products/20261129T030000Z/ (PodFailurePolicy: exit code 2)"
        in (pruning["message"])
    )
    warnings = [e for e in events(cluster) if e.get("reason") == "PruneFailed"]
    assert len(warnings) == 1, "one event per failure, not per tick"
    assert (warnings[0]["type"], warnings[0]["involvedObject"]["kind"]) == ("Warning", "MilvusMigrationSchedule")

    # Deleting the failed Job retries.
    batch = kubernetes.client.BatchV1Api(api(cluster))
    await asyncio.to_thread(batch.delete_namespaced_job, f"prune-{second}", NS)
    await schedules.tick()
    assert not cluster.objects[JOBS, NS, f"prune-{second}"].deleted
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert status["pruning"][0]["phase"] == "Running"
    assert next(c for c in status["conditions"] if c["type"] == "Pruned")["status"] == "True"


async def test_runs_into_milvus_are_deleted_at_once(scheduled, cluster):
    document = export_schedule(keep=1)
    document["spec"]["template"]["spec"]["target"] = {"milvus": {"uri": "http://milvus:19530", "collection": "copy"}}
    await add(cluster, document)
    first, second = "nightly-20261128t030000z", "nightly-20261129t030000z"
    scheduled.advance(minutes=2)
    await schedules.tick()
    await finish(cluster, first, "Succeeded")
    scheduled.advance(days=1)
    await schedules.tick()
    await finish(cluster, second, "Succeeded")
    await schedules.tick()
    assert set(runs(cluster)) == {second}, "a collection is not a file: nothing to delete first"
    assert not any(key[0].plural == "jobs" and key[2].startswith("prune-") for key in cluster.objects)

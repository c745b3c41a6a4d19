"""MilvusMigrationSchedule against the mock cluster, with the operator running and time injected."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import kubernetes
import pytest

from milvusdm_operator import schedules
from tests.conftest import REPO
from tests.operator.apiserver import Emulator
from tests.operator.test_operator import (
    MIGRATIONS,
    NS,
    SCHEDULES,
    api,
    eventually,
    set_job_status,
    stored,
)
from tests.rbac import granted, used

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
    assert set(runs(cluster)) == {"nightly-20261129t030000z", "nightly-20261130t030000z", "nightly-20261201t030000z"}
    status = stored(cluster, SCHEDULES, "nightly")["status"]
    assert status["lastRunResult"] == "Succeeded" and status["lastSuccessfulTime"] == "2026-11-28T03:10:00Z"
    assert cluster.objects[MIGRATIONS, NS, first].deleted, "keep: 2 finished runs; the oldest went"
    schedule_calls = {
        c for c in used(cluster, "kopf/", "milvusdm/") if "schedule" in c[1] or c[2] in ("create", "delete")
    }
    rules = granted(REPO / "deploy" / "rbac.yaml", "milvusdm-operator")
    assert schedule_calls <= rules, f"missing from the ClusterRole: {schedule_calls - rules}"
    assert {
        ("milvusdm.io", "milvusmigrations", "create"),
        ("milvusdm.io", "milvusmigrations", "delete"),
        ("milvusdm.io", "milvusmigrationschedules", "get"),
        ("milvusdm.io", "milvusmigrationschedules/status", "patch"),
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

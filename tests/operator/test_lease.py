"""Two pods of one shard: the lease in its status entry lets one copy at a time (kmock; HDF5 files,
no Milvus server)."""

from __future__ import annotations

import asyncio
import datetime
import signal
import time

import h5py
import kubernetes
import numpy as np
import pytest

from milvusdm.checkpoint import Shard
from milvusdm.errors import LeaseHeld, LeaseLost
from milvusdm.jobrunner import ResourceStatus
from milvusdm.kube import MigrationResource
from tests.conftest import make_h5
from tests.operator.test_operator import MIGRATIONS, NS, Emulator, api, eventually, stored
from tests.operator.test_runner_status import runner, seed

pytestmark = pytest.mark.kmock(cls=Emulator)


def entry(kmock, name: str) -> dict:
    return stored(kmock, MIGRATIONS, name).get("status", {}).get("shards", {}).get("0", {})


def expiry(lease: dict) -> datetime.datetime:
    renewed = datetime.datetime.fromisoformat(lease["renewTime"])
    return renewed + datetime.timedelta(seconds=lease["leaseSeconds"])


def copy_migration(kmock, tmp_path, rng, name: str, rows: int) -> tuple[np.ndarray, str]:
    ids = rng.choice(2**40, rows, replace=False)
    source = make_h5(tmp_path / "source.h5", rng.random((rows, 8), dtype=np.float32), ids)
    out = tmp_path / "copy.h5"
    seed(kmock, name, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": str(out)}}, batchSize=100, verify="ids")
    return ids, str(out)


def take_over(kmock, name: str, holder: str) -> None:
    """Another pod writes the entry as its own (unconditionally: it found the lease expired)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {"status": {"shards": {"0": {"holder": holder, "renewTime": now, "leaseSeconds": 60}}}}
    kubernetes.client.CustomObjectsApi(api(kmock)).patch_namespaced_custom_object_status(
        "milvusdm.io", "v1alpha1", NS, "milvusmigrations", name, body
    )


async def test_a_second_pod_is_refused_while_the_lease_is_fresh_and_takes_over_once_it_expired(
    api_server, tmp_path, rng
):
    rows = 50_000
    ids, out = copy_migration(api_server, tmp_path, rng, "twice", rows)
    lease = {"MILVUSDM_LEASE_SECONDS": "8", "MILVUSDM_STATUS_INTERVAL": "0.1"}
    first = await runner(api_server, "twice", POD_NAME="pod-a", **lease)
    await eventually(lambda: entry(api_server, "twice").get("position", 0) > 0, timeout=60)
    first.send_signal(signal.SIGSTOP)  # a frozen pod, or one cut off from the API: it renews no more
    held = entry(api_server, "twice")
    assert held["holder"] == "pod-a" and held["leaseSeconds"] == 8

    second = await runner(api_server, "twice", POD_NAME="pod-b", **lease)
    _, err = await asyncio.wait_for(second.communicate(), timeout=60)
    assert second.returncode == 5, err.decode()  # retried by the Job (not a podFailurePolicy FailJob code)
    until = expiry(held).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        err.decode()
        .strip()
        .splitlines()[-1]
        .startswith(f"milvusdm: error: pod pod-a is running shard 0 of {NS}/twice: its lease expires at {until} (in ")
    )
    assert entry(api_server, "twice") == held  # the refused pod wrote nothing into it

    first.kill()
    await first.communicate()
    await asyncio.sleep(max(0.0, (expiry(held) - datetime.datetime.now(datetime.UTC)).total_seconds()))
    retried = await runner(api_server, "twice", POD_NAME="pod-b", **lease)
    _, err = await asyncio.wait_for(retried.communicate(), timeout=120)
    assert retried.returncode == 0, err.decode()
    done = entry(api_server, "twice")
    assert (done["completed"], done["holder"], done["copied"]) == (True, "", rows)  # released at the end
    with h5py.File(out) as copied:
        np.testing.assert_array_equal(copied["ids"][:], ids)


async def test_a_runner_whose_lease_is_taken_over_stops_before_committing_more(api_server, tmp_path, rng):
    copy_migration(api_server, tmp_path, rng, "taken", 100_000)
    process = await runner(api_server, "taken", POD_NAME="pod-a", MILVUSDM_STATUS_INTERVAL="0.1")
    await eventually(lambda: entry(api_server, "taken").get("position", 0) > 0, timeout=60)
    await asyncio.to_thread(take_over, api_server, "taken", "pod-b")
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 5, err.decode()
    assert err.decode().strip().splitlines()[-1] == (
        f"milvusdm: error: the lease on shard 0 of {NS}/taken was taken over: pod pod-b holds it now; "
        "fix: none needed: the pod holding it continues from the checkpoint"
    )
    after = entry(api_server, "taken")
    assert after["holder"] == "pod-b" and not after["completed"]  # not a word written after the takeover
    assert "failureReason" not in stored(api_server, MIGRATIONS, "taken")["status"]


@pytest.fixture
def interrupts():
    """SIGINTs sent to this process (the heartbeat's stop), recorded instead of raised."""
    received: list[float] = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(time.monotonic()))
    yield received
    signal.signal(signal.SIGINT, previous)


async def test_the_heartbeat_keeps_the_lease_through_a_long_phase_and_stops_the_run_once_it_is_taken(
    api_server, tmp_path, rng, monkeypatch, interrupts
):
    copy_migration(api_server, tmp_path, rng, "long", 10)
    monkeypatch.setenv("MILVUSDM_KUBE_API", str(api_server.url))
    monkeypatch.setenv("MILVUSDM_LEASE_SECONDS", "3")
    monkeypatch.setenv("POD_NAME", "pod-a")
    resource = MigrationResource(f"{NS}/long")
    status = ResourceStatus(resource, Shard(), interval=60)
    assert await asyncio.to_thread(status.load) is None  # the lease taken; nothing to resume
    taken = entry(api_server, "long")
    await asyncio.sleep(6)  # a long phase: no batch commits, nothing else writes the status
    renewed = entry(api_server, "long")
    assert renewed["holder"] == "pod-a" and expiry(renewed) > expiry(taken) + datetime.timedelta(seconds=3)
    assert not interrupts and status.lease.lost is None

    monkeypatch.setenv("POD_NAME", "pod-b")
    with pytest.raises(LeaseHeld, match="pod pod-a is running shard 0"):
        await asyncio.to_thread(ResourceStatus(resource, Shard()).load)

    await asyncio.to_thread(take_over, api_server, "long", "pod-c")
    began = time.monotonic()
    await eventually(lambda: interrupts, timeout=5)  # the main thread is interrupted, mid-call or not
    assert interrupts[0] - began < 2  # within the next renewal (every second with a 3 s lease)
    with pytest.raises(LeaseLost, match="taken over: pod pod-c holds it now"):
        status.lease.check()
    status.failed(KeyboardInterrupt())
    assert entry(api_server, "long")["holder"] == "pod-c"


async def test_a_lease_taken_in_the_finish_phase_stops_the_runner(api_server, tmp_path, rng):
    """No batch commits while Milvus Lite flushes, indexes and loads: the heartbeat notices the
    takeover and interrupts the call the runner waits on."""
    rows = 30_000
    source = make_h5(tmp_path / "source.h5", rng.random((rows, 32), dtype=np.float32))
    target = {"milvus": {"uri": str(tmp_path / "lite.db"), "collection": "finishing"}}
    seed(api_server, "finishing", {"hdf5": {"path": str(source)}}, target, batchSize=5000, verify="ids")
    process = await runner(api_server, "finishing", POD_NAME="pod-a", MILVUSDM_LEASE_SECONDS="3")
    finishing = lambda: stored(api_server, MIGRATIONS, "finishing")["status"].get("message") == "copied; finish phase"  # noqa: E731
    await eventually(lambda: finishing() or process.returncode is not None, timeout=120)
    assert finishing(), (await process.communicate())[1].decode()
    await asyncio.to_thread(take_over, api_server, "finishing", "pod-b")
    _, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 5, err.decode()
    assert (
        err.decode()
        .strip()
        .splitlines()[-1]
        .startswith(f"milvusdm: error: the lease on shard 0 of {NS}/finishing was taken over: pod pod-b holds it now")
    )
    status = stored(api_server, MIGRATIONS, "finishing")["status"]
    assert status["shards"]["0"]["holder"] == "pod-b" and not status["shards"]["0"]["completed"]
    assert "verified" not in status  # stopped before the verify phase's end

"""The operator running against the mock API server (kmock), shared by the operator tests."""

from __future__ import annotations

import asyncio
import contextlib

import kmock as kmocklib
import kopf
import pytest

import milvusdm_operator.handlers  # noqa: F401  (registers the handlers)
from tests.operator.test_operator import MIGRATIONS, NS, SCHEDULES, assert_kept


@pytest.fixture
async def cluster(kmock, monkeypatch):
    """kmock serving MilvusMigrations and the built-in resources; kopf watching one namespace."""
    kmock.resources[MIGRATIONS] = kmocklib.ResourceInfo(
        kind="MilvusMigration",
        singular="milvusmigration",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    )
    kmock.resources[SCHEDULES] = kmocklib.ResourceInfo(
        kind="MilvusMigrationSchedule",
        singular="milvusmigrationschedule",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    )
    kmock.resources.load_bundled()
    monkeypatch.setenv("MILVUSDM_KUBE_API", str(kmock.url))
    monkeypatch.setenv("MILVUSDM_RUNNER_IMAGE", "registry.example/milvusdm:test")
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # kmock cannot list namespaces; the namespace is given exactly
    operator = asyncio.create_task(kopf.operator(standalone=True, namespaces=[NS], settings=settings))
    yield kmock
    operator.cancel()  # kmock's watch streams never end, so a graceful stop would wait on them
    with contextlib.suppress(asyncio.CancelledError):
        await operator
    assert_kept(kmock)

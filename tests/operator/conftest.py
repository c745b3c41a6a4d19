"""The operator running against the mock API server (kmock), shared by the operator tests."""

from __future__ import annotations

import asyncio
import contextlib

import kmock as kmocklib
import kopf
import pytest

import milvusdm_operator.handlers  # noqa: F401  (registers the handlers)
from tests.operator.test_operator import MIGRATIONS, NS, SCHEDULES, assert_kept

SPAWNED: list[asyncio.subprocess.Process] = []  # runner processes (``test_runner_status.runner``)


def custom_resource(kind: str) -> kmocklib.ResourceInfo:
    """One of this project's kinds as kmock serves it: namespaced, with a status subresource."""
    return kmocklib.ResourceInfo(
        kind=kind,
        singular=kind.lower(),
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
    )


@pytest.fixture
async def cluster(kmock, monkeypatch):
    """kmock serving MilvusMigrations and the built-in resources; kopf watching one namespace."""
    kmock.resources[MIGRATIONS] = custom_resource("MilvusMigration")
    kmock.resources[SCHEDULES] = custom_resource("MilvusMigrationSchedule")
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


@pytest.fixture
def api_server(kmock):
    kmock.resources[MIGRATIONS] = custom_resource("MilvusMigration")
    yield kmock
    assert_kept(kmock)


@pytest.fixture(autouse=True)
async def _reap_runners():
    """No runner outlives its test, nor a pipe of one unread: asyncio leaves a process' transport
    open until its pipes reach their end, and one collected after the event loop closed raises in
    its finalizer (on Python 3.11, a finalizer running inside ``ast.parse`` as pytest formats a
    failure makes pytest itself crash: "AST constructor recursion depth mismatch")."""
    yield
    while SPAWNED:
        process = SPAWNED.pop()
        if process.returncode is None:
            process.kill()
        await process.communicate()  # reads both pipes to their end, which closes the transport

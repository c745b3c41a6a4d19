"""The runner inside a Job: read its MilvusMigration, keep checkpoints and progress in its status.

Each shard writes only ``status.shards.<index>`` (a map key, so a merge-patch never clobbers a
sibling) plus the totals it computes from the freshest object; patches are throttled.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from dataclasses import asdict
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from milvusdm import __version__
from milvusdm.checkpoint import Checkpoint, Shard
from milvusdm.crd import GROUP, PLURAL, VERSION
from milvusdm.engine import Summary
from milvusdm.errors import InputError, MigrationError, TransientError
from milvusdm.spec import MilvusMigration, ShardStatus, parse

log = logging.getLogger(__name__)


def api_client() -> kubernetes.client.ApiClient:
    """In-cluster credentials, else kubeconfig; ``MILVUSDM_KUBE_API`` points at another server (tests)."""
    if url := os.environ.get("MILVUSDM_KUBE_API"):
        configuration = kubernetes.client.Configuration()
        configuration.host = url
        configuration.verify_ssl = False
        client = kubernetes.client.ApiClient(configuration)
    else:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        client = kubernetes.client.ApiClient()
    client.user_agent = f"milvusdm/{__version__}"  # audit logs (and tests) can tell our calls apart
    return client


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MigrationResource:
    """One MilvusMigration object in the API."""

    def __init__(self, reference: str, client: kubernetes.client.ApiClient | None = None) -> None:
        self.namespace, _, self.name = reference.partition("/")
        if not self.namespace or not self.name:
            raise InputError(f"--resource {reference!r} is not NAMESPACE/NAME", "pass --resource namespace/name")
        self.api = kubernetes.client.CustomObjectsApi(client or api_client())

    def get(self) -> dict[str, Any]:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except ApiException as error:
            if error.status == 404:
                raise InputError(f"MilvusMigration {self.namespace}/{self.name} does not exist", "") from None
            raise TransientError(f"cannot read MilvusMigration {self.namespace}/{self.name}: {error.reason}", "") from None

    def shards(self) -> dict[str, Any]:
        """The per-shard entries of the status, freshly read."""
        return (self.get().get("status") or {}).get("shards") or {}

    def migration(self) -> MilvusMigration:
        return parse(self.get(), origin=f"MilvusMigration {self.namespace}/{self.name}")

    def patch_status(self, status: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"status": status}
        )


class ResourceStatus:
    """Checkpoint store and observer for one shard, backed by the resource's status."""

    def __init__(self, resource: MigrationResource, shard: Shard, interval: float = 1.0) -> None:
        self.resource, self.key, self.interval = resource, str(shard.index), interval
        self.mine = ShardStatus()
        self.last_patch = 0.0
        self.describe: dict[str, str] = {}  # source and target, for the printer columns

    # -- CheckpointStore ------------------------------------------------------------------

    def load(self) -> Checkpoint | None:
        saved = self.resource.shards().get(self.key)
        if not saved or not saved.get("fingerprint") or saved.get("completed"):
            return None
        self.mine = ShardStatus.model_validate(saved)
        return Checkpoint(self.mine.fingerprint, self.mine.position, self.mine.rows, self.mine.created, self.mine.baseline)

    def save(self, checkpoint: Checkpoint) -> None:
        self.mine = self.mine.model_copy(update=asdict(checkpoint))
        if time.monotonic() - self.last_patch >= self.interval:
            self.flush()

    def clear(self) -> None:
        self.mine = self.mine.model_copy(update={"completed": True})
        self.flush()

    # -- Observer -------------------------------------------------------------------------

    def started(self, summary: Summary, done: int) -> None:
        self.mine = self.mine.model_copy(update={"total": summary.total, "copied": done})
        self.describe = {"source": summary.source, "target": summary.target}
        self.flush()

    def committed(self, done: int) -> None:
        self.mine = self.mine.model_copy(update={"copied": done})

    def finished(self, summary: Summary) -> None:
        self.flush({"verified": summary.verified, "message": summary.line()})

    def failed(self, error: MigrationError) -> None:
        self.flush({"message": str(error), "failureReason": error.reason})

    # -- writing --------------------------------------------------------------------------

    def flush(self, extra: dict[str, Any] | None = None) -> None:
        """Patch this shard's entry and the totals over all shards reported so far."""
        try:
            shards = {**self.resource.shards(), self.key: self.mine.model_dump(by_alias=True)}
            copied = sum(s.get("copied", 0) for s in shards.values())
            total = sum(s.get("total", 0) for s in shards.values())
            status = {
                "shards": {self.key: shards[self.key]},
                "rowsCopied": copied,
                "totalRows": total,
                "progress": f"{100 * copied // total if total else 100}%",
                "lastBatchTime": now(),
                **self.describe,
                **(extra or {}),
            }
            self.resource.patch_status(status)
            self.last_patch = time.monotonic()
        except (ApiException, MigrationError, OSError) as error:  # progress reports must not stop the copy
            log.warning("could not update the MilvusMigration status: %s", error)


def wait_for_first_shard(resource: MigrationResource, timeout: float = 600, poll: float = 2.0) -> None:
    """Shards after the first write into the target that shard 0 prepares (per mode)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if resource.shards().get("0", {}).get("fingerprint"):
            return
        time.sleep(poll)
    raise TransientError("shard 0 has not prepared the target yet", "check the pod of shard 0; this pod will be retried")

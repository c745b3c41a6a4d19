"""The Kubernetes API client milvusdm uses, and one MilvusMigration object in it.

Small on purpose: the operator imports it alone, without the engine, pymilvus or numpy.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from milvusdm import __version__, env
from milvusdm.crd import GROUP, PLURAL, VERSION
from milvusdm.errors import InputError, TransientError
from milvusdm.spec import MigrationStatus, MilvusMigration, parse


def api_client() -> kubernetes.client.ApiClient:
    """In-cluster credentials, else kubeconfig; ``MILVUSDM_KUBE_API`` points at another server (tests)."""
    if url := env.get(env.KUBE_API):
        configuration = kubernetes.client.Configuration()
        configuration.host = url
        configuration.verify_ssl = False
        client = kubernetes.client.ApiClient(configuration)
    else:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            try:
                kubernetes.config.load_kube_config()
            except (kubernetes.config.ConfigException, OSError) as error:
                raise InputError(
                    f"no Kubernetes credentials: not in a pod, and no usable kubeconfig ({error})",
                    "run --resource inside the operator's Job, or set KUBECONFIG",
                ) from None
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
            found: dict[str, Any] = self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
            return found
        except ApiException as error:
            if error.status == 404:
                raise InputError(f"MilvusMigration {self.namespace}/{self.name} does not exist", "") from None
            raise TransientError(
                f"cannot read MilvusMigration {self.namespace}/{self.name}: {error.reason}", ""
            ) from None

    def status(self) -> MigrationStatus:
        """The status, freshly read."""
        return MigrationStatus.model_validate(self.get().get("status") or {})

    def versioned_status(self) -> tuple[MigrationStatus, str | None]:
        """The status, freshly read, and the object's resourceVersion (for a conditional patch)."""
        found = self.get()
        status = MigrationStatus.model_validate(found.get("status") or {})
        return status, found.get("metadata", {}).get("resourceVersion")

    def seed(self) -> str:
        """The digests' keys, the same for every shard and pod: from the object's uid (random, given
        by the API server)."""
        uid = self.get().get("metadata", {}).get("uid") or f"{self.namespace}/{self.name}"
        return hashlib.sha256(uid.encode()).hexdigest()[:32]

    def migration(self) -> MilvusMigration:
        return parse(self.get(), origin=f"MilvusMigration {self.namespace}/{self.name}")

    def patch_status(self, status: MigrationStatus, resource_version: str | None = None) -> None:
        """Merge-patch the fields set on ``status`` (and only those). With ``resource_version``
        (of the object as read), the API server refuses the patch with 409 Conflict if anyone
        wrote the object since: optimistic concurrency."""
        body = status.patch()
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        self.api.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.name, body)

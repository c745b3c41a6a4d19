"""The batch/v1 Job that runs a migration: a pure function of the custom resource."""

from __future__ import annotations

from typing import Any

from milvusdm.errors import InputError, VerificationError
from milvusdm.spec import TLS_MOUNT, MilvusEndpoint, MilvusMigration

LABEL = "milvusdm.io/migration"
CONTAINER = "runner"
RUNNER_SERVICE_ACCOUNT = "milvusdm-runner"
# Retrying cannot fix bad input or a target that does not match: fail the Job at once.
PERMANENT_EXIT_CODES = [InputError.exit_code, VerificationError.exit_code]


def job_name(migration_name: str) -> str:
    return f"mmig-{migration_name}"[:63].rstrip("-.")


def labels(migration_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "milvusdm",
        "app.kubernetes.io/component": "runner",
        "app.kubernetes.io/managed-by": "milvusdm-operator",
        LABEL: migration_name,
    }


def runner_identity(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runner's ServiceAccount, and its RoleBinding to the shipped ``milvusdm-runner``
    ClusterRole (get its MilvusMigration, patch its status), in one namespace."""
    meta = {"name": RUNNER_SERVICE_ACCOUNT, "namespace": namespace, "labels": {"app.kubernetes.io/name": "milvusdm"}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": RUNNER_SERVICE_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": RUNNER_SERVICE_ACCOUNT, "namespace": namespace}],
    }
    return account, binding


def secret_env(migration: MilvusMigration) -> list[dict[str, Any]]:
    """Credentials only as secretKeyRef environment variables, named as the runner reads them."""
    refs = []
    for role in ("source", "target"):
        _, endpoint = getattr(migration.spec, role).one_of()
        if isinstance(endpoint, MilvusEndpoint):
            refs += endpoint.secret_variables(role)
    if (legacy := migration.spec.source.milvus1x) is not None and legacy.meta is not None and legacy.meta.mysql:
        refs += legacy.meta.mysql.secret_variables()
    if (s3 := migration.spec.s3) is not None:
        refs += s3.secret_variables()
    return [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        for ref, variable in refs
        if ref is not None
    ]


def tls_volumes(migration: MilvusMigration) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each ``tls.secretName`` as a read-only Secret volume where the runner looks for it."""
    volumes, mounts = [], []
    for role in ("source", "target"):
        _, endpoint = getattr(migration.spec, role).one_of()
        if isinstance(endpoint, MilvusEndpoint) and endpoint.tls is not None and endpoint.tls.secret_name:
            name = f"milvusdm-tls-{role}"
            volumes.append({"name": name, "secret": {"secretName": endpoint.tls.secret_name}})
            mounts.append({"name": name, "mountPath": f"{TLS_MOUNT}/{role}", "readOnly": True})
    return volumes, mounts


def build_job(migration: MilvusMigration, namespace: str, default_image: str) -> dict[str, Any]:
    spec, name = migration.spec, migration.metadata.name
    settings = spec.job
    shards = spec.parallelism
    env = secret_env(migration)
    tls, tls_mounts = tls_volumes(migration)
    if clash := {e["name"] for e in env} & {e.get("name") for e in settings.env}:
        raise InputError(
            f"spec.job.env sets {', '.join(sorted(clash))}, which the operator sets from the spec",
            "remove them from spec.job.env",
        )
    container = {
        "name": CONTAINER,
        "image": settings.image or default_image,
        "args": ["run", "--resource", f"{namespace}/{name}"],
        "env": [*settings.env, *env],
        "resources": settings.resources.model_dump(),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *tls_mounts, *settings.volume_mounts],
    }
    if settings.env_from:
        container["envFrom"] = settings.env_from
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.service_account_name or RUNNER_SERVICE_ACCOUNT,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, *tls, *settings.volumes],
    }
    optional = {
        "nodeSelector": settings.node_selector,
        "tolerations": settings.tolerations,
        "affinity": settings.affinity,
        "imagePullSecrets": settings.image_pull_secrets,
        "priorityClassName": settings.priority_class_name,
    }
    pod |= {key: value for key, value in optional.items() if value}
    job_spec: dict[str, Any] = {
        "suspend": spec.suspend,
        "backoffLimit": settings.backoff_limit,
        "completions": shards,
        "parallelism": shards,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": PERMANENT_EXIT_CODES},
                }
            ]
        },
        "template": {
            "metadata": {"labels": {**settings.pod_labels, **labels(name)}},
            "spec": pod,
        },
    }
    if settings.pod_annotations:
        job_spec["template"]["metadata"]["annotations"] = settings.pod_annotations
    if shards > 1:
        job_spec["completionMode"] = "Indexed"  # each pod copies shard JOB_COMPLETION_INDEX
    if settings.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if settings.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(name), "namespace": namespace, "labels": labels(name)},
        "spec": job_spec,
    }

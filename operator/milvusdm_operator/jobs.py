"""The batch/v1 Jobs of a migration, pure functions of the custom resource: the one that runs
it, and (for a scheduled run beyond ``keep``) the one that deletes its output in the same pod
settings."""

from __future__ import annotations

import hashlib
from typing import Any

from milvusdm import env
from milvusdm.errors import InputError, VerificationError
from milvusdm.spec import TLS_MOUNT, MilvusEndpoint, MilvusMigration

DEFAULT_IMAGE = "ghcr.io/milvusdm/milvusdm:0.1.0"
LABEL = "milvusdm.io/migration"  # on the Jobs whose state the operator maps onto their migration
PRUNE_LABEL = "milvusdm.io/prune"  # on the Jobs deleting a run's output
CONTAINER = "runner"
RUNNER_SERVICE_ACCOUNT = "milvusdm-runner"
# The runner's name for itself in its shard's lease (the downward API).
POD_NAME_ENV = {"name": env.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
# Retrying cannot fix bad input or a target that does not match: fail the Job at once. A shard
# another pod holds (LeaseHeld, 5) is retried, the Job's backoff (10 s, 20 s, 40 s…) outlasting its lease.
PERMANENT_EXIT_CODES = [InputError.exit_code, VerificationError.exit_code]


def runner_image() -> str:
    return env.get(env.RUNNER_IMAGE) or DEFAULT_IMAGE


def job_name(migration_name: str) -> str:
    return _named("mmig", migration_name)


def prune_job_name(migration_name: str) -> str:
    return _named("prune", migration_name)


def _named(prefix: str, migration_name: str) -> str:
    """One Job name per migration, also for long names (a Job's name is a label value, at most 63
    characters): a digest of the whole name, and the name's end, where a scheduled run's time is."""
    name = f"{prefix}-{migration_name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(migration_name.encode()).hexdigest()[:8]
    return f"{prefix}-{digest}-{migration_name[len(name) - 63 + 10 :].lstrip('-.')}"


def labels(migration_name: str, component: str = "runner") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "milvusdm",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "milvusdm-operator",
        LABEL if component == "runner" else PRUNE_LABEL: migration_name,
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
    """The Job running the migration: a pod per shard (an Indexed Job when parallel)."""
    spec, name = migration.spec, migration.metadata.name
    job = _job(migration, namespace, default_image, job_name(name), labels(name), "run")
    shards = spec.parallelism
    job["spec"] |= {"suspend": spec.suspend, "completions": shards, "parallelism": shards}
    if shards > 1:
        job["spec"]["completionMode"] = "Indexed"  # each pod copies shard JOB_COMPLETION_INDEX
    if spec.job.ttl_seconds_after_finished is not None:
        job["spec"]["ttlSecondsAfterFinished"] = spec.job.ttl_seconds_after_finished
    return job


def prune_job(migration: MilvusMigration, namespace: str, default_image: str) -> dict[str, Any]:
    """The Job deleting a scheduled run's output (``milvusdm prune-output``) where the run could
    reach it: the run's image, volumes, credentials and service account. No TTL: the operator
    must see it succeed, and it goes with the run's CR."""
    name = migration.metadata.name
    return _job(migration, namespace, default_image, prune_job_name(name), labels(name, "prune"), "prune-output")


def _job(
    migration: MilvusMigration, namespace: str, default_image: str, name: str, tags: dict[str, str], command: str
) -> dict[str, Any]:
    """A Job of one pod running ``milvusdm COMMAND --resource`` in the migration's pod settings."""
    settings = migration.spec.job
    secrets = secret_env(migration)
    tls, tls_mounts = tls_volumes(migration)
    if clash := {e["name"] for e in [*secrets, POD_NAME_ENV]} & {e.get("name") for e in settings.env}:
        raise InputError(
            f"spec.job.env sets {', '.join(sorted(clash))}, which the operator sets from the spec",
            "remove them from spec.job.env",
        )
    container = {
        "name": CONTAINER,
        "image": settings.image or default_image,
        "args": [command, "--resource", f"{namespace}/{migration.metadata.name}"],
        "env": [*settings.env, *secrets, POD_NAME_ENV],
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
        "backoffLimit": settings.backoff_limit,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": PERMANENT_EXIT_CODES},
                }
            ]
        },
        "template": {
            "metadata": {"labels": {**settings.pod_labels, **tags}},
            "spec": pod,
        },
    }
    if settings.pod_annotations:
        job_spec["template"]["metadata"]["annotations"] = settings.pod_annotations
    if settings.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": tags},
        "spec": job_spec,
    }

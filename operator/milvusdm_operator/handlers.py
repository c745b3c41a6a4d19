"""kopf handlers: a MilvusMigration becomes a Job; the Job's state becomes the CR's status.

No finalizer: the Job is owned by the CR (a controller ownerReference), so Kubernetes'
garbage collector removes it and its pods when the CR is deleted — nothing outside the
cluster needs cleaning, and objects never hang in deletion while the operator is down.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import kubernetes
from kubernetes.client.rest import ApiException

from milvusdm import env, spec
from milvusdm.crd import GROUP, PLURAL, VERSION
from milvusdm.errors import InputError
from milvusdm.kube import api_client, now
from milvusdm_operator import jobs, metrics, schedules, status  # noqa: F401  (schedules: registers its handlers)

MILESTONES = {  # phase reached -> (event type, reason)
    "Running": ("Normal", "Started"),
    "Succeeded": ("Normal", "Completed"),
    "Failed": ("Warning", "Failed"),
    "Suspended": ("Normal", "Suspended"),
}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="milvusdm.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="milvusdm.io")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    if url := env.get(env.KUBE_API):
        return kopf.ConnectionInfo(server=url, insecure=True)
    return kopf.login_via_client(**kwargs)


def _batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(api_client())


def _custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client())


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@metrics.counted("launch")
def launch(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """Validate with the shared spec model, then create the Job (once: a 409 means it exists)."""
    assert namespace is not None, "MilvusMigrations are namespaced"
    try:
        migration = spec.parse(dict(body), origin=f"MilvusMigration {namespace}/{name}")
        job = jobs.build_job(migration, namespace, jobs.runner_image())
    except InputError as error:
        logger.error("invalid spec: %s", error)
        patch.update(status.invalid_spec_patch(dict(body), str(error), now()).patch())
        metrics.transition("Failed")
        kopf.warn(body, reason="InvalidSpec", message=str(error))
        return
    kopf.append_owner_reference(job, owner=body)
    if migration.spec.job.service_account_name is None:
        _ensure_runner_identity(namespace)
    try:
        _batch().create_namespaced_job(namespace, job)
        logger.info("created Job %s", job["metadata"]["name"])
        kopf.info(body, reason="JobCreated", message=f"created Job {job['metadata']['name']}")
    except ApiException as error:
        if error.status != 409:  # 409: already there (a retried or resumed handler)
            raise kopf.TemporaryError(f"cannot create Job: {error.reason}", delay=10) from error
    # Phase and conditions have one writer, job_changed, starting with the Job's ADDED event.


def _ensure_runner_identity(namespace: str) -> None:
    account, binding = jobs.runner_identity(namespace)
    client = api_client()
    for create, body in (
        (kubernetes.client.CoreV1Api(client).create_namespaced_service_account, account),
        (kubernetes.client.RbacAuthorizationV1Api(client).create_namespaced_role_binding, binding),
    ):
        try:
            create(namespace, body)
        except ApiException as error:
            if error.status != 409:  # 409: set up by an earlier migration in this namespace
                raise kopf.TemporaryError(
                    f"cannot create the runner's {body['kind']}: {error.reason}", delay=10
                ) from error


@kopf.on.field(GROUP, VERSION, PLURAL, field="spec.suspend")
@metrics.counted("suspend")
def suspend(
    body: kopf.Body, name: str, namespace: str | None, new: Any, old: Any, logger: kopf.Logger, **_: Any
) -> None:
    """Suspending the Job stops its pods; unsuspending starts them again, and the runner
    resumes from the checkpoint in the status."""
    assert namespace is not None, "MilvusMigrations are namespaced"
    if old is None and not new:
        return  # creation without suspend: nothing to change
    try:
        _batch().patch_namespaced_job(jobs.job_name(name), namespace, {"spec": {"suspend": bool(new)}})
    except ApiException as error:
        if error.status == 404:
            return  # the create handler builds the Job with the current value
        raise kopf.TemporaryError(f"cannot patch Job: {error.reason}", delay=10) from error
    logger.info("%s the Job", "suspended" if new else "resumed")
    kopf.info(body, reason="Suspended" if new else "Resumed", message=f"Job {jobs.job_name(name)}")


@kopf.on.event("batch", "v1", "jobs", labels={jobs.LABEL: kopf.PRESENT})
@metrics.counted("job_changed")
def job_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
    """Map the Job's state into its MilvusMigration's phase and conditions."""
    assert namespace is not None, "Jobs are namespaced"
    if event.get("type") == "DELETED":
        return
    owner = body.get("metadata", {}).get("labels", {}).get(jobs.LABEL)
    custom = _custom()
    try:
        resource = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, owner)
    except ApiException as error:
        if error.status == 404:
            return  # the migration is gone; its Job follows through garbage collection
        raise
    current = resource.get("status") or {}
    update = status.status_patch(resource, dict(body), now())
    body_patch = update.patch()
    if all(current.get(key) == value for key, value in body_patch["status"].items()):
        return
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, owner, body_patch)
    phase = update.phase
    if phase != current.get("phase") and phase is not None:
        metrics.transition(phase)
    if phase != current.get("phase") and phase in MILESTONES:
        kind, reason = MILESTONES[phase]
        message = next(c.message for c in update.conditions if c.type == "Progressing")
        logger.info("%s/%s is %s: %s", namespace, owner, phase, message)
        kopf.event(resource, type=kind, reason=reason, message=message)


@kopf.on.event(GROUP, VERSION, PLURAL)
def migration_changed(event: kopf.RawEvent, body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    """Keep the metrics of each migration current with the status its runners write."""
    assert namespace is not None, "MilvusMigrations are namespaced"
    if event.get("type") == "DELETED":
        metrics.forget(namespace, name)
    else:
        metrics.observe(namespace, name, spec.MigrationStatus.model_validate(dict(body.get("status") or {})))

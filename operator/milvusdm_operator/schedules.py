"""MilvusMigrationSchedule: a MilvusMigration per cron tick, the last ``keep`` finished runs kept.

An older run that wrote files is deleted only once a Job (``jobs.prune_job``, in the run's own
pod settings) has deleted its output; a failed Job keeps the run and says so on the schedule.
No timer or daemon per object (kopf would put its finalizer on each): schedules are tracked from
their watch events, and one ticker reconciles them all. ``clock`` is the only time source, so
tests move time. Runs are owned by their schedule, so deleting it deletes them (and their Jobs).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any

import kopf
import kubernetes
from kubernetes.client.rest import ApiException

from milvusdm.crd import GROUP, PLURAL, SCHEDULE_PLURAL, VERSION
from milvusdm.errors import InputError
from milvusdm.kube import api_client
from milvusdm.schedule import (
    KIND,
    STAMP,
    MilvusMigrationSchedule,
    Pruning,
    ScheduleStatus,
    due,
    next_time,
    run_output,
    run_spec,
    to_prune,
)
from milvusdm.spec import API_VERSION, Condition, parse
from milvusdm.spec import KIND as MIGRATION_KIND
from milvusdm_operator import jobs, metrics, status

log = logging.getLogger(__name__)
LABEL = "milvusdm.io/schedule"
FINISHED = ("Succeeded", "Failed")
TICK_SECONDS = 10.0

clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)  # noqa: E731
known: set[tuple[str, str]] = set()


def iso(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


@kopf.on.event(GROUP, VERSION, SCHEDULE_PLURAL)
def schedule_seen(event: kopf.RawEvent, name: str, namespace: str | None, **_: Any) -> None:
    assert namespace is not None, "MilvusMigrationSchedules are namespaced"
    if event.get("type") == "DELETED":
        known.discard((namespace, name))
    else:
        known.add((namespace, name))


@kopf.on.startup()
async def start_ticker(memo: kopf.Memo, **_: Any) -> None:
    memo["schedule_ticker"] = asyncio.get_running_loop().create_task(tick_forever())


async def tick_forever(interval: float | None = None) -> None:
    while True:
        await asyncio.sleep(interval or TICK_SECONDS)
        await tick()


async def tick() -> None:
    for namespace, name in sorted(known):
        try:
            await asyncio.to_thread(reconcile, namespace, name)
        except Exception as error:  # one broken schedule must not stop the others
            metrics.RECONCILE_ERRORS.labels("schedule").inc()
            log.warning("schedule %s/%s: %s", namespace, name, error)


def run_name(schedule: str, at: datetime.datetime) -> str:
    return f"{schedule[:45]}-{at.astimezone(datetime.UTC).strftime(STAMP).lower()}"


def reconcile(namespace: str, name: str) -> None:
    """Create the due run, skip or replace per the policy, delete runs beyond ``keep``, write the status."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    try:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SCHEDULE_PLURAL, name)
    except ApiException as error:
        if error.status == 404:
            known.discard((namespace, name))
            return
        raise
    now, previous = clock(), ScheduleStatus.model_validate(body.get("status") or {})
    try:
        schedule = MilvusMigrationSchedule.model_validate(body)
    except ValueError as error:
        return _write(custom, body, _invalid(previous, str(error).splitlines()[-1], body, now))
    spec = schedule.spec
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, label_selector=f"{LABEL}={name}")
    runs = {r["metadata"]["name"]: r for r in listed["items"] if r["metadata"].get("labels", {}).get(LABEL) == name}
    phase = {run: (r.get("status") or {}).get("phase") for run, r in runs.items()}
    active = sorted(run for run in runs if phase[run] not in FINISHED)
    last_time, missed = previous.last_schedule_time, previous.missed
    since = parse_time(last_time or body["metadata"].get("creationTimestamp") or iso(now))
    at, late = (None, False) if spec.suspend else due(spec, since, now)
    if at is not None and late:
        log.info("schedule %s/%s: the run of %s is past its starting deadline; skipped", namespace, name, iso(at))
        last_time, missed = iso(at), missed + 1
    elif at is not None and active and spec.concurrency_policy == "Forbid":
        pass  # started once the active run finishes, if still within the starting deadline
    elif at is not None:
        if spec.concurrency_policy == "Replace":
            for run in active:
                _delete(custom, namespace, run)
            active = []
        run = _create_run(custom, body, schedule, at)
        runs[run], phase[run] = {}, None
        active = sorted([*active, run])
        last_time = iso(at)
    finished = sorted(run for run in runs if phase[run] in FINISHED)
    pruning = [entry for run in to_prune(finished, spec.keep) if (entry := _prune(custom, body, runs[run]))]
    failed = [entry for entry in pruning if entry.phase == "Failed"]
    for entry in failed:
        if not any(p.run == entry.run and p.phase == "Failed" for p in previous.pruning):
            _warn(body, "PruneFailed", entry.message or "", now)
    newest = finished[-1] if finished else None
    succeeded = [run for run in finished if phase[run] == "Succeeded"]
    status = ScheduleStatus(
        last_schedule_time=last_time,
        next_schedule_time=None if spec.suspend else iso(next_time(spec, now)),
        last_run=max(runs) if runs else None,
        last_run_result=phase[newest] if newest else None,
        last_successful_time=_completed(runs[succeeded[-1]]) if succeeded else previous.last_successful_time,
        active=active,
        missed=missed,
        pruning=pruning,
        conditions=[
            _ready(previous, "Suspended" if spec.suspend else "Scheduled", body, now),
            _condition(previous, "Pruned", "False", "PruneFailed", failed[0].message or "", body, now)
            if failed
            else _condition(
                previous, "Pruned", "True", "Pruned", "older runs are deleted with their output", body, now
            ),
        ],
        observed_generation=body["metadata"].get("generation"),
    )
    _write(custom, body, status)


def _create_run(custom: Any, body: dict[str, Any], schedule: MilvusMigrationSchedule, at: datetime.datetime) -> str:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    run: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": MIGRATION_KIND,
        "metadata": {
            "name": run_name(name, at),
            "namespace": namespace,
            "labels": {**schedule.spec.template.labels, LABEL: name},
        },
        "spec": run_spec(schedule.spec.template.spec, at).model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    kopf.append_owner_reference(run, owner=body)  # type: ignore[arg-type]  # kopf hints its Body; it only reads keys
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
        log.info("schedule %s/%s: created run %s", namespace, name, run["metadata"]["name"])
    except ApiException as error:
        if error.status != 409:  # 409: created by an earlier tick that failed later
            raise
    return str(run["metadata"]["name"])


def _delete(custom: Any, namespace: str, run: str) -> None:
    """The run's CR goes; its Jobs and pods follow through their owner references."""
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
    except ApiException as error:
        if error.status != 404:
            raise


def _prune(custom: Any, body: dict[str, Any], run: dict[str, Any]) -> Pruning | None:
    """Delete a run beyond ``keep``: at once if it wrote no files, else once its prune Job has
    deleted them. Returns the pruning while it lasts (None: the run is deleted)."""
    namespace, name = body["metadata"]["namespace"], run["metadata"]["name"]
    job_name = jobs.prune_job_name(name)
    if not (run.get("status") or {}).get("jobName"):  # it never ran (an invalid spec): it wrote nothing
        _delete(custom, namespace, name)
        return None
    try:
        migration = parse(run, origin=f"MilvusMigration {namespace}/{name}")
        output = run_output(name, migration.spec)
        job = jobs.prune_job(migration, namespace, jobs.runner_image())
    except InputError as error:
        return Pruning(run=name, job=job_name, output="", phase="Failed", message=f"run {name} is kept: {error}")
    if output is None:  # a Milvus target: no files
        _delete(custom, namespace, name)
        return None
    batch = kubernetes.client.BatchV1Api(custom.api_client)
    try:
        found = custom.api_client.sanitize_for_serialization(batch.read_namespaced_job(job_name, namespace))
    except ApiException as error:
        if error.status != 404:
            raise
        kopf.append_owner_reference(job, owner=run)  # type: ignore[arg-type]  # goes with the run's CR
        try:
            batch.create_namespaced_job(namespace, job)
            log.info(
                "schedule %s/%s: Job %s deletes the output of %s", namespace, body["metadata"]["name"], job_name, name
            )
        except ApiException as error:
            if error.status != 409:
                raise
        return Pruning(run=name, job=job_name, output=output, phase="Running")
    state = status.phase_of(found, suspended=False)
    if state.name == "Succeeded":
        log.info("schedule %s/%s: deleted %s, then run %s", namespace, body["metadata"]["name"], output, name)
        _delete(custom, namespace, name)
        return None
    if state.name == "Failed":
        message = (
            f"run {name} is kept: Job {job_name} could not delete {output} ({state.reason}: {state.message}); "
            f"see kubectl logs job/{job_name}, then delete the Job to retry"
        )
        return Pruning(run=name, job=job_name, output=output, phase="Failed", message=message)
    return Pruning(run=name, job=job_name, output=output, phase="Running")


def _warn(body: dict[str, Any], reason: str, message: str, now: datetime.datetime) -> None:
    """A Warning event on the schedule (posted here: ticks run outside kopf's handlers)."""
    meta = body["metadata"]
    event = {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": "Warning",
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "milvusdm-operator"},
        "firstTimestamp": iso(now),
        "lastTimestamp": iso(now),
        "count": 1,
    }
    try:
        kubernetes.client.CoreV1Api(api_client()).create_namespaced_event(meta["namespace"], event)
    except ApiException as error:  # events are auxiliary: the status says it too
        log.warning("schedule %s/%s: cannot post an event: %s", meta["namespace"], meta["name"], error.reason)


def _completed(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("completionTime")


def _ready(previous: ScheduleStatus, reason: str, body: dict[str, Any], now: datetime.datetime) -> Condition:
    return _condition(
        previous,
        "Ready",
        "True",
        reason,
        "runs are created on schedule" if reason == "Scheduled" else "suspended: no new runs",
        body,
        now,
    )


def _invalid(previous: ScheduleStatus, message: str, body: dict[str, Any], now: datetime.datetime) -> ScheduleStatus:
    return ScheduleStatus(
        conditions=[_condition(previous, "Ready", "False", "InvalidSpec", message, body, now)],
        observed_generation=body["metadata"].get("generation"),
    )


def _condition(
    previous: ScheduleStatus,
    kind: str,
    state: str,
    reason: str,
    message: str,
    body: dict[str, Any],
    now: datetime.datetime,
) -> Condition:
    before = next((c for c in previous.conditions if c.type == kind), None)
    kept = before is not None and before.status == state and before.last_transition_time
    return Condition(
        type=kind,
        status=state,
        reason=reason,
        message=message,
        last_transition_time=before.last_transition_time if kept and before else iso(now),
        observed_generation=body["metadata"].get("generation"),
    )


def _write(custom: Any, body: dict[str, Any], status: ScheduleStatus) -> None:
    patch = status.patch()
    stored = body.get("status") or {}
    if all(stored.get(key) == value for key, value in patch["status"].items()):
        return
    meta = body["metadata"]
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, meta["namespace"], SCHEDULE_PLURAL, meta["name"], patch
    )

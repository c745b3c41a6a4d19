"""The custom resource's phase and conditions, computed from its Job: pure functions.

Reconciling from the Job's real state (not only from the runner's last report) means a pod
that died without a word still ends as Failed, never as "Running" forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from milvusdm.spec import Condition, MigrationStatus

CONDITION_TYPES = ("Ready", "Progressing", "Failed")


@dataclass(frozen=True)
class Phase:
    name: str  # Pending, Running, Succeeded, Failed, Suspended
    reason: str
    message: str


def _job_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = job.get("status", {}).get("conditions") or []
    for condition in conditions:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def phase_of(job: dict[str, Any] | None, suspended: bool, runner_message: str | None = None) -> Phase:
    """Where the migration is, from its Job (None: not created yet)."""
    if job is None:
        return Phase("Pending", "JobPending", "the runner Job is being created")
    if failed := _job_condition(job, "Failed"):
        detail = runner_message or failed.get("message") or "the runner Job failed"
        return Phase("Failed", failed.get("reason") or "JobFailed", detail)
    if _job_condition(job, "Complete"):
        return Phase("Succeeded", "Completed", runner_message or "all rows copied and verified")
    if suspended or _job_condition(job, "Suspended"):
        return Phase("Suspended", "Suspended", "suspended; it resumes from its checkpoint when unsuspended")
    if job.get("status", {}).get("active"):
        return Phase("Running", "Copying", "the runner is copying rows")
    return Phase("Pending", "PodsPending", "waiting for the runner pod to start")


def conditions(previous: list[Condition], phase: Phase, generation: int | None, now: str) -> list[Condition]:
    """The whole conditions list (one writer, so a merge-patch may replace it whole);
    lastTransitionTime moves only when a condition's status flips."""
    wanted = {
        "Ready": phase.name == "Succeeded",
        "Progressing": phase.name in ("Pending", "Running"),
        "Failed": phase.name == "Failed",
    }
    old = {c.type: c for c in previous}
    result = []
    for kind in CONDITION_TYPES:
        status = "True" if wanted[kind] else "False"
        before = old.get(kind)
        kept = before is not None and before.status == status and before.last_transition_time
        result.append(
            Condition(
                type=kind,
                status=status,
                reason=phase.reason,
                message=phase.message,
                last_transition_time=before.last_transition_time if kept and before else now,
                observed_generation=generation,
            )
        )
    return result


def status_patch(resource: dict[str, Any], job: dict[str, Any] | None, now: str) -> MigrationStatus:
    """The operator's part of ``status`` for a MilvusMigration and its Job (only these fields are set)."""
    status = MigrationStatus.model_validate(resource.get("status") or {})
    generation = resource.get("metadata", {}).get("generation")
    runner_message = (status.message or None) if job is not None else None
    phase = phase_of(job, bool(resource.get("spec", {}).get("suspend")), runner_message)
    job_status = (job or {}).get("status", {})
    fields: dict[str, Any] = {}
    if job is not None:
        fields["job_name"] = job["metadata"]["name"]
    if job_status.get("startTime") and not status.start_time:
        fields["start_time"] = job_status["startTime"]
    if phase.name in ("Succeeded", "Failed"):
        fields["completion_time"] = status.completion_time or job_status.get("completionTime") or now
    return MigrationStatus(
        phase=phase.name,
        conditions=conditions(status.conditions, phase, generation, now),
        observed_generation=generation,
        **fields,
    )


def invalid_spec_patch(resource: dict[str, Any], message: str, now: str) -> MigrationStatus:
    phase = Phase("Failed", "InvalidSpec", message)
    generation = resource.get("metadata", {}).get("generation")
    previous = MigrationStatus.model_validate(resource.get("status") or {}).conditions
    return MigrationStatus(
        phase=phase.name,
        conditions=conditions(previous, phase, generation, now),
        observed_generation=generation,
        message=message,
        failure_reason="InvalidSpec",
        completion_time=now,
    )

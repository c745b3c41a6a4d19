"""The custom resource's phase and conditions, computed from its Job: pure functions.

Reconciling from the Job's real state (not only from the runner's last report) means a pod
that died without a word still ends as Failed, never as "Running" forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONDITION_TYPES = ("Ready", "Progressing", "Failed")


@dataclass(frozen=True)
class Phase:
    name: str  # Pending, Running, Succeeded, Failed, Suspended
    reason: str
    message: str


def _job_condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in job.get("status", {}).get("conditions") or []:
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


def conditions(previous: list[dict[str, Any]], phase: Phase, generation: int | None, now: str) -> list[dict[str, Any]]:
    """The whole conditions list (one writer, so a merge-patch may replace it whole);
    lastTransitionTime moves only when a condition's status flips."""
    wanted = {
        "Ready": phase.name == "Succeeded",
        "Progressing": phase.name in ("Pending", "Running"),
        "Failed": phase.name == "Failed",
    }
    old = {c.get("type"): c for c in previous or []}
    result = []
    for kind in CONDITION_TYPES:
        status = "True" if wanted[kind] else "False"
        before = old.get(kind, {})
        changed = before.get("status") != status
        result.append({
            "type": kind,
            "status": status,
            "reason": phase.reason,
            "message": phase.message,
            "lastTransitionTime": now if changed else before.get("lastTransitionTime", now),
            "observedGeneration": generation,
        })
    return result


def status_patch(resource: dict[str, Any], job: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """The operator's part of ``status`` for a MilvusMigration and its Job."""
    status = resource.get("status") or {}
    generation = resource.get("metadata", {}).get("generation")
    runner_message = (status.get("message") or None) if job is not None else None
    phase = phase_of(job, bool(resource.get("spec", {}).get("suspend")), runner_message)
    job_status = (job or {}).get("status", {})
    patch = {
        "phase": phase.name,
        "conditions": conditions(status.get("conditions", []), phase, generation, now),
        "observedGeneration": generation,
    }
    if job is not None:
        patch["jobName"] = job["metadata"]["name"]
    if job_status.get("startTime") and not status.get("startTime"):
        patch["startTime"] = job_status["startTime"]
    if phase.name in ("Succeeded", "Failed"):
        patch["completionTime"] = status.get("completionTime") or job_status.get("completionTime") or now
    return patch


def invalid_spec_patch(resource: dict[str, Any], message: str, now: str) -> dict[str, Any]:
    phase = Phase("Failed", "InvalidSpec", message)
    generation = resource.get("metadata", {}).get("generation")
    previous = (resource.get("status") or {}).get("conditions", [])
    return {
        "phase": phase.name,
        "conditions": conditions(previous, phase, generation, now),
        "observedGeneration": generation,
        "message": message,
        "completionTime": now,
    }

"""``MilvusMigrationSchedule``: recurring migrations (exports, dumps) from a template, and the
pure decisions behind them: when a run is due, where its output goes, which old runs go, and
which folder or prefix deleting a run's output may touch.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from milvusdm.errors import InputError
from milvusdm.spec import Condition, Metadata, MigrationSpec, Model

KIND = "MilvusMigrationSchedule"
STAMP = "%Y%m%dT%H%M%SZ"  # each run's suffix: sortable, valid in names, folders and collection names
STAMPED = re.compile(r"\d{8}T\d{6}Z")  # what STAMP writes


class RunTemplate(Model):
    """What each run is: a MilvusMigration spec, plus labels for the runs."""

    labels: dict[str, str] = Field(default_factory=dict)
    spec: MigrationSpec


class ScheduleSpec(Model):
    schedule: str = Field(description="Cron expression, e.g. '0 3 * * *' (03:00 daily).")
    time_zone: str = Field("Etc/UTC", description="IANA time zone the schedule is read in.")
    suspend: bool = Field(False, description="Create no new runs (running ones go on).")
    concurrency_policy: Literal["Forbid", "Allow", "Replace"] = Field(
        "Forbid", description="Forbid: skip a run while the previous one is unfinished; Replace: delete it first."
    )
    starting_deadline_seconds: int | None = Field(
        None, ge=1, description="A run not started this long after its time is skipped (e.g. the operator was down)."
    )
    keep: int = Field(
        3,
        ge=1,
        le=100,
        description="Finished runs kept; an older run's output (its timestamped folder or prefix) is deleted "
        "by a Job, then its CR.",
    )
    template: RunTemplate

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from None
        return value

    def times_after(self, start: datetime.datetime) -> croniter:
        return croniter(self.schedule, start.astimezone(zoneinfo.ZoneInfo(self.time_zone)))


class Pruning(BaseModel):
    """A run beyond keep whose output a Job is deleting: its CR goes once the Job succeeds."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    run: str
    job: str
    output: str = Field(description="The run's timestamped folder or s3:// prefix.")
    phase: Literal["Running", "Failed"]
    message: str | None = None


class ScheduleStatus(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    last_schedule_time: str | None = None
    next_schedule_time: str | None = None
    last_run: str | None = Field(None, description="The MilvusMigration of the latest run.")
    last_run_result: str | None = Field(None, description="Phase of the latest finished run: Succeeded or Failed.")
    last_successful_time: str | None = None
    active: list[str] = Field(default_factory=list, description="Runs not finished yet.")
    missed: int = Field(0, description="Runs skipped: past startingDeadlineSeconds, or forbidden by the policy.")
    pruning: Annotated[
        list[Pruning], Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["run"]})
    ] = Field(default_factory=list, description="Runs beyond keep whose output is being deleted, or failed to be.")
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None

    def patch(self) -> dict[str, Any]:
        return {"status": self.model_dump(mode="json", by_alias=True, exclude_unset=True)}


class MilvusMigrationSchedule(Model):
    api_version: Literal["milvusdm.io/v1alpha1"]
    kind: Literal["MilvusMigrationSchedule"]
    metadata: Metadata
    spec: ScheduleSpec
    status: ScheduleStatus | None = None


def due(spec: ScheduleSpec, since: datetime.datetime, now: datetime.datetime) -> tuple[datetime.datetime | None, bool]:
    """The latest scheduled time in (since, now], and whether it is too late to start it."""
    times, latest = spec.times_after(since), None
    while (candidate := times.get_next(datetime.datetime)) <= now:
        latest = candidate
    if latest is None:
        return None, False
    late = (
        spec.starting_deadline_seconds is not None and (now - latest).total_seconds() > spec.starting_deadline_seconds
    )
    return latest, late


def next_time(spec: ScheduleSpec, now: datetime.datetime) -> datetime.datetime:
    after: datetime.datetime = spec.times_after(now).get_next(datetime.datetime)
    return after


def run_spec(template: MigrationSpec, at: datetime.datetime) -> MigrationSpec:
    """The template with this run's output under its own timestamped folder, prefix or collection."""
    stamp = at.astimezone(datetime.UTC).strftime(STAMP)
    kind, target = template.target.one_of()
    if kind == "milvus" and target.collection is None:  # many collections: each run's copies of them
        rules = {pattern: f"{name}_{stamp}" for pattern, name in target.rename.items()}
        changed = target.model_copy(update={"rename": {**rules, **({} if "*" in rules else {"*": f"*_{stamp}"})}})
    elif kind == "milvus":
        changed = target.model_copy(update={"collection": f"{target.collection}_{stamp}"})
    elif kind == "dump" or target.path.endswith("/"):  # a folder: the run's folder inside it
        changed = target.model_copy(update={"path": f"{target.path.rstrip('/')}/{stamp}/"})
    else:  # a file: the same name in the run's folder beside it
        folder, slash, file = target.path.rpartition("/")
        changed = target.model_copy(update={"path": f"{folder}{slash}{stamp}/{file}"})
    return template.model_copy(update={"target": template.target.model_copy(update={kind: changed})})


def run_output(name: str, spec: MigrationSpec) -> str | None:
    """The folder or prefix (ending in '/') that scheduled run ``name`` wrote, as ``run_spec`` made
    it: None for a Milvus target; refused unless its last part is the run's own time, so that
    deleting it can never reach a template's base folder, another run's or anything else."""
    kind, target = spec.target.one_of()
    if kind == "milvus":
        return None
    path: str = target.path
    folder = (path if kind == "dump" or path.endswith("/") else path.rpartition("/")[0]).rstrip("/")
    inside = folder.removeprefix("s3://").partition("/")[2] if folder.startswith("s3://") else folder
    parts, stamp = inside.split("/"), name.rpartition("-")[2].upper()
    if not STAMPED.fullmatch(stamp) or parts[-1] != stamp or {".", ".."} & set(parts):
        raise InputError(
            f"refusing to delete {path}: it is not the timestamped output of a scheduled run named {name}",
            "only runs a MilvusMigrationSchedule created have output to prune",
        )
    return f"{folder}/"


def to_prune(finished: list[str], keep: int) -> list[str]:
    """Finished runs beyond the newest ``keep`` (names sort by their timestamp)."""
    return sorted(finished)[:-keep] if len(finished) > keep else []

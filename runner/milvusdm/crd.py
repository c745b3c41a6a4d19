"""The MilvusMigration CustomResourceDefinition, generated from the spec model.

Generating the openAPIV3Schema from the same pydantic classes that validate manifests keeps the
CRD and the CLI in agreement by construction; a test checks the committed YAML is current.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from milvusdm import kubetypes
from milvusdm.spec import API_VERSION, KIND, MigrationSpec, MigrationStatus

GROUP, VERSION = API_VERSION.split("/")
PLURAL, SHORT = "milvusmigrations", "mmig"
SCHEDULE_PLURAL = "milvusmigrationschedules"
KEPT = (
    "type",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
)

# Everything in spec is fixed once created, except suspend (CEL transition rule on spec).
IMMUTABLE_RULE = {
    "rule": " && ".join(
        f"(has(self.{f}) == has(oldSelf.{f})) && (!has(self.{f}) || self.{f} == oldSelf.{f})"
        for f in ("source", "target", "batchSize", "verify", "verifySample", "parallelism", "job")
    ),
    "message": "spec is immutable except suspend: create a new MilvusMigration to change it",
}


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema node as a Kubernetes structural schema node ($refs inlined,
    optionals unwrapped, free-form maps marked to keep unknown fields)."""
    if "x-milvusdm-kube" in node:  # a core/v1 type: Kubernetes' own schema
        kind = kubetypes.schema(node["x-milvusdm-kube"])
        if node.get("type") == "array":
            kind = {"type": "array", "items": kind}
        return kind | {k: v for k, v in node.items() if k in ("description", "maxItems", "x-kubernetes-validations")}
    if "$ref" in node:
        target = structural(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return target | {k: v for k, v in node.items() if k in ("description",)}
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express {node} structurally")
        inner = structural(options[0], defs)
        return inner | {k: v for k, v in node.items() if k in ("description",)}
    out = {key: node[key] for key in KEPT if key in node}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:  # JSON Schema 2020's number is OpenAPI 3.0's boolean beside the limit
            out[limit], out[bound] = node[bound], True
    if "const" in node:
        out["enum"] = [node["const"]]
    if node.get("default") is not None and not isinstance(node["default"], (dict, list)):
        out["default"] = node["default"]
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {name: structural(child, defs) for name, child in node["properties"].items()}
        if node.get("required"):
            out["required"] = node["required"]
    elif out.get("type") == "object" or "additionalProperties" in node:
        out["type"] = "object"
        values = node.get("additionalProperties", True)
        if values is True or values == {}:
            out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out["additionalProperties"] = structural(values, defs)
    if out.get("type") == "array":
        out["items"] = structural(node["items"], defs)
    if "type" not in out:  # Any
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def _crd(
    kind: str,
    plural: str,
    short: str,
    description: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["milvusdm"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [*columns, column("Age", ".metadata.creationTimestamp", "date")],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def definition() -> dict[str, Any]:
    spec = schema_of(MigrationSpec)
    spec.setdefault("x-kubernetes-validations", []).append(IMMUTABLE_RULE)
    return _crd(
        KIND,
        PLURAL,
        SHORT,
        "A migration of vectors into, out of or between Milvus collections.",
        spec,
        schema_of(MigrationStatus),
        [
            column("Phase", ".status.phase"),
            column("Progress", ".status.progress"),
            column("Rows", ".status.rowsCopied", "integer"),
            column("Source", ".status.source", priority=1),
            column("Target", ".status.target", priority=1),
        ],
    )


def schedule_definition() -> dict[str, Any]:
    from milvusdm.schedule import KIND as SCHEDULE_KIND
    from milvusdm.schedule import ScheduleSpec, ScheduleStatus

    return _crd(
        SCHEDULE_KIND,
        SCHEDULE_PLURAL,
        "mmigs",
        "Recurring MilvusMigrations from a template, on a cron schedule.",
        schema_of(ScheduleSpec),
        schema_of(ScheduleStatus),
        [
            column("Schedule", ".spec.schedule"),
            column("Suspend", ".spec.suspend", "boolean"),
            column("Last", ".status.lastScheduleTime", "date"),
            column("Result", ".status.lastRunResult"),
            column("Next", ".status.nextScheduleTime", priority=1),
        ],
    )


def render(schedule: bool = False) -> str:
    header = (
        f"# Generated from the spec model by `milvusdm crd{' --schedule' if schedule else ''}`; do not edit by hand.\n"
    )
    body: str = yaml.safe_dump(schedule_definition() if schedule else definition(), sort_keys=False, width=120)
    return header + body

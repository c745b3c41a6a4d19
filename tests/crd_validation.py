"""Validate objects against a CRD offline, as the API server would: structure and CEL rules."""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Unknown fields are errors (kubectl's strict field validation), unless preserved."""
    schema = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for child in node.get("properties", {}).values():
            walk(child)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])
        if "items" in node:
            walk(node["items"])

    walk(schema)
    return schema


def _cel_errors(schema: dict, value: Any, old: Any, path: str) -> list[str]:
    errors = []
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue  # transition rules apply to updates only
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = env.program(env.compile(rule["rule"])).evaluate(activation)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                child_old = old.get(name) if isinstance(old, dict) else None
                errors += _cel_errors(child, value[name], child_old, f"{path}.{name}")
    return errors


def validate(crd: dict, document: dict, old: dict | None = None) -> list[str]:
    """Every reason the API server would reject ``document`` (an update of ``old`` if given)."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft4Validator(_strict(schema))  # OpenAPI 3.0's flavour
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    return errors or _cel_errors(schema, document, old, "")

"""Validate objects against a CRD offline, as the API server would: structure and CEL rules."""

from __future__ import annotations

import copy
import functools
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


@functools.cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel_errors(schema: dict, value: Any, old: Any, path: str) -> list[str]:
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue  # transition rules apply to updates only
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = _program(rule["rule"]).evaluate(activation)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                child_old = old.get(name) if isinstance(old, dict) else None
                errors += _cel_errors(child, value[name], child_old, f"{path}.{name}")
    return errors


def _list_map_errors(schema: dict, value: Any, path: str) -> list[str]:
    """Lists of type map hold each key once (the API server's "Duplicate value")."""
    errors = []
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                errors += _list_map_errors(child, value[name], f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
            errors += [f"{path}: duplicate value {key}" for key in sorted(set(keys)) if keys.count(key) > 1]
        for i, item in enumerate(value):
            errors += _list_map_errors(schema["items"], item, f"{path}[{i}]")
    return errors


class Schema:
    """One CRD version's schema, compiled once: validation and pruning as the API server does them."""

    def __init__(self, crd: dict) -> None:
        version = crd["spec"]["versions"][0]
        self.schema = version["schema"]["openAPIV3Schema"]
        self.status_subresource = "status" in version.get("subresources", {})
        self.validator = jsonschema.Draft4Validator(_strict(self.schema))  # OpenAPI 3.0's flavour

    def errors(self, document: dict, old: dict | None = None) -> list[str]:
        """Every reason the API server would reject ``document`` (an update of ``old`` if given)."""
        found = self.validator.iter_errors(document)
        errors = [f"{'.'.join(map(str, e.absolute_path)) or '(object)'}: {e.message}" for e in found]
        return errors or _list_map_errors(self.schema, document, "") or _cel_errors(self.schema, document, old, "")

    def prune(self, document: dict, dropped: list[str]) -> dict:
        """``document`` without the fields the schema does not declare (their paths go to ``dropped``);
        metadata is the API server's own and kept, as are nulls' absence."""
        pruned = _prune({k: v for k, v in document.items() if k != "metadata"}, self.schema, "", dropped)
        return {**pruned, "metadata": document["metadata"]} if "metadata" in document else pruned


def _prune(value: Any, schema: dict, path: str, dropped: list[str]) -> Any:
    keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if isinstance(value, dict):
        properties, values = schema.get("properties"), schema.get("additionalProperties")
        if properties is None and not isinstance(values, dict):
            return value if keep_unknown or schema.get("type") != "object" else _drop_all(value, path, dropped)
        out = {}
        for key, child in value.items():
            if child is None:
                continue  # a null in a non-nullable field is dropped, as by the API server
            sub = properties.get(key) if properties is not None else values
            if sub is not None:
                out[key] = _prune(child, sub, f"{path}.{key}", dropped)
            elif keep_unknown:
                out[key] = child
            else:
                dropped.append(f"{path}.{key}")
        return out
    if isinstance(value, list) and "items" in schema:
        return [_prune(item, schema["items"], f"{path}[{i}]", dropped) for i, item in enumerate(value)]
    return value


def _drop_all(value: dict, path: str, dropped: list[str]) -> dict:
    dropped += [f"{path}.{key}" for key in value]
    return {}


def validate(crd: dict, document: dict, old: dict | None = None) -> list[str]:
    """Every reason the API server would reject ``document`` (an update of ``old`` if given)."""
    return Schema(crd).errors(document, old)

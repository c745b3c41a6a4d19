"""Structural CRD schemas for core/v1 types (Volume, Toleration, Affinity…), from the Kubernetes
OpenAPI definitions that ``kubernetes-validate`` ships offline.

Used when generating the CRD (``milvusdm crd``), never at run time. Nested descriptions are
dropped to keep the CRD small (``kubectl explain`` still shows ours); everything else (types,
required fields, nested objects, int-or-string) is kept, so the API server checks pod settings
when the MilvusMigration is created, not when its Job is.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

K8S_VERSION = "1.33.0"
CORE = "io.k8s.api.core.v1."
INT_OR_STRING = ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity")


@cache
def _definitions() -> dict[str, Any]:
    try:
        from importlib.resources import files

        folder = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}-local"
    except ModuleNotFoundError:
        from milvusdm.errors import InputError

        raise InputError("generating the CRD needs kubernetes-validate", "pip install 'milvusdm[test]'") from None
    definitions: dict[str, Any] = json.loads((folder / "_definitions.json").read_text())["$defs"]
    return definitions


def schema(name: str) -> dict[str, Any]:
    """The structural schema of a definition, e.g. ``core.v1.Volume``'s for ``"Volume"``."""
    return _structural({"$ref": f"#/$defs/{CORE}{name}"}, ())


def _structural(node: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in INT_OR_STRING:
            return {"x-kubernetes-int-or-string": True}
        if name in seen:
            raise ValueError(f"recursive definition {name}")
        return _structural(_definitions()[name], (*seen, name))
    kind = node.get("type")
    if isinstance(kind, list):  # ["string", "null"]: optional, which structural schemas say by omission
        (kind,) = [k for k in kind if k != "null"]
    out: dict[str, Any] = {"type": kind} if kind else {}
    if "enum" in node:
        out["enum"] = [v for v in node["enum"] if v is not None]
    if node.get("format") in ("int32", "int64", "double", "byte", "date-time"):
        out["format"] = node["format"]
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {key: _structural(child, seen) for key, child in node["properties"].items()}
        if node.get("required"):
            out["required"] = node["required"]
    elif isinstance(node.get("additionalProperties"), dict):
        out["type"] = "object"
        out["additionalProperties"] = _structural(node["additionalProperties"], seen)
    elif out.get("type") == "object":
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = _structural(node["items"], seen)
    return out

"""kmock made to behave like a real API server where the operator's correctness depends on it.

For the project's CRDs (read from crds/): create ignores ``status`` and update ignores it too,
while ``/status`` changes nothing else (the status subresource); unknown fields are pruned
against the structural schema and values of the wrong type (or breaking a CEL rule) are refused
with 422; ``metadata.generation`` starts at 1 and grows on each spec change; every write gives a new
``metadata.resourceVersion``, and a patch carrying a stale one is refused with 409 Conflict
(optimistic concurrency). Pruned paths are kept
in ``pruned`` so a test can fail when a writer's field is missing from the CRD.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from typing import Any

import attrs
import kmock as kmocklib
import yaml
from kmock._internal.k8s import KubernetesError

from tests.conftest import REPO
from tests.crd_validation import Schema

versions = itertools.count(1)
SCHEMAS = {
    f"{d['spec']['group']}/{d['spec']['versions'][0]['name']}/{d['spec']['names']['plural']}": Schema(d)
    for path in sorted((REPO / "crds").glob("*.*.yaml"))
    for d in [yaml.safe_load(path.read_text())]
}


@attrs.frozen
class KubernetesInvalidError(KubernetesError):
    status: int = 422
    reason: str = "Invalid"
    message: str = ""


@attrs.frozen
class KubernetesConflictError(KubernetesError):
    status: int = 409
    reason: str = "Conflict"
    message: str = ""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Emulator(kmocklib.KubernetesEmulator):
    """kmock plus what an API server stamps on create (uid, resourceVersion, generateName) and
    the schema handling of a real one for the project's CRDs."""

    pruned: list[str]
    rejected: list[str]

    async def _handle(self, request):
        if not hasattr(self, "pruned"):
            self.pruned, self.rejected = [], []
        if request.action == kmocklib.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:8]
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("resourceVersion", str(next(versions)))
        resource = request.resource
        schema = SCHEMAS.get(f"{resource.group}/{resource.version}/{resource.plural}") if resource is not None else None
        if schema is not None and isinstance(request.data, dict):
            try:
                await self._admit(request, schema)
            except KubernetesInvalidError as error:
                self.rejected.append(error.message)
                return await self._render_error(error)
            except KubernetesConflictError as error:
                return await self._render_error(error)
        return await super()._handle(request)

    async def _admit(self, request, schema: Schema) -> None:
        """Rewrite the request (in place) to store the object as the API server would: a create
        carries the admitted object; an update is applied here and kmock then merges nothing."""
        if request.action == kmocklib.action.CREATE:
            document = {key: value for key, value in request.data.items() if key != "status"}
            document["metadata"].setdefault("generation", 1)
            stored = self._check(schema, document, None)
            request.data.clear()
            request.data.update(stored)
            return
        if request.action != kmocklib.action.UPDATE or request.name is None:
            return
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                return  # kmock answers 404
            old = self.objects[key].raw
            given = (request.data.get("metadata") or {}).get("resourceVersion")
            if given is not None and given != old.get("metadata", {}).get("resourceVersion"):
                raise KubernetesConflictError(
                    message=f'Operation cannot be fulfilled on {request.resource.plural} "{request.name}": the object has '
                    "been modified; please apply your changes to the latest version and try again"
                )
            if request.subresource == "status":
                document = {**old, "status": merge_patch(old.get("status"), request.data.get("status"))}
            else:
                document = merge_patch(old, {k: v for k, v in request.data.items() if k != "status"})
                document["metadata"] = dict(document["metadata"])
                document["status"] = old.get("status")
                generation = old["metadata"].get("generation", 1)
                changed = document.get("spec") != old.get("spec")
                document["metadata"]["generation"] = generation + 1 if changed else generation
            document = {k: v for k, v in document.items() if v is not None}
            document["metadata"] = {**document["metadata"], "resourceVersion": str(next(versions))}
            self.objects[key].history.append(self._check(schema, document, old))
        request.data.clear()

    def _check(self, schema: Schema, document: dict, old: dict | None) -> dict:
        dropped: list[str] = []
        pruned = schema.prune(document, dropped)
        self.pruned += dropped
        if errors := schema.errors(pruned, old):
            raise KubernetesInvalidError(message="; ".join(errors))
        return pruned

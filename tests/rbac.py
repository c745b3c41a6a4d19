"""What RBAC a component needs, read off the requests a mock API server received."""

from __future__ import annotations

from pathlib import Path

import yaml

VERBS = {"list": "list", "watch": "watch", "fetch": "get", "create": "create", "update": "patch", "delete": "delete"}


def used(kmock, *agents: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every request whose User-Agent starts with an agent."""
    found = set()
    for request in kmock:
        agent = request.headers.get("User-Agent", "")
        if request.resource is None or request.action is None or not agent.startswith(agents):
            continue
        if not request.resource.plural:
            continue  # discovery: open to every authenticated user (system:discovery)
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        verb = "patch" if request.method.name == "PATCH" else VERBS[request.action.name.lower()]
        found.add((request.resource.group or "", resource, verb))
    return found


def granted(path: Path, role: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of a ClusterRole in a manifest file."""
    for document in yaml.safe_load_all(path.read_text()):
        if document["kind"] == "ClusterRole" and document["metadata"]["name"] == role:
            return {
                (group, resource, verb)
                for rule in document["rules"]
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    raise KeyError(role)

"""Install manifests, rendered offline: kinds, least-privilege RBAC, pod security, probes,
schema validity, the Argo CD health check on each phase, and the Dockerfile's references."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import kubernetes_validate
import lupa
import pytest
import yaml

from tests.conftest import REPO
from tests.rbac import granted

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
K8S_VERSION = "1.33.0"


def kustomize(folder: Path) -> list[dict]:
    """The subset of `kubectl kustomize` these folders use: resources (files and folders),
    namespace, images (newTag), configMapGenerator from files."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        objects += kustomize(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for generator in spec.get("configMapGenerator", []):
        data = {}
        for item in generator["files"]:
            key, _, name = item.rpartition("=")
            data[key or name] = (folder / name).read_text()
        labels = spec.get("generatorOptions", {}).get("labels", {})
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"], "labels": labels},
                "data": data,
            }
        )
    objects = copy.deepcopy(objects)
    for obj in objects:
        if spec.get("namespace") and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = spec["namespace"]
        for image in spec.get("images", []):
            for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if container["image"] == image["name"]:
                    container["image"] = f"{image['name']}:{image['newTag']}"
    return objects


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in kustomize(REPO / "deploy")}


def test_kinds(rendered):
    assert set(rendered) == {
        ("CustomResourceDefinition", "milvusmigrations.milvusdm.io"),
        ("CustomResourceDefinition", "milvusmigrationschedules.milvusdm.io"),
        ("Namespace", "milvusdm-system"),
        ("ServiceAccount", "milvusdm-operator"),
        ("ClusterRole", "milvusdm-operator"),
        ("ClusterRoleBinding", "milvusdm-operator"),
        ("ClusterRole", "milvusdm-runner"),
        ("Deployment", "milvusdm-operator"),
    }
    assert rendered["ServiceAccount", "milvusdm-operator"]["metadata"]["namespace"] == "milvusdm-system"
    subject = rendered["ClusterRoleBinding", "milvusdm-operator"]["subjects"][0]
    assert (subject["name"], subject["namespace"]) == ("milvusdm-operator", "milvusdm-system")


def test_rbac_is_least_privilege(rendered):
    operator = granted(REPO / "deploy" / "rbac.yaml", "milvusdm-operator")
    assert not any(resource in ("secrets", "configmaps", "*") or verb == "*" for _, resource, verb in operator)
    assert not any(verb in ("update", "deletecollection") for _, _, verb in operator)
    # the only deletions: a schedule's runs beyond its keep
    assert {(g, r) for g, r, verb in operator if verb == "delete"} == {("milvusdm.io", "milvusmigrations")}
    bind = next(r for r in rendered["ClusterRole", "milvusdm-operator"]["rules"] if "bind" in r["verbs"])
    assert bind["resourceNames"] == ["milvusdm-runner"]
    assert granted(REPO / "deploy" / "rbac.yaml", "milvusdm-runner") == {
        ("milvusdm.io", "milvusmigrations", "get"),
        ("milvusdm.io", "milvusmigrations/status", "get"),
        ("milvusdm.io", "milvusmigrations/status", "patch"),
    }


def test_operator_deployment(rendered):
    deployment = rendered["Deployment", "milvusdm-operator"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 1 and pod["serviceAccountName"] == "milvusdm-operator"
    assert container["image"] == "ghcr.io/milvusdm/milvusdm:0.1.0"
    assert container["args"][:2] == ["operator", "--all-namespaces"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080} in container["ports"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_every_rendered_object_is_schema_valid(rendered):
    for obj in [*rendered.values(), *kustomize(REPO / "deploy" / "argocd")]:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_jobs_the_operator_builds_are_schema_valid():
    from milvusdm import spec
    from milvusdm_operator.jobs import build_job, prune_job, runner_identity

    for path in sorted((REPO / "examples").glob("*.yaml")):
        migration = spec.parse(yaml.safe_load(path.read_text()))
        kubernetes_validate.validate(build_job(migration, "vectors", "milvusdm:1"), K8S_VERSION, strict=True)
        kubernetes_validate.validate(prune_job(migration, "vectors", "milvusdm:1"), K8S_VERSION, strict=True)
    for obj in runner_identity("vectors"):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _health_check(name: str):
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    script = (REPO / "deploy" / "argocd" / name).read_text()
    check = lua.eval(f"function(obj) {script} end")

    def run(obj: dict) -> tuple[str, str]:
        result = check(lua.table_from(_lua(lua, obj)))
        return result["status"], result["message"]

    return run


@pytest.fixture(scope="module")
def health():
    return _health_check("health.lua")


def test_argocd_health_for_schedules():
    health = _health_check("schedule-health.lua")
    status = {"observedGeneration": 1, "nextScheduleTime": "2026-11-29T03:00:00Z", "lastRun": "nightly-1"}
    obj = lambda spec=None, **extra: {"metadata": {"generation": 1}, "spec": spec or {}, "status": {**status, **extra}}  # noqa: E731
    assert health({"metadata": {"generation": 1}, "spec": {}})[0] == "Progressing"
    assert health(obj(lastRunResult="Succeeded")) == ("Healthy", "Next run 2026-11-29T03:00:00Z; latest: nightly-1")
    assert health(obj())[0] == "Healthy"  # no run finished yet
    assert health(obj(lastRunResult="Failed")) == ("Degraded", "Last finished run failed (latest: nightly-1)")
    assert health(obj({"suspend": True}))[0] == "Suspended"
    invalid = obj(conditions=[{"type": "Ready", "status": "False", "message": "bad cron"}])
    assert health(invalid) == ("Degraded", "bad cron")
    stuck = [{"type": "Ready", "status": "True"}, {"type": "Pruned", "status": "False", "reason": "PruneFailed"}]
    assert health(obj(lastRunResult="Succeeded", conditions=stuck)) == ("Degraded", "PruneFailed")
    assert health({"metadata": {"generation": 2}, "spec": {}, "status": status})[0] == "Progressing"


def _lua(lua, value):
    if isinstance(value, dict):
        return lua.table_from({k: _lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_lua(lua, v) for v in value])
    return value


def cr(status=None, generation=1):
    obj = {"metadata": {"name": "m", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = {"observedGeneration": 1, **status}
    return obj


def test_argocd_health_for_each_phase(health):
    progressing = [{"type": "Progressing", "status": "True", "message": "the runner is copying rows"}]
    assert health(cr()) == ("Progressing", "Waiting for the milvusdm operator")
    assert health(cr({"phase": "Pending", "conditions": progressing})) == (
        "Progressing",
        "Pending: the runner is copying rows",
    )
    assert health(cr({"phase": "Running", "progress": "42%", "rowsCopied": 420})) == (
        "Progressing",
        "Running: 42% (420 rows)",
    )
    assert health(cr({"phase": "Succeeded", "verified": "ids (10 ids present, count 10)"})) == (
        "Healthy",
        "Copied and verified: ids (10 ids present, count 10)",
    )
    assert health(cr({"phase": "Failed", "message": "bad credentials"})) == ("Degraded", "bad credentials")
    assert health(cr({"phase": "Failed"}))[0] == "Degraded"  # no message: no nil concatenation
    assert health(cr({"phase": "Suspended", "conditions": progressing}))[0] == "Suspended"
    stale = cr({"phase": "Succeeded"}, generation=2)
    assert health(stale) == ("Progressing", "Waiting for the operator to observe generation 2")


def test_argocd_configmap_carries_the_health_check():
    (configmap,) = kustomize(REPO / "deploy" / "argocd")
    assert configmap["metadata"]["name"] == "argocd-cm" and configmap["metadata"]["namespace"] == "argocd"
    assert (
        configmap["data"]["resource.customizations.health.milvusdm.io_MilvusMigration"]
        == (REPO / "deploy" / "argocd" / "health.lua").read_text()
    )
    assert (
        configmap["data"]["resource.customizations.health.milvusdm.io_MilvusMigrationSchedule"]
        == (REPO / "deploy" / "argocd" / "schedule-health.lua").read_text()
    )


def test_dockerfile_references_exist():
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile, flags=re.M)
    for line in copied:
        for path in line.split():
            assert (REPO / path).exists(), path
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not {p for line in copied for p in line.split()} & set(ignored), "the Dockerfile copies an ignored path"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["milvusdm"]' in dockerfile and scripts["milvusdm"] == "milvusdm.cli:main"
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, flags=re.M)
    assert user and int(user.group(1)) >= 10000
    deployment = yaml.safe_load((REPO / "deploy" / "operator.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user.group(1))


def test_metrics_component(rendered):
    """deploy/metrics: the Deployment patched to serve /metrics, a Service and a PodMonitor that find it."""
    import jsonpatch

    component = yaml.safe_load((REPO / "deploy" / "metrics" / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    deployment = copy.deepcopy(rendered["Deployment", "milvusdm-operator"])
    for patch in component["patches"]:
        assert patch["target"] == {"kind": "Deployment", "name": "milvusdm-operator"}
        deployment = jsonpatch.apply_patch(deployment, yaml.safe_load(patch["patch"]))
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["--metrics-port", "9090"]
    assert {"name": "metrics", "containerPort": 9090} in container["ports"]
    objects = {
        d["kind"]: d
        for name in component["resources"]
        for d in [yaml.safe_load((REPO / "deploy" / "metrics" / name).read_text())]
    }
    kubernetes_validate.validate(objects["Service"], K8S_VERSION, strict=True)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == "metrics"
    monitor = objects["PodMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    from typer.testing import CliRunner

    from milvusdm.cli import app

    usage = CliRunner().invoke(app, ["operator", "--help"]).stdout
    assert "--metrics-port" in usage

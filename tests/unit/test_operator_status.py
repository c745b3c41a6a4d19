"""Phase and conditions from Job state, and the Job built for a migration: pure functions."""

import copy

import pytest
import yaml

from milvusdm import spec
from milvusdm.errors import InputError
from milvusdm_operator.jobs import build_job, job_name
from milvusdm_operator.status import invalid_spec_patch, phase_of, status_patch
from tests.conftest import REPO

T0, T1 = "2026-11-28T10:00:00Z", "2026-11-28T10:05:00Z"


def job(**status):
    return {"metadata": {"name": "mmig-x"}, "status": status}


def cond(kind, **extra):
    return {"type": kind, "status": "True", **extra}


def test_phase_follows_the_job():
    assert phase_of(None, False).name == "Pending"
    assert phase_of(job(), False).name == "Pending"
    assert phase_of(job(active=1), False).name == "Running"
    assert phase_of(job(active=0, conditions=[cond("Suspended")]), False).name == "Suspended"
    assert phase_of(job(active=1), True).name == "Suspended"
    assert phase_of(job(succeeded=1, conditions=[cond("Complete")]), False).name == "Succeeded"
    failed = phase_of(job(failed=7, conditions=[cond("Failed", reason="BackoffLimitExceeded", message="x")]), False)
    assert (failed.name, failed.reason, failed.message) == ("Failed", "BackoffLimitExceeded", "x")
    # the runner's own one-line error wins over the Job's generic message
    detailed = phase_of(job(conditions=[cond("Failed", reason="PodFailurePolicy")]), False, "bad credentials")
    assert (detailed.reason, detailed.message) == ("PodFailurePolicy", "bad credentials")


def test_conditions_keep_transition_times_until_status_flips():
    resource = {"metadata": {"generation": 3}, "spec": {}, "status": {}}
    running = status_patch(resource, job(active=1, startTime=T0), T0).patch()["status"]
    assert running["phase"] == "Running" and running["startTime"] == T0 and running["observedGeneration"] == 3
    by_type = {c["type"]: c for c in running["conditions"]}
    assert (by_type["Progressing"]["status"], by_type["Ready"]["status"], by_type["Failed"]["status"]) == (
        "True",
        "False",
        "False",
    )
    resource["status"] = running
    still = status_patch(resource, job(active=1, startTime=T0), T1).patch()["status"]
    assert [c["lastTransitionTime"] for c in still["conditions"]] == [T0, T0, T0]
    done = status_patch(resource, job(succeeded=1, startTime=T0, completionTime=T1, conditions=[cond("Complete")]), T1)
    done = done.patch()["status"]
    by_type = {c["type"]: c for c in done["conditions"]}
    assert done["phase"] == "Succeeded" and done["completionTime"] == T1
    assert (by_type["Ready"]["status"], by_type["Ready"]["lastTransitionTime"]) == ("True", T1)
    assert (by_type["Progressing"]["status"], by_type["Progressing"]["lastTransitionTime"]) == ("False", T1)
    assert (by_type["Failed"]["status"], by_type["Failed"]["lastTransitionTime"]) == ("False", T0)
    assert "startTime" not in done  # already set; not rewritten


def test_invalid_spec_is_failed_with_the_reason():
    patch = invalid_spec_patch({"metadata": {"generation": 1}}, "spec.target: Field required", T0).patch()["status"]
    assert patch["failureReason"] == "InvalidSpec"
    failed = {c["type"]: c for c in patch["conditions"]}["Failed"]
    assert patch["phase"] == "Failed" and (failed["status"], failed["reason"]) == ("True", "InvalidSpec")
    assert failed["message"] == "spec.target: Field required"


def load(name):
    return spec.parse(yaml.safe_load((REPO / "examples" / name).read_text()))


def test_job_for_a_single_run():
    migration = load("faiss-to-milvus.yaml")
    built = build_job(migration, "vectors", "milvusdm:1")
    assert built["metadata"]["name"] == "mmig-faiss-catalog" == job_name("faiss-catalog")
    assert built["metadata"]["labels"]["milvusdm.io/migration"] == "faiss-catalog"
    pod = built["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["run", "--resource", "vectors/faiss-catalog"]
    assert {
        "name": "MILVUSDM_TARGET_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "milvus-credentials", "key": "password"}},
    } in container["env"]
    assert {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "minio-credentials", "key": "secretAccessKey"}},
    } in container["env"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "milvusdm-runner"
    assert built["spec"]["ttlSecondsAfterFinished"] == 86400 and "completionMode" not in built["spec"]
    assert built["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 4]  # 5 (LeaseHeld) retried
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    assert not any("value" in e and "TOKEN" in e["name"] for e in container["env"])


def test_parallel_run_is_an_indexed_job():
    built = build_job(load("parallel-hdf5-to-milvus.yaml"), "vectors", "milvusdm:1")
    assert (built["spec"]["completionMode"], built["spec"]["completions"], built["spec"]["parallelism"]) == (
        "Indexed",
        4,
        4,
    )


def test_pod_settings_reach_the_pod():
    built = build_job(load("faiss-pvc-to-milvus.yaml"), "vectors", "milvusdm:1")
    template = built["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        {"name": "indexes", "persistentVolumeClaim": {"claimName": "faiss-indexes", "readOnly": True}},
    ]
    assert container["volumeMounts"][1] == {"name": "indexes", "mountPath": "/indexes", "readOnly": True}
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "m6i.2xlarge"}
    expression = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][
        0
    ]
    assert expression["matchExpressions"] == [{"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}]
    assert pod["priorityClassName"] == "batch-low" and built["spec"]["activeDeadlineSeconds"] == 7200
    assert template["metadata"]["labels"]["team"] == "search"
    assert template["metadata"]["labels"]["milvusdm.io/migration"] == "faiss-from-nfs"
    assert template["metadata"]["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    exported = build_job(load("milvus-to-hdf5-pvc.yaml"), "vectors", "milvusdm:1")["spec"]["template"]["spec"]
    assert exported["tolerations"][0]["key"] == "dedicated" and exported["imagePullSecrets"] == [
        {"name": "registry-credentials"}
    ]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy.internal:3128"} in exported["containers"][0]["env"]
    assert "affinity" not in exported and "nodeSelector" not in exported


def test_pod_settings_that_would_break_the_runner_are_refused():
    document = yaml.safe_load((REPO / "examples" / "faiss-to-milvus.yaml").read_text())
    clash = copy.deepcopy(document)
    clash["spec"]["job"]["env"] = [{"name": "MILVUSDM_TARGET_PASSWORD", "value": "x"}]
    with pytest.raises(InputError, match=r"spec\.job\.env sets MILVUSDM_TARGET_PASSWORD"):
        build_job(spec.parse(clash), "vectors", "milvusdm:1")
    for job in (
        {"volumes": [{"name": "tmp", "emptyDir": {}}]},
        {"volumeMounts": [{"name": "x", "mountPath": "/tmp/"}]},
    ):
        reserved = copy.deepcopy(document)
        reserved["spec"]["job"].update(job)
        with pytest.raises(InputError, match=r"reserved|scratch"):
            spec.parse(reserved)


def test_tls_secrets_are_mounted_read_only_where_the_runner_looks():
    pod = build_job(load("milvus-to-milvus.yaml"), "vectors", "milvusdm:1")["spec"]["template"]["spec"]
    assert {"name": "milvusdm-tls-source", "secret": {"secretName": "prod-milvus-client-tls"}} in pod["volumes"]
    assert {"name": "milvusdm-tls-target", "secret": {"secretName": "dr-milvus-ca"}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "milvusdm-tls-source", "mountPath": "/etc/milvusdm/tls/source", "readOnly": True} in mounts
    assert {"name": "milvusdm-tls-target", "mountPath": "/etc/milvusdm/tls/target", "readOnly": True} in mounts


def test_tls_files_come_from_the_mounted_secret(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "TLS_MOUNT", str(tmp_path))
    folder = tmp_path / "source"
    folder.mkdir()
    one_way = spec.TlsSettings(secret_name="ca-only")
    assert one_way.files("source") == (str(folder / "ca.crt"), None, None)
    (folder / "tls.crt").touch()
    (folder / "tls.key").touch()
    assert one_way.files("source") == tuple(str(folder / f) for f in ("ca.crt", "tls.crt", "tls.key"))
    assert spec.TlsSettings(ca_file="/x/ca.pem", secret_name="s").files("source") == ("/x/ca.pem", None, None)
    with pytest.raises(ValueError, match="certFile and keyFile together"):
        spec.TlsSettings(cert_file="/c.pem")


def test_metrics_rate_and_reconcile_errors():
    from milvusdm_operator import metrics

    assert metrics.rate(None, metrics.Report(10, 100.0)) is None
    assert metrics.rate(metrics.Report(10, 100.0), metrics.Report(50, 102.0)) == 20.0
    assert metrics.rate(metrics.Report(10, 100.0), metrics.Report(50, 100.0)) is None  # same instant
    assert metrics.rate(metrics.Report(50, 100.0), metrics.Report(10, 102.0)) is None  # a restarted count

    @metrics.counted("broken")
    def broken(**_):
        raise RuntimeError("API down")

    def errors() -> float:
        return metrics.REGISTRY.get_sample_value("milvusdm_reconcile_errors_total", {"handler": "broken"}) or 0

    before = errors()
    with pytest.raises(RuntimeError):
        broken(name="x")
    assert errors() == before + 1


def test_job_names_stay_distinct_and_within_63_characters():
    from milvusdm_operator.jobs import prune_job_name

    runs = [f"nightly-export-of-the-products-catalogue-{stamp}" for stamp in ("20261128t030000z", "20261128t031000z")]
    names = [f(run) for run in runs for f in (job_name, prune_job_name)]
    assert len(set(names)) == 4 and all(len(n) <= 63 and n[-1].isalnum() for n in names)
    assert all(n.endswith(run[-16:]) for n, run in zip(names, [runs[0]] * 2 + [runs[1]] * 2, strict=True))
    assert job_name("short") == "mmig-short" and prune_job_name("short") == "prune-short"

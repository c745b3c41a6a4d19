"""Every environment variable milvusdm reads or sets, named once.

The operator sets some of them on the runner's Job (credentials from Secrets, the status
interval), Kubernetes sets others (``JOB_COMPLETION_INDEX``), and a local run may export the
credential variables itself. Nothing else in the project spells these names.
"""

from __future__ import annotations

import os
import socket
from typing import Literal

Role = Literal["source", "target"]
Credential = Literal["TOKEN", "USER", "PASSWORD"]

KUBE_API = "MILVUSDM_KUBE_API"  # another API server than in-cluster/kubeconfig (tests, port-forwards)
RUNNER_IMAGE = "MILVUSDM_RUNNER_IMAGE"  # the operator's default runner image
STATUS_INTERVAL = "MILVUSDM_STATUS_INTERVAL"  # seconds between a runner's progress patches
LEASE_SECONDS = "MILVUSDM_LEASE_SECONDS"  # a shard's lease in the status (default: 3 status intervals, ≥ 30)
POD_NAME = "POD_NAME"  # set from the downward API on the operator's Jobs: the lease's holder
HOSTNAME = "HOSTNAME"  # the holder when POD_NAME is not set (a pod's hostname is its name)
STATE_DIR = "MILVUSDM_STATE_DIR"  # the CLI's --state folder for checkpoints
COMPLETION_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job: the shard
META_PASSWORD = "MILVUSDM_META_PASSWORD"  # source.milvus1x: a Milvus 1.x MySQL meta database's password
GRPC_VERBOSITY = "GRPC_VERBOSITY"  # set by the CLI: gRPC's own stderr lines would break the one-line errors
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"  # S3 credentials, read by boto3's standard chain
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"


def credential(role: Role, kind: Credential) -> str:
    """``MILVUSDM_SOURCE_TOKEN``, ``MILVUSDM_TARGET_PASSWORD``…: a Milvus login from a Secret."""
    return f"MILVUSDM_{role.upper()}_{kind}"


def quiet_grpc(verbose: bool) -> None:
    """gRPC core logs TLS handshake failures to stderr itself; a one-line error says it better."""
    os.environ.setdefault(GRPC_VERBOSITY, "DEBUG" if verbose else "NONE")


def get(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def shard_index() -> int:
    return int(os.environ.get(COMPLETION_INDEX, "0"))


def status_interval() -> float:
    return float(os.environ.get(STATUS_INTERVAL, "1"))


def lease_seconds() -> int:
    """How long a runner's lease on its shard lasts without a renewal."""
    if seconds := os.environ.get(LEASE_SECONDS):
        return max(1, round(float(seconds)))
    return max(30, round(3 * status_interval()))


def holder() -> str:
    """Who holds a lease: the pod's name."""
    return os.environ.get(POD_NAME) or os.environ.get(HOSTNAME) or socket.gethostname()

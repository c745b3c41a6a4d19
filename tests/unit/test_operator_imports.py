"""Starting the operator loads no engine: not pymilvus, numpy or any source."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("pymilvus", "numpy", "h5py", "faiss", "boto3", "milvusdm.engine", "milvusdm.sources", "milvusdm.sinks")


def test_operator_imports_no_engine():
    code = "import json, sys; import milvusdm_operator.handlers; print(json.dumps(sorted(sys.modules)))"
    path = os.pathsep.join([str(REPO / "runner"), str(REPO / "operator")])
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert "kopf" in loaded and "milvusdm.kube" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}

"""The README's two commands are the ones that CI and users actually run."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from pymilvus import MilvusClient

from tests.conftest import REPO

QUICK_START = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/milvusdm run -f "


def command_after(marker: str, text: str) -> str:
    lines = text.splitlines()
    return lines[lines.index(marker) + 1].strip()


def quick_start() -> str:
    readme = (REPO / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith(QUICK_START)]
    return line


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = command_after("# test-command (keep identical to the README's)", (REPO / ".ci/run").read_text())
    assert f"\n{ci}\n" in readme


@pytest.mark.slow
def test_quick_start_runs_as_written_on_a_fresh_checkout(tmp_path):
    """The README's first command, verbatim, in a copy of the repository with no venv: a new user's
    machine. Then the collection it reports is really in ./milvusdm.db."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    checkout = tmp_path / "milvusdm"
    for name in files:
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    done = subprocess.run(quick_start(), shell=True, cwd=checkout, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sample-to-lite: copied 2000 rows" in done.stdout, done.stdout
    client = MilvusClient(str(checkout / "milvusdm.db"))
    try:
        client.load_collection("sample")  # Lite keeps data across processes, not the loaded state
        assert client.query("sample", filter="id >= 0", output_fields=["count(*)"])[0]["count(*)"] == 2000
    finally:
        client.close()

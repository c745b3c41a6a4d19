"""The repository root on PYTHONPATH must not shadow the standard library's ``operator``."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_stdlib_operator_survives_repo_root_on_pythonpath():
    code = "import operator, collections; print(operator.itemgetter(1)([0, 'stdlib']), operator.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("stdlib ")
    assert str(REPO) not in result.stdout


def test_source_roots_are_not_packages():
    assert not (REPO / "operator" / "__init__.py").exists()
    assert not (REPO / "runner" / "__init__.py").exists()

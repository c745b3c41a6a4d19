"""The README's two commands are the ones that CI and users actually run."""

from tests.conftest import REPO


def command_after(marker: str, text: str) -> str:
    lines = text.splitlines()
    return lines[lines.index(marker) + 1].strip()


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = command_after("# test-command (keep identical to the README's)", (REPO / ".ci/run").read_text())
    assert f"\n{ci}\n" in readme


def test_quick_start_manifest_exists():
    readme = (REPO / "README.md").read_text()
    assert "milvusdm run -f examples/hdf5-to-milvus-lite.yaml" in readme
    assert (REPO / "examples/hdf5-to-milvus-lite.yaml").is_file()

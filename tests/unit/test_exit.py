"""The command ends without the interpreter's teardown, but with everything an exit must do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ended(tmp_path: Path, before: str) -> subprocess.CompletedProcess[str]:
    """``milvusdm run`` of a missing manifest (an input error), after ``before`` ran."""
    script = textwrap.dedent(
        f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from milvusdm import cli
        atexit.register(lambda: Path({str(tmp_path / "atexit")!r}).write_text("ran"))
        sys.stdout.write("buffered, not flushed")
        {before}
        sys.argv = ["milvusdm", "run", "-f", {str(tmp_path / "missing.yaml")!r}]
        cli.main()
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "runner")},
        timeout=60,
    )


def test_exit_runs_atexit_flushes_output_and_keeps_the_status(tmp_path):
    done = ended(tmp_path, "")
    assert done.returncode == 2, done.stderr  # an input error's status
    assert done.stdout == "buffered, not flushed"
    assert "cannot read manifest" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_thread_still_running_is_waited_for_and_an_idle_pool_wound_down(tmp_path):
    thread = f"Path({str(tmp_path / 'thread')!r}).write_text('done')"
    done = ended(
        tmp_path,
        "import concurrent.futures; concurrent.futures.ThreadPoolExecutor(1).submit(int); "
        f"threading.Thread(target=lambda: (time.sleep(0.3), {thread})).start()",
    )
    assert done.returncode == 2 and done.stdout == "buffered, not flushed", done.stderr
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"

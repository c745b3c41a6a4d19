"""Killing a run at a chosen point, for resume tests and the kill-point script."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "milvusdm"]


def run_until_killed(manifest: Path, state: Path, name: str, min_position: int, timeout: float = 300) -> int:
    """Start ``milvusdm run``; SIGKILL it once its checkpoint passes ``min_position``.

    Returns the checkpoint position at the kill; raises if the run ended first.
    """
    command = ["run", "-f", str(manifest), "--state", str(state), "-q"]
    return kill_when(command, state / f"{name}.json", min_position, timeout)


def kill_when(arguments: list[str], checkpoint: Path, min_position: int, timeout: float = 300) -> int:
    """Start ``milvusdm ARGUMENTS``; SIGKILL it once ``checkpoint`` passes ``min_position``."""
    child = subprocess.Popen([*CLI, *arguments], stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and child.poll() is None:
            try:
                position = int(json.loads(checkpoint.read_text())["position"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                position = -1
            if position >= min_position:
                child.send_signal(signal.SIGKILL)
                child.wait()
                return position
            time.sleep(0.002)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    raise RuntimeError(
        f"run ended before row {min_position}: {child.stderr.read().decode()[-500:] if child.stderr else ''}"
    )


def resume(manifest: Path, state: Path) -> dict[str, Any]:
    """``milvusdm run --resume``; returns its JSON summary."""
    done = subprocess.run(
        [*CLI, "run", "-f", str(manifest), "--state", str(state), "--resume", "-q", "--json"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"resume failed ({done.returncode}): {done.stderr[-500:]}")
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary

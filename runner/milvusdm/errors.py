"""Errors users see as one line: what is wrong, and what to do about it.

The exit code tells a Job's podFailurePolicy whether a retry can help.
"""

from __future__ import annotations


class MigrationError(Exception):
    """A failure with a message for people and an exit code for machines."""

    exit_code = 1
    reason = "MigrationFailed"
    phase = ""  # where the run was: prepare, keys, copy, finish or verify (set by the engine)

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem)

    def __str__(self) -> str:
        """The one line users see: the problem, then the fix (``fix`` may grow after init)."""
        return f"{self.problem}; fix: {self.fix}" if self.fix else self.problem


class InputError(MigrationError):
    """Bad manifest, source or target: retrying the same run cannot help."""

    exit_code = 2
    reason = "InvalidInput"


class TransientError(MigrationError):
    """The server went away or timed out; a retry (or ``--resume``) may succeed."""

    exit_code = 3
    reason = "Unavailable"


class VerificationError(MigrationError):
    """The target does not hold what the source had."""

    exit_code = 4
    reason = "VerificationFailed"


class LeaseHeld(MigrationError):
    """Another pod is copying this shard (its lease in the status is fresh): the Job retries this
    pod later (backoff 10 s, 20 s, 40 s…), and the retry takes over once that lease expires."""

    exit_code = 5
    reason = "LeaseHeld"


class LeaseLost(LeaseHeld):
    """This pod's lease was taken over (or could not be renewed in time): it stops before
    committing more, leaving the shard to the pod that holds it now."""

    reason = "LeaseLost"


class Interrupted(MigrationError):
    """Stopped by Ctrl-C or SIGTERM (a suspended Job's pods get SIGTERM); the checkpoint holds."""

    exit_code = 130
    reason = "Interrupted"

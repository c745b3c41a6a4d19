"""milvusdm: move vectors into, out of and between Milvus 2.x collections.

The public API, for programs that run migrations themselves::

    import milvusdm

    migration = milvusdm.load("migration.yaml")
    summary = milvusdm.run(migration)
    print(summary.line())
    print(milvusdm.verify(migration, mode="full"))

Names are imported on first use, so ``import milvusdm`` (and the operator, which imports
only the spec) stays light: pymilvus, numpy and the sources load with the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "milvusdm.spec",
    "parse": "milvusdm.spec",
    "MilvusMigration": "milvusdm.spec",
    "run": "milvusdm.engine",
    "Summary": "milvusdm.engine",
    "Observer": "milvusdm.engine",
    "MigrationError": "milvusdm.errors",
    "InputError": "milvusdm.errors",
    "TransientError": "milvusdm.errors",
    "VerificationError": "milvusdm.errors",
    "Interrupted": "milvusdm.errors",
}
__all__ = [
    "InputError",
    "Interrupted",
    "MigrationError",
    "MilvusMigration",
    "Observer",
    "Summary",
    "TransientError",
    "VerificationError",
    "__version__",
    "load",
    "parse",
    "run",
    "verify",
]

if TYPE_CHECKING:
    from milvusdm.engine import Observer, Summary, run
    from milvusdm.errors import InputError, Interrupted, MigrationError, TransientError, VerificationError
    from milvusdm.spec import MilvusMigration, load, parse


def verify(migration: MilvusMigration, mode: str | None = None) -> str:
    """Check an existing target against the migration's source, copying nothing (``milvusdm verify``):
    returns what was proven, or raises VerificationError. ``mode``: default the manifest's ``verify``."""
    from milvusdm.engine import check

    return check(migration, mode)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'milvusdm' has no attribute {name!r}")

"""``milvusdm prune-output``: delete the output of a scheduled run that fell beyond ``keep``.

It runs in a Job built from the run's own settings (its volumes, credentials and service
account), because the operator reads no Secrets and mounts no volumes. Only the folder or
prefix ``schedule.run_output`` allows is touched; output already gone counts as deleted, and the
folder or prefix is looked at again afterwards, so success means nothing of it is left.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from milvusdm.errors import InputError, TransientError
from milvusdm.schedule import run_output
from milvusdm.spec import MilvusMigration
from milvusdm.storage import ObjectStore, is_s3


def prune(migration: MilvusMigration) -> tuple[str, int]:
    """Delete the run's output folder or prefix; returns it and how many files it held."""
    name = migration.metadata.name
    output = run_output(name, migration.spec)
    if output is None:
        raise InputError(f"{name} writes to Milvus: it has no files to delete", "drop its collection in Milvus")
    if is_s3(output):
        store = ObjectStore(migration.spec.s3)
        deleted = store.delete_prefix(output)
        left = bool(store.keys(output))
    else:
        folder = Path(output)
        deleted = sum(1 for path in folder.rglob("*") if not path.is_dir())
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise InputError(
                f"cannot delete {output}: {error.strerror}", "check the volume's mount and permissions"
            ) from None
        left = folder.exists()
    if left:
        raise TransientError(f"{output} still holds files after deleting them", "check what else writes there")
    return output, deleted

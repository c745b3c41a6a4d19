"""The files of a dump: ``<root>/<database>/<collection>/*.h5`` exports and ``dump.json``.

``dump.json`` is written last, so its presence marks a complete dump. Per file it records size,
SHA-256 (checked before a restore writes anything of the collection), a key digest (``keys``)
and a row digest (``digest``), both with ``DUMP_SEED``: a restore's copy keeps the same digest of
the rows it wrote (of keys, or with ``verify: full`` of whole rows) and checks it against the
files' sum, and ``full`` also recomputes each partition's row digest from the target.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from milvusdm.digest import of_rows
from milvusdm.errors import InputError
from milvusdm.spec import Hdf5Source, S3Settings
from milvusdm.storage import ObjectStore, is_s3

MANIFEST = "dump.json"
FORMAT = "milvusdm-dump/1"
HASH_BYTES = 8 << 20
DIGEST_BATCH = 10_000


class Folder:
    """A dump's root, a local folder or an s3:// prefix; paths inside it are relative."""

    def __init__(self, root: str, s3: S3Settings | None) -> None:
        self.root = root.rstrip("/")
        self.s3 = s3
        self.store = ObjectStore(s3) if is_s3(root) else None

    def url(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def exists(self, relative: str) -> bool:
        url = self.url(relative)
        return self.store.exists(url) if self.store else Path(url).exists()

    def read_json(self, relative: str) -> dict[str, Any]:
        url = self.url(relative)
        try:
            raw = self.store.open(url).readall() if self.store else Path(url).read_bytes()
            document: dict[str, Any] = json.loads(raw)
            return document
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"cannot read {url}: {error}", "point --from at a complete dump") from None

    def write_json(self, relative: str, document: dict[str, Any]) -> None:
        text = json.dumps(document, indent=2, ensure_ascii=False)
        if not self.store:
            path = Path(self.url(relative))
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_text(text)
            partial.replace(path)
            return
        with tempfile.TemporaryDirectory() as staging:
            path = Path(staging) / relative.rsplit("/", 1)[-1]
            path.write_text(text)
            self.store.upload(path, self.url(relative))

    def sha256(self, relative: str) -> tuple[int, str]:
        """(size, SHA-256) of a file, streamed."""
        url, digest, size = self.url(relative), hashlib.sha256(), 0
        with self.store.open(url) if self.store else open(url, "rb") as file:
            while chunk := file.read(HASH_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()


def describe_export(folder: Folder, directory: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The schema and per-file records (partition, rows, size, SHA-256, key and row digests) of one
    collection's export in ``directory`` (relative to the dump's root)."""
    from milvusdm.sources.hdf5 import Hdf5Source as Reader

    reader = Reader(Hdf5Source(paths=[folder.url(f"{directory}/*.h5")]), folder.s3)
    try:
        reader.open()
        files = []
        for file in reader.files:
            relative = file.path[len(folder.root) + 1 :]
            ((partition, rows),) = file.partitions
            keys, digest = of_rows(reader.schema, reader.batches(file.offset, file.offset + rows, DIGEST_BATCH))
            size, sha = folder.sha256(relative)
            files.append(
                {
                    "path": relative,
                    "partition": partition,
                    "rows": rows,
                    "size": size,
                    "sha256": sha,
                    "keys": keys.text(),
                    "digest": digest.text(),
                }
            )
        return reader.schema.as_dict(), files
    finally:
        reader.close()


def check_files(folder: Folder, files: list[dict[str, Any]]) -> None:
    """Refuse a collection whose files are not byte for byte the dumped ones."""
    for record in files:
        if not folder.exists(record["path"]):
            raise InputError(f"{folder.url(record['path'])} is missing from the dump", "restore from a complete dump")
        size, sha = folder.sha256(record["path"])
        if (size, sha) != (record["size"], record["sha256"]):
            raise InputError(
                f"{folder.url(record['path'])} fails its checksum (SHA-256 {sha[:12]}…, dump.json says "
                f"{record['sha256'][:12]}…): nothing of this collection was written",
                "copy the file again from the original dump",
            )

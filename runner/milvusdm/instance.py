"""Many collections per run: a manifest with ``source.milvus.collections``, a Milvus 1.x directory
without one ``source.milvus1x.collection``, or a dump on either side becomes one
single-collection migration per collection, run one after another through the
engine, each with its own checkpoint; then aliases, and for dumps ``dump.json``.

A ledger in the state folder records each finished collection, so a resumed run skips those
and resumes the interrupted one from its checkpoint.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from milvusdm import engine
from milvusdm.checkpoint import CheckpointStore, FileCheckpoints, fingerprint
from milvusdm.digest import DUMP_SEED, Digest
from milvusdm.dumps import FORMAT, MANIFEST, Folder, check_files, describe_export
from milvusdm.errors import InputError, VerificationError
from milvusdm.milvus import Connection
from milvusdm.spec import (
    Hdf5Source,
    Hdf5Target,
    Milvus1xSource,
    MilvusEndpoint,
    MilvusMigration,
    MilvusSource,
    MilvusTarget,
    Source,
    Target,
)

log = logging.getLogger("milvusdm.progress")


@contextlib.contextmanager
def _connected(
    endpoint: MilvusEndpoint, database: str, role: Literal["source", "target"] = "source"
) -> Iterator[Connection]:
    milvus = Connection(endpoint.model_copy(update={"database": database}), role)
    try:
        yield milvus
    finally:
        milvus.close()


def split(qualified: str, database: str | None) -> tuple[str | None, str]:
    """'db.name' -> (db, name); 'name' -> (database, name)."""
    db, dot, name = qualified.partition(".")
    return (db, name) if dot else (database, qualified)


def select(
    patterns: Sequence[str], available: Sequence[tuple[str, str]], database: str | None
) -> list[tuple[str, str]]:
    """The (database, collection) pairs matching any pattern, in ``available`` order; an unqualified
    pattern matches in ``database`` (None: in every database). A pattern matching nothing is an error."""
    chosen: set[tuple[str, str]] = set()
    for pattern in patterns:
        db_pattern, name_pattern = split(pattern, database)
        found = {
            (db, name)
            for db, name in available
            if (db_pattern is None or fnmatch.fnmatchcase(db, db_pattern)) and fnmatch.fnmatchcase(name, name_pattern)
        }
        if not found:
            listed = ", ".join(f"{db}.{name}" for db, name in available) or "none"
            raise InputError(
                f"no collection matches {pattern!r} (collections: {listed})", "check the collection patterns"
            )
        chosen |= found
    return [pair for pair in available if pair in chosen]


def renamed(rules: dict[str, str], database: str, name: str, target_database: str | None) -> tuple[str, str]:
    """Where a collection goes: the first matching rule ('src', 'db.src', 'db1.*' with one '*'
    carried over), else its own name; in the rule's database, else ``target_database``, else its own."""
    for pattern, replacement in rules.items():
        subject = f"{database}.{name}" if "." in pattern else name
        if pattern.count("*") > 1:
            raise InputError(f"rename pattern {pattern!r} has more than one '*'", "use at most one '*' per rename rule")
        if "*" in pattern and fnmatch.fnmatchcase(subject, pattern):
            head, _, tail = pattern.partition("*")
            result = replacement.replace("*", subject[len(head) : len(subject) - len(tail)])
        elif pattern == subject:
            result = replacement
        else:
            continue
        db, new = split(result, target_database or database)
        return db or database, new
    return target_database or database, name


@dataclass
class Item:
    """One collection of the run: where from, where to, and its migration."""

    key: str  # database.collection at the source
    migration: MilvusMigration
    entry: dict[str, Any] = field(default_factory=dict)  # dump.json's record (restores), or what a dump records
    rows: int = 0  # about how many rows it holds (from the source's statistics), to plan and report


def balance(sizes: Sequence[int], count: int) -> list[int]:
    """Which of ``count`` workers takes each job: largest first, each to the least loaded worker
    (lowest index on ties), so the workers finish close together."""
    loads, chosen = [0] * count, [0] * len(sizes)
    for job in sorted(range(len(sizes)), key=lambda j: (-sizes[j], j)):
        worker = min(range(count), key=lambda w: (loads[w], w))
        chosen[job], loads[worker] = worker, loads[worker] + sizes[job]
    return chosen


@dataclass
class RunSummary:
    """The whole run, and each collection's own summary."""

    name: str
    source: str
    target: str
    collections: list[engine.Summary] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.collections)

    @property
    def total(self) -> int:
        return sum(s.total for s in self.collections)

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        head = (
            f"{self.name}: {len(self.collections)} collections, {self.rows} rows from {self.source} to "
            f"{self.target} in {self.seconds:.1f}s ({rate:,.0f} rows/s)"
        )
        return "\n".join([head, *(f"  {s.line()}" for s in self.collections)])

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "rows": self.rows,
            "total": self.total,
            "seconds": round(self.seconds, 2),
            "peakRssMb": self.peak_rss_mb,
            "collections": [s.as_dict() for s in self.collections],
        }


class Record(Protocol):
    """The finished collections of a run: ``done`` maps each one's key to its summary and entry."""

    done: dict[str, dict[str, Any]]

    def open(self, resume: bool | None) -> None: ...

    def record(self, key: str, summary: engine.Summary, entry: dict[str, Any]) -> None: ...

    def clear(self) -> None: ...


class Ledger:
    """Finished collections of a run, in one JSON file beside the checkpoints."""

    def __init__(self, state: Path, name: str, fingerprint: str) -> None:
        self.path, self.fingerprint = Path(state) / f"{name}.collections.json", fingerprint
        self.done: dict[str, dict[str, Any]] = {}

    def open(self, resume: bool | None) -> None:
        if resume is None:  # resume if there is something to resume
            resume = self.path.exists()
        if not self.path.exists():
            if resume:
                raise InputError(f"nothing to resume: no record of a run in {self.path}", "run without --resume")
            self._save()  # from the start, so a run killed in its first collection can resume
            return
        saved = json.loads(self.path.read_text())
        if saved["fingerprint"] != self.fingerprint:
            raise InputError(
                f"{self.path} belongs to a run with another source or target",
                f"restore the manifest it was made with, or delete {self.path} to start over",
            )
        if not resume and not saved["done"]:  # none finished: the first one's checkpoint (if any) decides
            self._save()
            return
        if not resume:
            raise InputError(
                f"an interrupted run of this migration finished {len(saved['done'])} collections ({self.path})",
                f"rerun with --resume to continue, or delete {self.path} to start over",
            )
        self.done = saved["done"]

    def record(self, key: str, summary: engine.Summary, entry: dict[str, Any]) -> None:
        self.done[key] = {"summary": asdict(summary), "entry": entry}
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps({"fingerprint": self.fingerprint, "done": self.done}))
        os.replace(partial, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class Plan:
    """The collections of a many-collection manifest, and what happens around each copy."""

    def __init__(self, migration: MilvusMigration) -> None:
        self.migration, self.spec = migration, migration.spec
        (self.source_kind, self.source), (self.target_kind, self.target) = (
            self.spec.source.one_of(),
            self.spec.target.one_of(),
        )
        dump = self.target if self.target_kind == "dump" else self.source if self.source_kind == "dump" else None
        self._folder = Folder(dump.path, self.spec.s3) if dump is not None else None
        self.header: dict[str, Any] = {}
        plans = {"dump": self._from_dump, "milvus1x": self._from_milvus1x, "milvus": self._from_milvus}
        self.items = plans[self.source_kind]()

    @property
    def folder(self) -> Folder:
        assert self._folder is not None, "only dumps have a folder"
        return self._folder

    # -- planning ---------------------------------------------------------------------------

    def _from_milvus(self) -> list[Item]:
        source: MilvusSource = self.source
        available, aliases = [], {}
        milvus = Connection(source.model_copy(update={"database": "default"}), "source")
        try:
            databases = milvus.retry("list databases", milvus.client.list_databases)
            self.header = {"server_version": milvus.retry("read the server version", milvus.client.get_server_version)}
        finally:
            milvus.close()
        for database in databases:
            with _connected(source, database) as milvus:
                available += [
                    (database, name)
                    for name in sorted(milvus.retry("list collections", milvus.client.list_collections))
                ]
        chosen = select(source.collections or [], available, source.database)
        rows: dict[tuple[str, str], int] = {}
        for database in sorted({db for db, _ in chosen}):
            with _connected(source, database) as milvus:
                for db, name in chosen:
                    if db == database:
                        aliases[(db, name)] = sorted(
                            milvus.retry("list aliases", milvus.client.list_aliases, name, db_name=db)["aliases"]
                        )
                        stats = milvus.retry("read the row count", milvus.client.get_collection_stats, name)
                        rows[(db, name)] = int(stats["row_count"])
        if self.target_kind == "dump" and self.folder.exists(MANIFEST) and not self.target.overwrite:
            raise InputError(
                f"{self.folder.url(MANIFEST)} already exists", "set target.dump.overwrite, or choose another path"
            )
        items = []
        for database, name in chosen:
            single = source.model_copy(update={"collection": name, "collections": None, "database": database})
            if self.target_kind == "dump":
                target = Target(
                    hdf5=Hdf5Target(path=self.folder.url(f"{database}/{name}/"), overwrite=self.target.overwrite)
                )
            else:
                target = Target(milvus=self._milvus_target(database, name))
            entry = {"database": database, "name": name, "aliases": aliases[(database, name)]}
            key = f"{database}.{name}"
            items.append(Item(key, self._single(Source(milvus=single), target, key), entry, rows[(database, name)]))
        return items

    def _from_dump(self) -> list[Item]:
        if not self.folder.exists(MANIFEST):
            raise InputError(
                f"{self.folder.url(MANIFEST)} does not exist: the dump is incomplete or not a dump",
                "finish it with milvusdm dump --resume, or point --from at a dump's folder",
            )
        manifest = self.folder.read_json(MANIFEST)
        entries = {(e["database"], e["name"]): e for e in manifest["collections"]}
        chosen = select(self.source.collections or ["*.*"], list(entries), None)
        wanted = dict(self.source.partitions or {})
        items = []
        for database, name in chosen:
            entry = entries[(database, name)]
            parts = wanted.pop(f"{database}.{name}", None) or wanted.pop(name, None)
            files = entry["files"]
            if parts is not None:
                present = [f["partition"] for f in files]
                missing = [p for p in parts if p not in present]
                if missing:
                    raise InputError(
                        f"collection {database}.{name} of the dump has no partition "
                        f"{', '.join(map(repr, missing))} (partitions: {', '.join(present)})",
                        "check the partitions to restore",
                    )
                files = [f for f in files if f["partition"] in parts]
            entry = entry | {"files": files}
            source = Source(hdf5=Hdf5Source(paths=[self.folder.url(f["path"]) for f in files]))
            target = Target(milvus=self._milvus_target(database, name))
            key = f"{database}.{name}"
            items.append(Item(key, self._single(source, target, key), entry, sum(f["rows"] for f in files)))
        if wanted:
            raise InputError(
                f"partitions were chosen for {', '.join(wanted)}, which is not restored",
                "name a restored collection in --partitions",
            )
        return items

    def _from_milvus1x(self) -> list[Item]:
        """Every chosen 1.x collection and its tags, checked against the meta before anything is
        copied; each keeps its name (target.milvus.rename aside) in the target's database."""
        from milvusdm.milvus1x_meta import choose
        from milvusdm.sources.milvus1x import Milvus1xSource as Reader

        source: Milvus1xSource = self.source
        wanted = source.chosen
        reader = Reader(source, self.spec.s3)
        try:
            found = reader.collections()
        finally:
            reader.close()
        chosen = choose(
            found,
            None if wanted is None else [(c.name, c.partitions) for c in wanted],
            source.path,
            "source.milvus1x.collections",
        )
        tags = {c.name: c.partitions for c in wanted or []}
        items = []
        for collection, partitions in chosen:
            name = collection.name
            single = source.model_copy(update={"collection": name, "partitions": tags.get(name), "collections": None})
            if self.target_kind == "milvus":
                target = Target(milvus=self._milvus_target(self.target.database, name))
            else:
                target = self.spec.target
            rows = sum(p.rows for p in partitions)
            items.append(Item(name, self._single(Source(milvus1x=single), target, name), {"name": name}, rows))
        return items

    def _milvus_target(self, database: str, name: str) -> MilvusTarget:
        target: MilvusTarget = self.target
        chosen = target.database if "database" in target.model_fields_set else None
        to_database, to_name = renamed(target.rename, database, name, chosen)
        return target.model_copy(update={"collection": to_name, "database": to_database, "rename": {}})

    def _single(self, source: Source, target: Target, key: str) -> MilvusMigration:
        spec = self.spec.model_copy(update={"source": source, "target": target})
        metadata = self.migration.metadata.model_copy(update={"name": f"{self.migration.metadata.name}.{key}"})
        return self.migration.model_copy(update={"spec": spec, "metadata": metadata})

    def check_unique_targets(self) -> None:
        if self.target_kind != "milvus":
            return
        seen: dict[tuple[str, str], str] = {}
        for item in self.items:
            target = _milvus_target(item)
            where = (target.database, str(target.collection))
            if where in seen:
                raise InputError(
                    f"{seen[where]} and {item.key} would both go to {where[0]}.{where[1]}",
                    "give them different names with rename",
                )
            seen[where] = item.key

    # -- around each copy -------------------------------------------------------------------

    def before(self, item: Item) -> None:
        """What is refused before anything of the collection is written."""
        if self.source_kind == "dump":
            check_files(self.folder, item.entry["files"])
        if self.target_kind == "milvus" and item.entry.get("aliases"):
            self._check_aliases(item)

    def _check_aliases(self, item: Item) -> None:
        """An alias the collection brings that names another collection of the target."""
        from pymilvus import MilvusException

        target = _milvus_target(item)
        if target.mode == "skip":
            return  # an existing collection is left as it is, aliases and all
        with _connected(target, "default", "target") as milvus:
            if target.database not in milvus.retry("list databases", milvus.client.list_databases):
                return  # a database to be created holds no aliases
        with _connected(target, target.database, "target") as milvus:
            for alias in item.entry["aliases"]:
                try:
                    held = milvus.client.describe_alias(alias)["collection_name"]
                except MilvusException:
                    continue  # no such alias yet
                if held != target.collection:
                    raise InputError(
                        f"the alias {alias} of {item.key} already names {target.database}.{held} on the target",
                        f"drop or move that alias on the target, or restore {item.key} under another database",
                    )

    def after(self, item: Item, summary: engine.Summary) -> dict[str, Any]:
        """What the run records for the collection once its rows are in."""
        if self.target_kind == "dump":
            schema, files = describe_export(self.folder, f"{item.entry['database']}/{item.entry['name']}")
            rows = sum(f["rows"] for f in files)
            return item.entry | {"schema": schema, "partitions": schema["partitions"], "rows": rows, "files": files}
        if self.target_kind != "milvus" or self.source_kind == "milvus1x":  # files, or no aliases (1.x had none)
            return item.entry
        if summary.skipped:
            return item.entry  # left as it was, aliases and all
        target = _milvus_target(item)
        with _connected(target, target.database, "target") as milvus:
            present = set(
                milvus.retry("list aliases", milvus.client.list_aliases, target.collection, db_name=target.database)[
                    "aliases"
                ]
            )
            for alias in item.entry.get("aliases", []):
                if alias not in present:
                    milvus.call(f"create the alias {alias}", milvus.client.create_alias, target.collection, alias)
        if self.source_kind == "dump" and self.spec.verify == "full" and target.mode != "append":
            self._verify_digests(item, target)  # appended partitions hold other rows too: the copy's check covers them
        return item.entry

    def proven(self, item: Item) -> Callable[[engine.Summary], str] | None:
        """What the engine checks before it commits a collection: a restore, against dump.json."""
        return functools.partial(self._against_manifest, item) if self.source_kind == "dump" else None

    def _against_manifest(self, item: Item, summary: engine.Summary) -> str:
        """The restored rows against dump.json: their count, and the digest the copy kept of them
        (of keys, or with ``verify: full`` of whole rows; see ``dumps``) against the files' sum."""
        target = _milvus_target(item)
        files, where = item.entry["files"], f"{target.database}.{target.collection}"
        listed = sum(f["rows"] for f in files)
        fix = "the dump changed after it was written: restore from an intact copy of it"
        if summary.total != listed:
            raise VerificationError(
                f"the files restored into {where} hold {summary.total} rows; dump.json lists {listed}", fix
            )
        kind, _, copied = summary.digest.partition("/")
        recorded = {"keys": "keys", "rows": "digest"}.get(kind)
        if recorded is None or any(recorded not in f for f in files):  # verify none or count, or an older dump
            return "; count as in dump.json"
        expected = sum((Digest.parse(f[recorded]) for f in files), Digest())
        if Digest.parse(copied) != expected:
            raise VerificationError(
                f"the rows restored into {where} differ from dump.json's record of their files "
                f"({kind} digest {copied}; dump.json: {expected.text()})",
                fix,
            )
        return f"; count and {kind} digest as in dump.json"

    def _verify_digests(self, item: Item, target: MilvusTarget) -> None:
        """Each restored partition's rows against the digest dump.json recorded for its file."""
        from milvusdm.digest import of_rows
        from milvusdm.sources.milvus import MilvusSource as Reader

        for record in item.entry["files"]:
            spec = MilvusSource.model_validate(
                target.model_dump(include=set(MilvusEndpoint.model_fields))
                | {"collection": target.collection, "partitions": [record["partition"]]}
            )
            reader = Reader(spec)
            try:
                reader.open()
                _, digest = of_rows(reader.schema, reader.batches(0, reader.total, 10_000))
            finally:
                reader.close()
            if (digest.rows, digest.text()) != (record["rows"], record["digest"]):
                raise VerificationError(
                    f"partition {record['partition']!r} of {target.database}.{target.collection} does not match "
                    f"{record['path']} ({digest.rows} rows, digest {digest.text()}; dump.json: {record['rows']} "
                    f"rows, digest {record['digest']})",
                    "inspect the target; rerun with mode overwrite to restore again",
                )

    def finish(self, ledger: Record) -> None:
        if self.target_kind != "dump":
            return
        collections = [ledger.done[item.key]["entry"] for item in self.items]
        self.folder.write_json(
            MANIFEST,
            {
                "format": FORMAT,
                **self.header,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "databases": sorted({c["database"] for c in collections}),
                "collections": collections,
            },
        )


def _milvus_target(item: Item) -> MilvusTarget:
    target = item.migration.spec.target.milvus
    assert target is not None and target.collection is not None, "a collection's migration names its target"
    return target


class Stores(Protocol):
    """Where a run keeps its ledger and each collection's checkpoint: files locally, the
    MilvusMigration's status (one key per collection) in the operator's Job."""

    @property
    def ledger(self) -> Record: ...

    def claim(self, items: list[Item]) -> list[Item]:
        """The collections this process copies (in a Job of several pods, its share)."""

    def checkpoints(self, item: Item) -> CheckpointStore: ...

    def observers(self, item: Item) -> list[engine.Observer]: ...


class FileStores:
    def __init__(self, state: Path, migration: MilvusMigration) -> None:
        self.state = Path(state)
        self.ledger = Ledger(self.state, migration.metadata.name, fingerprint(migration))

    def claim(self, items: list[Item]) -> list[Item]:
        return items

    def checkpoints(self, item: Item) -> CheckpointStore:
        return FileCheckpoints(self.state, item.migration.metadata.name)

    def observers(self, item: Item) -> list[engine.Observer]:
        return []


def check(migration: MilvusMigration, mode: str | None = None) -> list[tuple[str, str]]:
    """``milvusdm verify`` of a many-collection manifest: each planned collection's target
    against its source, copying nothing; (its migration's name, the result) each."""
    if migration.spec.target.dump is not None:
        raise InputError(
            "milvusdm verify checks targets of collections, not a dump (dump.json holds its checks)",
            "verify a restore of it instead: milvusdm restore --verify full",
        )
    return [(item.migration.metadata.name, engine.check(item.migration, mode)) for item in Plan(migration).items]


def run(
    migration: MilvusMigration,
    observers: Sequence[engine.Observer] = (),
    *,
    state: Path | None = None,
    stores: Stores | None = None,
    resume: bool | None = False,
) -> RunSummary:
    """Run every collection of a many-collection manifest, skipping those a resumed run finished."""
    began = time.monotonic()
    plan = Plan(migration)
    plan.check_unique_targets()
    stores = stores or FileStores(state or Path(".milvusdm"), migration)
    ledger = stores.ledger
    ledger.open(resume)
    (source_kind, source), (target_kind, target) = migration.spec.source.one_of(), migration.spec.target.one_of()
    summary = RunSummary(
        migration.metadata.name,
        f"{source_kind}:{getattr(source, 'uri', None) or source.path}",
        f"{target_kind}:{getattr(target, 'uri', None) or target.path}",
    )
    mine = stores.claim(plan.items)
    planned, copied = sum(item.rows for item in mine), 0
    for number, item in enumerate(mine, 1):
        done = ledger.done.get(item.key)
        what = "finished before" if done is not None else f"~{item.rows:,} rows"
        log.info(
            "collection %d of %d: %s (%s; run: %s of ~%s rows)",
            number,
            len(mine),
            item.key,
            what,
            f"{copied:,}",
            f"{planned:,}",
        )
        if done is None:
            plan.before(item)
            result = engine.run(
                item.migration,
                [*observers, *stores.observers(item)],
                checkpoints=stores.checkpoints(item),
                resume=False if resume is False else None,
                seed=DUMP_SEED if plan.source_kind == "dump" else None,  # digests comparable with dump.json's
                proven=plan.proven(item),
            )
            ledger.record(item.key, result, plan.after(item, result))
        else:
            result = engine.Summary(**done["summary"])
            if done.get("entry") is None:  # finished, but what comes after may not have been
                ledger.record(item.key, result, plan.after(item, result))
        summary.collections.append(result)
        copied += result.rows
    plan.finish(ledger)
    ledger.clear()
    summary.seconds = time.monotonic() - began
    summary.peak_rss_mb = round(engine.peak_rss_mb(), 1)
    return summary

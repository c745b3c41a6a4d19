"""The `MilvusMigration` manifest: one typed model for the CLI, the runner in a Job and the operator.

The CRD's openAPIV3Schema is generated from these classes (``milvusdm crd``), so the
two cannot drift apart. Field names are camelCase in manifests, snake_case in Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from milvusdm import env
from milvusdm.checkpoint import ShardStatus
from milvusdm.errors import InputError

API_VERSION = "milvusdm.io/v1alpha1"
KIND = "MilvusMigration"

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")]
# A collection, optionally in a database ("db.name"), with shell wildcards ("*", "docs_*", "db2.*")
CollectionPattern = Annotated[str, Field(pattern=r"^([A-Za-z0-9_*?\[\]!]+\.)?[A-Za-z0-9_*?\[\]!]+$")]
Metric = Literal["L2", "IP", "COSINE", "HAMMING", "JACCARD"]


def exactly_one(*names: str) -> dict[str, Any]:
    """A CEL rule for the CRD mirroring the model's own one-of check."""
    has = ", ".join(f"has(self.{n})" for n in names)
    return {
        "x-kubernetes-validations": [
            {"rule": f"[{has}].filter(x, x).size() == 1", "message": f"set exactly one of: {', '.join(names)}"}
        ]
    }


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    def set_fields(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    def one_of(self) -> tuple[str, Any]:
        """(name, value) of the single alternative set on a one-of model."""
        (name,) = self.set_fields()
        return name, getattr(self, name)


class OneOf(Model):
    """A choice: exactly one of ``choices`` (default: every field) is set, in the model and (CEL)
    in the CRD."""

    choices: ClassVar[tuple[str, ...]] = ()

    model_config = ConfigDict(
        json_schema_extra=lambda schema, cls: schema.update(exactly_one(*(cls.choices or cls.model_fields)))
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> OneOf:
        names = type(self).choices or tuple(type(self).model_fields)
        if sum(getattr(self, name) is not None for name in names) != 1:
            raise ValueError(f"set exactly one of: {', '.join(names)}")
        return self


class SecretKeyRef(Model):
    """A key of a Kubernetes Secret in the migration's namespace."""

    name: str
    key: str


TLS_MOUNT = "/etc/milvusdm/tls"  # where the operator mounts tls.secretName, one folder per role


class TlsSettings(Model):
    """TLS to a Milvus server, one-way (caFile) or mutual (also certFile and keyFile). In a cluster,
    ``secretName`` names a Secret with cert-manager's keys (ca.crt, tls.crt, tls.key) that the
    operator mounts read-only into the runner; the operator itself never reads it."""

    ca_file: str | None = Field(None, description="CA bundle (PEM) that signed the server's certificate.")
    cert_file: str | None = Field(None, description="Client certificate (PEM), for mutual TLS.")
    key_file: str | None = Field(None, description="Client private key (PEM), for mutual TLS.")
    server_name: str | None = Field(None, description="Name to check in the server's certificate; default: the host.")
    secret_name: str | None = Field(None, description="Secret with ca.crt (and tls.crt, tls.key for mutual TLS).")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.certFile) == has(self.keyFile)", "message": "set certFile and keyFile together"}
            ]
        }
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set certFile and keyFile together")
        return self

    def files(self, role: env.Role) -> tuple[str | None, str | None, str | None]:
        """(CA, certificate, key) paths: the given files, else the mounted Secret's (cert and key
        only where the Secret has them)."""
        if self.secret_name is None or self.ca_file or self.cert_file:
            return self.ca_file, self.cert_file, self.key_file
        folder = Path(TLS_MOUNT) / role
        cert, key = folder / "tls.crt", folder / "tls.key"
        pair = (str(cert), str(key)) if cert.exists() and key.exists() else (None, None)
        return str(folder / "ca.crt"), *pair


class MilvusEndpoint(Model):
    """Where a Milvus is and how to log in. Secrets never need to be written in the manifest:
    ``tokenSecretRef``/``passwordSecretRef`` are passed by the operator as environment
    variables (``env.credential``: ``MILVUSDM_SOURCE_TOKEN``, ``MILVUSDM_TARGET_PASSWORD``…),
    which a local run may set too."""

    uri: str = Field(
        "milvusdm.db",
        description="A local *.db path for embedded Milvus Lite, or http(s)://host:port for a server.",
    )
    token: str | None = Field(None, description="Plain-text token; prefer tokenSecretRef or the environment.")
    token_secret_ref: SecretKeyRef | None = None
    user: str | None = None
    password: str | None = Field(None, description="Plain-text password; prefer passwordSecretRef.")
    password_secret_ref: SecretKeyRef | None = None
    timeout_seconds: float = Field(30, gt=0, description="Connection and per-request timeout.")
    database: Name = Field("default", description="The database; a target creates it if it is missing.")
    tls: TlsSettings | None = Field(None, description="TLS or mutual TLS to the server (https:// implies TLS).")

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))

    def secret_variables(self, role: env.Role) -> list[tuple[SecretKeyRef | None, str]]:
        """The Secret references and the variables the runner reads them from."""
        return [
            (self.token_secret_ref, env.credential(role, "TOKEN")),
            (self.password_secret_ref, env.credential(role, "PASSWORD")),
        ]

    def credentials(self, role: env.Role) -> dict[str, str]:
        """Token/user/password for pymilvus: the manifest first, then the environment."""
        token = self.token or env.get(env.credential(role, "TOKEN"))
        user = self.user or env.get(env.credential(role, "USER"))
        password = self.password or env.get(env.credential(role, "PASSWORD"))
        for (ref, var), value in zip(self.secret_variables(role), (token, password), strict=True):
            if ref is not None and value is None:
                raise InputError(
                    f"{role} credentials come from Secret {ref.name!r} key {ref.key!r}, but {var} is not set",
                    f"export {var} when running outside the operator",
                )
        found = {"token": token, "user": user, "password": password}
        return {key: value for key, value in found.items() if value}


class S3Settings(Model):
    """How to reach object storage for every ``s3://`` path of the migration: AWS S3, MinIO, Ceph,
    or GCS through its S3 API. Credentials come from the standard AWS chain (environment,
    shared config, instance or pod roles) unless Secret references are given; the operator
    then passes them to the Job as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""

    endpoint: str | None = Field(None, description="e.g. http://minio.storage:9000; default: AWS for the region.")
    region: str | None = None
    path_style: bool = Field(False, description="Path-style addressing (MinIO, Ceph, most self-hosted stores).")
    verify_tls: bool = True
    access_key_id_secret_ref: SecretKeyRef | None = None
    secret_access_key_secret_ref: SecretKeyRef | None = None
    block_size_mb: int = Field(
        16, ge=1, le=1024, description="MiB per ranged GET when streaming HDF5 files; two blocks are cached."
    )

    def secret_variables(self) -> list[tuple[SecretKeyRef | None, str]]:
        return [
            (self.access_key_id_secret_ref, env.AWS_ACCESS_KEY_ID),
            (self.secret_access_key_secret_ref, env.AWS_SECRET_ACCESS_KEY),
        ]

    def check_credentials(self) -> None:
        """Secret references are read from the environment; say so when it lacks them."""
        for ref, variable in self.secret_variables():
            if ref is not None and not env.get(variable):
                raise InputError(
                    f"S3 credentials come from Secret {ref.name!r} key {ref.key!r}, but {variable} is not set",
                    f"export {variable} when running outside the operator",
                )


class Files(OneOf):
    """Files named one by one or by patterns; a base for file sources."""

    choices = ("path", "paths")

    path: str | None = Field(None, description="One file.")
    paths: list[str] | None = Field(
        None, min_length=1, description="Files, glob patterns or s3:// prefixes ending in '/', read in order."
    )

    @property
    def patterns(self) -> list[str]:
        return [self.path] if self.path is not None else list(self.paths or [])


class Hdf5Source(Files):
    """HDF5 files: MilvusDM's layout (``embeddings`` + ``ids``) or ann-benchmarks' (``train``).
    Paths may be ``s3://bucket/key``; files there are streamed with ranged reads."""

    vectors: str | None = Field(None, description="Vector dataset; default 'embeddings' if present, else 'train'.")
    ids: str | None = Field(None, description="Id dataset; default 'ids' if present, else 0..N-1 across files.")
    fields: dict[str, Name] = Field(default_factory=dict, description="Extra 1-D datasets -> scalar field names.")


class ParquetSource(Files):
    """Parquet files: milvusdm's and Milvus' bulk-import layout, VectorDBBench's (``id``, ``emb``),
    Pinecone's (``id``, ``values``, ``metadata``) or any table with one vector column. Paths may
    be ``s3://bucket/key``; files there are read row group by row group with ranged reads."""

    vectors: str | None = Field(
        None, description="Vector column; default: the only list column of floats or fixed-size binary."
    )
    ids: str | None = Field(
        None, description="Id column; default 'id' if present, else 'pk', else 0..N-1 across files."
    )
    fields: list[str] | None = Field(None, description="Columns to copy as fields; default every other column.")


class FaissSource(Model):
    """A file written by ``faiss.write_index``; an ``s3://`` object is downloaded to a temporary
    file first (Faiss memory-maps files, it cannot stream)."""

    path: str


class MilvusSource(MilvusEndpoint, OneOf):
    """A collection on a Milvus 2.x server or in Milvus Lite, or (``collections``) every
    collection matching the patterns, each copied with its own schema and checkpoint."""

    choices = ("collection", "collections")

    collection: Name | None = None
    collections: list[CollectionPattern] | None = Field(
        None,
        min_length=1,
        description="Names or patterns: '*', 'docs_*', 'db2.*', 'db.name'; unqualified ones are in `database`.",
    )
    partitions: list[Name] | None = None
    filter: str | None = None
    fields: list[Name] | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> MilvusSource:
        if self.collections is not None and (self.partitions or self.filter or self.fields):
            raise ValueError("partitions, filter and fields apply to one collection: use collection")
        return self


class DumpSource(Model):
    """A folder or s3:// prefix written by ``milvusdm dump`` (or a ``target.dump``), restored
    collection by collection after each one's files pass their SHA-256 check."""

    path: str
    collections: list[CollectionPattern] | None = Field(None, min_length=1, description="Default: every collection.")
    partitions: dict[str, list[Name]] | None = Field(
        None, description="Collection ('db.name' or 'name') -> the partitions to restore; default: all."
    )


class MysqlMeta(Model):
    """A Milvus 1.x MySQL meta database (the ``db_config.backend_url`` of its server_config.yaml)."""

    host: str
    port: int = Field(3306, ge=1, le=65535)
    user: str = "root"
    password: str | None = Field(None, description="Plain-text password; prefer passwordSecretRef.")
    password_secret_ref: SecretKeyRef | None = Field(None, description=f"Passed to the runner as {env.META_PASSWORD}.")
    database: str = "milvus"

    def secret_variables(self) -> list[tuple[SecretKeyRef | None, str]]:
        return [(self.password_secret_ref, env.META_PASSWORD)]

    def secret(self) -> str | None:
        """The password: the manifest first, then the environment."""
        password = self.password or env.get(env.META_PASSWORD)
        if self.password_secret_ref is not None and password is None:
            ref = self.password_secret_ref
            raise InputError(
                f"the meta database password comes from Secret {ref.name!r} key {ref.key!r}, but {env.META_PASSWORD} "
                "is not set",
                f"export {env.META_PASSWORD} when running outside the operator",
            )
        return password


class Milvus1xMeta(OneOf):
    """Where the directory's metadata is: its SQLite file, or a MySQL database."""

    sqlite: str | None = Field(None, description="The SQLite meta file; default: db/meta.sqlite under path.")
    mysql: MysqlMeta | None = None


class Milvus1xCollection(Model):
    """One 1.x collection of ``collections``, and the partition tags to copy from it."""

    name: str = Field(description="The 1.x collection; the target keeps its name unless target.milvus.rename says.")
    partitions: list[str] | None = Field(
        None, min_length=1, description="1.x partition tags ('_default': the default partition); default all."
    )


Milvus1xCollections = Annotated[
    list[Milvus1xCollection],
    Field(min_length=1, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
]


class Milvus1xSource(Model):
    """A Milvus 0.10.x/1.x data directory (the server's ``storage.path``), read file by file:
    a local volume (read-only is fine) or an ``s3://`` prefix holding a copy of it. One
    ``collection`` (with ``partitions``), or ``collections``, or neither: every live collection."""

    path: str = Field(description="The data directory, holding db/tables/ (and db/meta.sqlite for SQLite meta).")
    meta: Milvus1xMeta | None = Field(None, description="Default: sqlite db/meta.sqlite under path.")
    collection: str | None = Field(
        None, description="One 1.x collection; the target names it (target.milvus.collection)."
    )
    partitions: list[str] | None = Field(
        None,
        min_length=1,
        description="With collection: 1.x partition tags to copy ('_default': the default partition); default all.",
    )
    collections: Milvus1xCollections | None = Field(
        None,
        description="Several collections, each {name, partitions}, copied one after another under their own "
        "names; default (no collection either): every live collection.",
    )
    duplicates: Literal["refuse", "keepFirst"] = Field(
        "refuse",
        description="1.x allowed repeated ids: refuse them, or keep each id's first copy (in partition, "
        "segment and row order) and drop the others.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.collection) && has(self.collections))",
                    "message": "set collection (one) or collections (several), not both",
                },
                {
                    "rule": "!has(self.partitions) || has(self.collection)",
                    "message": "partitions go with collection; in collections, each entry has its own partitions",
                },
            ]
        }
    )

    @model_validator(mode="after")
    def _one_way(self) -> Milvus1xSource:
        if self.collection is not None and self.collections is not None:
            raise ValueError("set collection (one) or collections (several), not both")
        if self.partitions is not None and self.collection is None:
            raise ValueError("partitions go with collection; in collections, each entry has its own partitions")
        names = [c.name for c in self.collections or []]
        if len(set(names)) != len(names):
            raise ValueError(f"collections names {', '.join(sorted({n for n in names if names.count(n) > 1}))} twice")
        return self

    @property
    def many(self) -> bool:
        """Not one ``collection``: the run is planned collection by collection (see ``instance``)."""
        return self.collection is None

    @property
    def chosen(self) -> list[Milvus1xCollection] | None:
        """The collections asked for, as one list (``collection`` + ``partitions`` is a list of
        one); None: every live collection."""
        if self.collection is not None:
            return [Milvus1xCollection(name=self.collection, partitions=self.partitions)]
        return list(self.collections) if self.collections is not None else None


class Source(OneOf):
    hdf5: Hdf5Source | None = None
    faiss: FaissSource | None = None
    milvus: MilvusSource | None = None
    milvus1x: Milvus1xSource | None = Field(None, alias="milvus1x")  # not camelCased to milvus1X
    parquet: ParquetSource | None = None
    dump: DumpSource | None = None

    @property
    def many(self) -> bool:
        """Several collections: the run is planned collection by collection (see ``instance``)."""
        return (
            self.dump is not None
            or (self.milvus is not None and self.milvus.collections is not None)
            or (self.milvus1x is not None and self.milvus1x.many)
        )


class IndexSpec(Model):
    type: str = Field("AUTOINDEX", description="Milvus index type, e.g. AUTOINDEX, FLAT, IVF_FLAT, HNSW.")
    params: dict[str, Any] = Field(default_factory=dict)


class MilvusTarget(MilvusEndpoint):
    collection: Name | None = Field(None, description="Required for one source collection; many keep their names.")
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="For many collections: 'src' -> 'dst', 'db.src' -> 'db2.dst', 'db1.*' -> 'db2.*'; "
        "targets keep the source's database unless renamed or `database` is set.",
    )
    partition: Name | None = None
    mode: Literal["create", "append", "skip", "overwrite"] = Field(
        "create",
        description="create: fail if the collection exists; append: add to it; skip: leave it untouched and "
        "succeed; overwrite: build a new copy beside it, verify it, then swap it in and drop the old one.",
    )
    on_conflict: Literal["fail", "skip", "upsert"] = Field(
        "fail",
        description="mode append, source keys the collection holds already: fail (before writing anything), "
        "skip (keep the collection's rows) or upsert (replace them).",
    )
    metric: Metric | None = Field(
        None, description="Default: from the source (e.g. ann-benchmarks' distance), else L2."
    )
    index: IndexSpec = Field(default_factory=IndexSpec)
    id_field: Name = "id"
    vector_field: Name = "vector"
    description: str = ""


class Export(Model):
    """Where a file target writes; a base for file targets."""

    path: str
    overwrite: bool = Field(False, description="Replace an existing file; otherwise an existing file is an error.")


class Hdf5Target(Export):
    """An HDF5 file in MilvusDM's layout (embeddings, ids, one dataset per field), or a folder
    (path ending in '/') with one file per partition. ``s3://`` paths are written to a local
    staging file under $TMPDIR and uploaded (multipart) when complete."""


class ParquetTarget(Export):
    """A Parquet file in the layout Milvus' bulk import reads (key, vector as a list of float32,
    one column per field, $meta for dynamic fields) with the collection schema in its metadata,
    or a folder (path ending in '/') with one file per partition. ``s3://`` paths are staged
    locally and uploaded (multipart) when complete."""


class DumpTarget(Model):
    """A folder or s3:// prefix: ``<path>/<database>/<collection>/`` holds each collection as an
    HDF5 export (one file per partition), and ``dump.json``, written last, lists them all."""

    path: str
    overwrite: bool = Field(False, description="Replace an existing dump; otherwise one is an error.")


class Target(OneOf):
    milvus: MilvusTarget | None = None
    hdf5: Hdf5Target | None = None
    parquet: ParquetTarget | None = None
    dump: DumpTarget | None = None

    @property
    def mode(self) -> str | None:
        """A Milvus target's ``mode`` (create, append, skip, overwrite); None for files and dumps."""
        return self.milvus.mode if self.milvus is not None else None


class Resources(Model):
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "1", "memory": "1Gi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"memory": "2Gi"})


def kube(definition: str, description: str, many: bool = True, rule: dict[str, str] | None = None) -> Any:
    """Core/v1 objects (``Volume``, ``Toleration``…) taken as Kubernetes defines them: the CRD
    carries Kubernetes' own schema (``milvusdm.kubetypes``), the model passes them through."""
    extra: dict[str, Any] = {"x-milvusdm-kube": definition}
    if rule is not None:
        extra["x-kubernetes-validations"] = [rule]
    if many:
        return Field(default_factory=list, max_length=64, description=description, json_schema_extra=extra)
    return Field(None, description=description, json_schema_extra=extra)


PodObject = dict[str, Any]
RESERVED_VOLUMES = ("tmp", "milvusdm-")  # the runner's /tmp and the TLS Secrets the operator mounts


class JobSettings(Model):
    """How the operator runs the migration as a batch/v1 Job, and the pod settings it passes on."""

    image: str | None = Field(None, description="Runner image; default: the operator's own image.")
    resources: Resources = Field(default_factory=Resources)
    backoff_limit: int = Field(6, ge=0)
    ttl_seconds_after_finished: int | None = Field(None, ge=0)
    active_deadline_seconds: int | None = Field(None, ge=1, description="Fail the Job after this many seconds.")
    service_account_name: str | None = None
    volumes: list[PodObject] = kube(
        "Volume",
        "Pod volumes (PVCs, NFS, CSI, ConfigMaps, Secrets).",
        rule={
            "rule": "self.all(v, v.name != 'tmp' && !v.name.startsWith('milvusdm-'))",
            "message": "volume names tmp and milvusdm-* are reserved for the runner: pick another",
        },
    )
    volume_mounts: list[PodObject] = kube(
        "VolumeMount",
        "Mounts of those volumes into the runner.",
        rule={
            "rule": "self.all(m, m.mountPath != '/tmp' && m.mountPath != '/tmp/')",
            "message": "/tmp is the runner's own scratch folder: mount your volume elsewhere",
        },
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[PodObject] = kube("Toleration", "Taints the runner pods tolerate.")
    affinity: PodObject | None = kube("Affinity", "Node and pod (anti-)affinity of the runner pods.", many=False)
    image_pull_secrets: list[PodObject] = kube("LocalObjectReference", "Secrets for pulling the image.")
    priority_class_name: str | None = None
    pod_labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the runner pods.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Annotations on the runner pods.")
    env: list[PodObject] = kube("EnvVar", "Extra environment variables of the runner (e.g. proxies).")
    env_from: list[PodObject] = kube("EnvFromSource", "Extra environment from ConfigMaps or Secrets.")

    @model_validator(mode="after")
    def _own_names(self) -> JobSettings:
        for volume in self.volumes:
            if str(volume.get("name", "")).startswith(RESERVED_VOLUMES):
                raise ValueError("volume names tmp and milvusdm-* are reserved for the runner: pick another")
        mounts = {str(m.get("mountPath", "")).rstrip("/") for m in self.volume_mounts}
        if "/tmp" in mounts:
            raise ValueError("/tmp is the runner's own scratch folder: mount your volume elsewhere")
        return self


MANY_1X = "(has(self.source.milvus1x) && !has(self.source.milvus1x.collection))"
MANY = f"has(self.source.dump) || (has(self.source.milvus) && has(self.source.milvus.collections)) || {MANY_1X}"
FOLDER = "(has(self.target.hdf5) ? self.target.hdf5.path : self.target.parquet.path).endsWith('/')"
MANY_FILES = "many collections go to target.dump, target.milvus or (from milvus1x) a folder path ending in '/'"


class MigrationSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.target.hdf5) || has(self.target.parquet) || has(self.target.dump)) "
                    "|| !has(self.parallelism) || self.parallelism == 1",
                    "message": "a file target is written by one process: set parallelism to 1",
                },
                {
                    "rule": f"!has(self.target.milvus) || has(self.target.milvus.collection) || {MANY}",
                    "message": "target.milvus.collection is required",
                },
                {
                    "rule": f"!has(self.target.milvus) || !has(self.target.milvus.collection) || !({MANY})",
                    "message": "target.milvus.collection names one collection: with many, use target.milvus.rename",
                },
                {
                    "rule": "!has(self.target.dump) || (has(self.source.milvus) && has(self.source.milvus.collections))",
                    "message": "target.dump takes source.milvus.collections (patterns, e.g. ['*'])",
                },
                {
                    "rule": f"!(has(self.target.hdf5) || has(self.target.parquet)) || !({MANY}) || ({MANY_1X} && {FOLDER})",
                    "message": MANY_FILES,
                },
            ]
        }
    )

    source: Source
    target: Target
    batch_size: int = Field(10_000, ge=1, le=1_000_000, description="Rows per insert request.")
    verify: Literal["none", "count", "ids", "sample", "full"] = Field(
        "sample",
        description="After the copy: count rows; ids: also every source id present; sample: also "
        "verifySample random rows equal; full: every row equal.",
    )
    verify_sample: int = Field(1000, ge=1, description="Rows compared by verify: sample.")
    parallelism: int = Field(
        1,
        ge=1,
        le=64,
        description="Pods of an Indexed Job: shards of one collection's rows, or with many collections, "
        "a share of the collections each (balanced by rows).",
    )
    s3: S3Settings | None = Field(None, description="Object storage settings for s3:// paths.")
    suspend: bool = False
    job: JobSettings = Field(default_factory=JobSettings)

    @model_validator(mode="after")
    def _one_writer_per_file(self) -> MigrationSpec:
        if self.parallelism > 1 and (self.target.hdf5 or self.target.parquet or self.target.dump) is not None:
            raise ValueError("a file target is written by one process: set parallelism to 1")
        return self

    @model_validator(mode="after")
    def _one_or_many(self) -> MigrationSpec:
        many, milvus = self.source.many, self.target.milvus
        if self.target.dump is not None and not (self.source.milvus and self.source.milvus.collections):
            raise ValueError("target.dump takes source.milvus.collections (patterns, e.g. ['*'])")
        files = self.target.hdf5 or self.target.parquet
        if many and files is not None and not (self.source.milvus1x and files.path.endswith("/")):
            raise ValueError(MANY_FILES)
        if milvus is not None and many and milvus.collection is not None:
            raise ValueError("target.milvus.collection names one collection: with many, use target.milvus.rename")
        if milvus is not None and not many and milvus.collection is None:
            raise ValueError("target.milvus.collection is required")
        if milvus is not None and not many and milvus.rename:
            raise ValueError("target.milvus.rename applies to many collections: use target.milvus.collection")
        return self


class Condition(BaseModel):
    """A Kubernetes API-conventions condition."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class MigrationStatus(BaseModel):
    """Written by the operator (phase, conditions, times, job) and the runner (rows, shards)."""

    # Every field either writes is declared here, so a real API server keeps it (no unknown
    # fields in status); writers build one of these and send only the fields they set (patch).

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"] | None = None
    conditions: Annotated[
        list[Condition],
        Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
    ] = Field(default_factory=list)
    observed_generation: int | None = None
    job_name: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    source: str | None = Field(None, description="What is copied, e.g. hdf5:/data/x.h5.")
    target: str | None = Field(None, description="Where to, e.g. milvus:http://milvus:19530/items.")
    rows_copied: int | None = None
    total_rows: int | None = None
    progress: str | None = Field(None, description="Percent of totalRows copied, e.g. 42%.")
    last_batch_time: str | None = None
    verified: str | None = None
    message: str | None = Field(None, description="The runner's one-line result or error.")
    failure_reason: str | None = Field(
        None, description="Why it failed, e.g. InvalidInput, Unavailable, VerificationFailed."
    )
    shards: dict[str, ShardStatus] = Field(
        default_factory=dict,
        description="Per shard (JOB_COMPLETION_INDEX) or collection: its checkpoint, counts and lease (holder).",
    )

    def patch(self) -> dict[str, Any]:
        """A merge-patch body with the fields set on this object, as the API stores them."""
        return {"status": self.model_dump(mode="json", by_alias=True, exclude_unset=True)}


class Metadata(BaseModel):
    """Kubernetes object metadata; only ``name`` matters to milvusdm."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
    namespace: str | None = None


class MilvusMigration(Model):
    api_version: Literal["milvusdm.io/v1alpha1"]
    kind: Literal["MilvusMigration"]
    metadata: Metadata
    spec: MigrationSpec
    status: MigrationStatus | None = None


def describe_errors(error: ValidationError) -> str:
    """One line per problem, each naming the field path as written in the manifest."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{path or '(manifest)'}: {message}")
    return "; ".join(lines)


def parse(document: Any, origin: str = "manifest") -> MilvusMigration:
    try:
        return MilvusMigration.model_validate(document)
    except ValidationError as error:
        raise InputError(f"invalid {origin}: {describe_errors(error)}", "fix the fields named above") from None


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """Safe YAML that refuses a key given twice in one mapping: PyYAML silently keeps the last,
    where kubectl refuses the manifest."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


def read_document(path: str | Path) -> Any:
    """A manifest file's YAML (or JSON) document, not validated yet."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise InputError(f"cannot read manifest {path}: {error.strerror}", "pass an existing file with -f") from None
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not text (a binary file?)", "pass a YAML manifest with -f") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as error:
        raise InputError(
            f"manifest {path} is not valid YAML: {_yaml_problem(error)}", "fix the YAML at that line"
        ) from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's error on one line: the problem and where it is."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else error.problem
    return " ".join(str(error).split())


def load(path: str | Path) -> MilvusMigration:
    """Read and validate a manifest file (YAML or JSON)."""
    return parse(read_document(path), origin=f"manifest {path}")

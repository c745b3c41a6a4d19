"""The ``milvusdm`` command line."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer
from rich.console import Console

from milvusdm import __version__, allocator, env, interrupts, legacy, spec
from milvusdm.errors import InputError, Interrupted, MigrationError

if TYPE_CHECKING:  # imported where used: a command loads only what it runs
    from milvusdm import engine, instance

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Move vectors into, out of and between Milvus.")
ManifestOption = Annotated[Path, typer.Option("--file", "-f", help="A MilvusMigration manifest (YAML).")]
StateOption = Annotated[
    Path, typer.Option("--state", help="Folder for checkpoints of interrupted runs.", envvar=env.STATE_DIR)
]
stderr = Console(stderr=True)


# Libraries that log tracebacks for errors we report in one line, or chat at INFO.
NOISY_LOGGERS = ("pymilvus", "grpc", "milvus_lite", "faiss")


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to sys.stderr as it is at each record (it may be swapped, e.g. when captured)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[_Stderr()],
        force=True,
    )
    logging.getLogger("milvusdm").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def _fail(error: Exception, json_output: bool = False) -> None:
    if not isinstance(error, MigrationError):  # a bug: still one line, the traceback with --verbose
        logging.getLogger("milvusdm").debug("internal error", exc_info=error)
        first_line = str(error).strip().split("\n")[0]
        error = MigrationError(
            f"internal error: {type(error).__name__}: {first_line}", "rerun with --verbose and report it"
        )
    print(f"milvusdm: error: {error}", file=sys.stderr)
    if json_output:
        print(
            json.dumps(
                {"error": str(error), "exitCode": error.exit_code, "reason": error.reason, "phase": error.phase or None}
            )
        )
    raise typer.Exit(error.exit_code)


@app.callback(invoke_without_command=True)
def main_options(
    context: typer.Context,
    milvusdm_yaml: Annotated[
        Path | None, typer.Option("--yaml", help="Run a MilvusDM YAML file (F2M, H2M, M2M, M2H) as MilvusDM did.")
    ] = None,
) -> None:
    """MilvusDM's command line, ``milvusdm --yaml FILE``: a rerun after an interruption resumes."""
    if milvusdm_yaml is not None and context.invoked_subcommand is None:
        run(
            file=milvusdm_yaml,
            resource=None,
            resume=None,
            state=Path(env.get(env.STATE_DIR) or ".milvusdm"),
            json_output=False,
            quiet=False,
            verbose=False,
        )
    elif context.invoked_subcommand is None:
        print(context.get_help())


@app.command()
def run(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A MilvusMigration manifest, or a MilvusDM YAML file.")
    ] = None,
    resource: Annotated[
        str | None,
        typer.Option("--resource", help="NAMESPACE/NAME of a MilvusMigration to run and report to (in its Job)."),
    ] = None,
    resume: Annotated[
        bool | None, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")
    ] = False,
    state: StateOption = Path(".milvusdm"),
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run a migration: check the source, prepare the target, copy, index, load, verify."""
    _setup_logging(verbose, quiet)
    observers = [] if quiet else [_progress()]
    interrupts.install()  # SIGTERM like Ctrl-C: settle, keep the checkpoint
    try:
        if (file is None) == (resource is None):
            raise InputError("pass exactly one of --file and --resource", "see milvusdm run --help")
        if resource is not None:
            from milvusdm import jobrunner

            summary = jobrunner.run(resource, observers)
            print(json.dumps(summary.as_dict()) if json_output else summary.line())
        if file is not None:
            summary = _run_local(legacy.load(file), observers, state, resume)
            print(json.dumps(summary.as_dict()) if json_output else summary.line())
    except KeyboardInterrupt:
        interrupted = Interrupted(
            "interrupted; the rows written so far are checkpointed", "rerun with --resume to continue"
        )
        _fail(interrupted, json_output)
    except Exception as error:
        _fail(error, json_output)


def _run_local(
    migration: spec.MilvusMigration, observers: list[engine.Observer], state: Path, resume: bool | None
) -> engine.Summary | instance.RunSummary:
    """One collection through the engine, many through ``instance`` (one engine run each)."""
    from milvusdm import engine, instance
    from milvusdm.checkpoint import FileCheckpoints

    if migration.spec.parallelism > 1:
        logging.getLogger("milvusdm").warning(
            "parallelism %d applies in a cluster (an Indexed Job of %d pods); this local run copies as one process",
            migration.spec.parallelism,
            migration.spec.parallelism,
        )
    checkpoints = FileCheckpoints(state, migration.metadata.name)
    with checkpoints.lock():  # a second run of the same migration is refused
        if migration.spec.source.many:
            return instance.run(migration, observers, state=state, resume=resume)
        return engine.run(migration, observers, checkpoints=checkpoints, resume=resume)


def _endpoint(uri: str, token: str | None, user: str | None, database: str | None = None) -> dict[str, Any]:
    found = {"uri": uri, "token": token, "user": user, "database": database}
    return {key: value for key, value in found.items() if value}


def _s3(endpoint: str | None) -> dict[str, Any]:
    return {"s3": {"endpoint": endpoint, "pathStyle": True}} if endpoint else {}


def _run_document(
    document: dict[str, Any], name: str, resume: bool, state: Path, json_output: bool, quiet: bool, verbose: bool
) -> None:
    _setup_logging(verbose, quiet)
    observers = [] if quiet else [_progress()]
    interrupts.install()
    try:
        migration = spec.parse(
            {"apiVersion": spec.API_VERSION, "kind": spec.KIND, "metadata": {"name": name}, "spec": document},
            origin="command line",
        )
        summary = _run_local(migration, observers, state, resume)
    except KeyboardInterrupt:
        _fail(Interrupted("interrupted; the rows written so far are checkpointed", "rerun with --resume to continue"))
    except Exception as error:
        _fail(error)
    print(json.dumps(summary.as_dict()) if json_output else summary.line())


UriOption = Annotated[str, typer.Option("--uri", help="The Milvus server (http://host:19530) or a Lite *.db path.")]
TokenOption = Annotated[str | None, typer.Option("--token", help="Token or user:password (or MILVUSDM_*_TOKEN).")]
UserOption = Annotated[str | None, typer.Option("--user", help="User (password: MILVUSDM_*_PASSWORD).")]
S3Option = Annotated[
    str | None, typer.Option("--s3-endpoint", help="S3 endpoint for s3:// paths (MinIO, moto…); path-style.")
]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoints.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")]


@app.command()
def dump(
    uri: UriOption,
    out: Annotated[str, typer.Option("--out", help="Folder or s3://bucket/prefix for the dump.")],
    databases: Annotated[
        list[str] | None, typer.Option("--databases", help="Databases to dump (repeatable); default: all.")
    ] = None,
    collections: Annotated[
        list[str] | None, typer.Option("--collections", help="Collections or patterns ('docs_*', 'db2.*'; repeatable).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing dump.")] = False,
    token: TokenOption = None,
    user: UserOption = None,
    s3_endpoint: S3Option = None,
    verify_mode: Annotated[str, typer.Option("--verify", help="none, count, ids, sample or full.")] = "sample",
    resume: ResumeOption = False,
    state: StateOption = Path(".milvusdm"),
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Dump collections of every database (or the chosen ones) to HDF5 exports and dump.json."""
    patterns = collections or ["*"]
    qualified = [p for p in patterns if "." in p]
    plain = [p for p in patterns if "." not in p]
    patterns = qualified + [f"{db}.{p}" for db in (databases or ["*"]) for p in plain]
    source = {"milvus": _endpoint(uri, token, user) | {"collections": patterns}}
    document = {
        "source": source,
        "target": {"dump": {"path": out, "overwrite": overwrite}},
        "verify": verify_mode,
        **_s3(s3_endpoint),
    }
    _run_document(document, "dump", resume, state, json_output, quiet, verbose)


@app.command()
def restore(
    from_: Annotated[str, typer.Option("--from", help="A dump's folder or s3:// prefix.")],
    uri: UriOption,
    collections: Annotated[
        list[str] | None, typer.Option("--collections", help="Collections or patterns to restore (repeatable).")
    ] = None,
    partitions: Annotated[
        list[str] | None, typer.Option("--partitions", help="COLLECTION:P1,P2 — only these partitions (repeatable).")
    ] = None,
    rename: Annotated[
        list[str] | None, typer.Option("--rename", help="OLD=NEW, e.g. items=items2, db1.*=db2.*")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="create, append, skip or overwrite.")] = "create",
    database: Annotated[str | None, typer.Option("--database", help="Restore into this database.")] = None,
    token: TokenOption = None,
    user: UserOption = None,
    s3_endpoint: S3Option = None,
    verify_mode: Annotated[str, typer.Option("--verify", help="none, count, ids, sample or full.")] = "sample",
    resume: ResumeOption = False,
    state: StateOption = Path(".milvusdm"),
    json_output: JsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Restore a dump: databases, schemas, partitions, indexes, aliases and rows, checked against dump.json."""
    try:
        chosen = dict(_pair(p, ":", "--partitions COLLECTION:P1,P2") for p in partitions or [])
        renames = dict(_pair(r, "=", "--rename OLD=NEW") for r in rename or [])
    except InputError as error:
        _fail(error)
    source = {
        "path": from_,
        "collections": collections or None,
        "partitions": {c: ps.split(",") for c, ps in chosen.items()} or None,
    }
    target = _endpoint(uri, token, user, database) | {"mode": mode, "rename": renames}
    document = {
        "source": {"dump": {k: v for k, v in source.items() if v}},
        "target": {"milvus": target},
        "verify": verify_mode,
        **_s3(s3_endpoint),
    }
    _run_document(document, "restore", resume, state, json_output, quiet, verbose)


def _pair(text: str, separator: str, form: str) -> tuple[str, str]:
    left, found, right = text.partition(separator)
    if not found or not left or not right:
        raise InputError(f"{text!r} is not of the form {form}", f"pass {form}")
    return left, right


def _progress() -> engine.Observer:
    from milvusdm.progress import ProgressBar, ProgressLog

    return ProgressBar(stderr) if stderr.is_terminal else ProgressLog()


@app.command()
def verify(
    file: ManifestOption,
    mode: Annotated[
        str | None, typer.Option("--mode", help="count, ids, sample or full; default: the manifest's verify.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Check an existing target against the source, copying nothing."""
    from milvusdm import engine

    _setup_logging(verbose)
    try:
        migration = spec.load(file)
        if mode is not None and mode not in ("count", "ids", "sample", "full"):
            raise InputError(f"unknown verify mode {mode!r}", "use count, ids, sample or full")
        if migration.spec.source.many:
            from milvusdm import instance

            results = instance.check(migration, mode)
        else:
            results = [(migration.metadata.name, engine.check(migration, mode))]
    except Exception as error:
        _fail(error)
    print("\n".join(f"{name}: verified: {result}" for name, result in results))


@app.command()
def validate(file: ManifestOption) -> None:
    """Check a manifest without touching any data."""
    from milvusdm.checks import check

    try:
        migration = legacy.load(file)
        check(migration)
    except Exception as error:
        _fail(error)
    (source, _), (target, _) = migration.spec.source.one_of(), migration.spec.target.one_of()
    shards = migration.spec.parallelism
    note = f"; parallelism {shards} applies in a cluster, a local run copies as one" if shards > 1 else ""
    print(f"{file}: valid MilvusMigration {migration.metadata.name!r} ({source} -> {target}){note}")


@app.command()
def convert(
    file: Annotated[Path, typer.Argument(help="A MilvusDM YAML file (F2M, H2M, M2M or M2H).")],
) -> None:
    """Print the MilvusMigration manifest equivalent to a MilvusDM YAML file."""
    import yaml

    try:
        document = spec.read_document(file)
        if not legacy.is_legacy(document):
            raise InputError(
                f"{file} is not a MilvusDM YAML (one top-level key: F2M, H2M, M2M or M2H)",
                "pass a MilvusDM file; a MilvusMigration needs no conversion",
            )
        manifest = legacy.convert(document, str(file))
        spec.parse(manifest, origin=f"{file} (as MilvusMigration)")
    except Exception as error:
        _fail(error)
    print(yaml.safe_dump(manifest, sort_keys=False), end="")


@app.command("prune-output")
def prune_output(
    file: Annotated[Path | None, typer.Option("--file", "-f", help="The run's MilvusMigration manifest.")] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="NAMESPACE/NAME of the run's MilvusMigration (in its Job).")
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Delete a scheduled run's output: its timestamped folder or s3:// prefix, nothing else."""
    from milvusdm.prune import prune

    _setup_logging(verbose)
    try:
        if file is not None and resource is None:
            migration = spec.load(file)
        elif resource is not None and file is None:
            from milvusdm.kube import MigrationResource

            migration = MigrationResource(resource).migration()
        else:
            raise InputError("pass exactly one of --file and --resource", "see milvusdm prune-output --help")
        output, count = prune(migration)
    except Exception as error:
        _fail(error)
    files = f"{count} file{'s' if count > 1 else ''}"
    print(f"{migration.metadata.name}: deleted {output} ({files})" if count else f"{output}: already gone")


@app.command("operator")
def run_operator(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Watch this namespace (repeatable).")
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")] = False,
    liveness_port: Annotated[int, typer.Option(help="Port of the /healthz liveness endpoint.")] = 8080,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics at /metrics on this port.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run the operator: MilvusMigration resources become runner Jobs, Job state becomes status."""
    import kopf

    import milvusdm_operator.handlers  # noqa: F401  (registers the handlers)

    _setup_logging(verbose)
    if bool(namespace) == all_namespaces:
        _fail(InputError("pass --namespace (one or more) or --all-namespaces", "see milvusdm operator --help"))
    kopf.configure(verbose=verbose)
    if metrics_port is not None:
        from milvusdm_operator import metrics

        metrics.serve(metrics_port)
    kopf.run(
        standalone=True,
        namespaces=namespace or [],
        clusterwide=all_namespaces,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz",
    )


@app.command()
def crd(
    schedule: Annotated[bool, typer.Option("--schedule", help="The MilvusMigrationSchedule CRD instead.")] = False,
) -> None:
    """Print the MilvusMigration CustomResourceDefinition (generated from the spec model)."""
    from milvusdm.crd import render

    print(render(schedule), end="")


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> NoReturn:
    """The ``milvusdm`` command, also the Job's (the operator runs ``milvusdm run --resource``)."""
    env.quiet_grpc(verbose=bool({"-v", "--verbose"} & set(sys.argv)))  # before gRPC loads
    allocator.tune()  # before any thread starts
    try:
        app()
    except SystemExit as done:
        _end(done.code)
    _end(0)


def _end(code: str | int | None) -> NoReturn:
    """End the process without the interpreter's teardown (every module's objects freed one by
    one, gRPC's core shut down): 0.3-0.4 s after a run's last line, 3% of a 200k-row run. What
    must happen at exit still does: the atexit handlers run (Milvus Lite's server stop, h5py's
    file closes, logging's flush) and stdio is flushed. While another thread is still running,
    the interpreter ends as usual: it alone knows how to wind down thread pools and then wait."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    if isinstance(code, str):  # sys.exit("message"): printed, exit status 1
        print(code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to tell
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)

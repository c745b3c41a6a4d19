"""The ``milvusdm`` command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from milvusdm import __version__, spec
from milvusdm.errors import MigrationError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Move vectors into, out of and between Milvus.")
ManifestOption = Annotated[Path, typer.Option("--file", "-f", help="A MilvusMigration manifest (YAML).")]
stderr = Console(stderr=True)


# Libraries that log tracebacks for errors we report in one line, or chat at INFO.
NOISY_LOGGERS = ("pymilvus", "grpc", "milvus_lite", "faiss")


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("milvusdm").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def _fail(error: MigrationError) -> None:
    message = f"milvusdm: error: {error.problem}" + (f"; fix: {error.fix}" if error.fix else "")
    print(message, file=sys.stderr)
    raise typer.Exit(error.exit_code)


@app.command()
def run(
    file: ManifestOption,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    """Run a migration: check the source, prepare the target, copy, index, load, verify."""
    from milvusdm import engine
    from milvusdm.progress import ProgressBar, ProgressLog

    _setup_logging(verbose, quiet)
    observers = [] if quiet else [ProgressBar(stderr) if stderr.is_terminal else ProgressLog()]
    try:
        summary = engine.run(spec.load(file), observers)
    except MigrationError as error:
        _fail(error)
    print(json.dumps(summary.as_dict()) if json_output else summary.line())


@app.command()
def validate(file: ManifestOption) -> None:
    """Check a manifest without touching any data."""
    try:
        migration = spec.load(file)
    except MigrationError as error:
        _fail(error)
    (source, _), (target, _) = migration.spec.source.one_of(), migration.spec.target.one_of()
    print(f"{file}: valid MilvusMigration {migration.metadata.name!r} ({source} -> {target})")


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    app()

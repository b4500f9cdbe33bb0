"""Shared pieces of the command line: the app, the consoles, small option parsers.

Every command module in this package registers its commands on :data:`app` (or
:data:`data_app`); ``edge_sealant.cli`` imports them all.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from edge_sealant import __version__
from edge_sealant.errors import EdgeSealantError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class _App(typer.Typer):
    """Typer app whose commands turn EdgeSealantError into one line on stderr and exit 1."""

    def command(self, *args: Any, **kwargs: Any) -> Callable:
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def guarded(*f_args: Any, **f_kwargs: Any) -> Any:
                try:
                    return fn(*f_args, **f_kwargs)
                except EdgeSealantError as exc:
                    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
                    raise typer.Exit(1) from None
                except KeyboardInterrupt:
                    err_console.print("interrupted")
                    raise typer.Exit(130) from None

            return register(guarded)

        return decorator


app = _App(
    name="edge-sealant",
    help="Train, quantize and deploy a normal-vs-defect inspection classifier.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = _App(help="Inspect or generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        console.print(f"edge-sealant {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    pass


def split_list(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def default_of(options: type, name: str) -> Any:
    """The default of field ``name`` of an options dataclass: help text and CLI defaults read it
    from the dataclass, so they cannot drift from what the domain does."""
    for spec in dataclasses.fields(options):
        if spec.name == name:
            if spec.default is not dataclasses.MISSING:
                return spec.default
            if spec.default_factory is not dataclasses.MISSING:
                return spec.default_factory()
    raise KeyError(f"{options.__name__} has no default for {name!r}")


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


GROUP_BY_HELP = (
    "Regex on file names: images whose first capture group (e.g. a part or tile id) is equal stay in one split. "
    "Exact and near duplicates always do."
)
MAX_GROUP_HELP = "Bound on near-duplicate chains before they are cut apart (default: 2% of the images, at least 16)."


"""Commands: `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sealant.cli.common import app, console, default_of
from edge_sealant.demo import DemoOptions


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Folder to create (must not exist or be empty).")] = default_of(DemoOptions, "out"),
    quick: Annotated[bool, typer.Option("--quick", help="Tiny version for tests: 64x32 images, 2 epochs, few bench runs (< 60 s).")] = False,
    threads: Annotated[Optional[int], typer.Option(help="Threads for training and every backend (default: physical cores).")] = None,
) -> None:
    """Generate sealant-bead data, train, export, quantize and bench: the whole job in minutes."""
    from edge_sealant.cli.bench import render_table
    from edge_sealant.demo import finished_line, run_demo

    result = run_demo(DemoOptions.preset(quick=quick, out=out, threads=threads), log=lambda m: console.print(m, highlight=False, markup=False))
    render_table(result.bench_result, console)
    console.print(finished_line(result), highlight=False, markup=False)

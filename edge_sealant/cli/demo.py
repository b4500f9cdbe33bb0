"""Commands: `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edge_sealant.cli.common import app, console

@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), help="Folder to create (must not exist or be empty)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny version for tests: 64x32 images, 2 epochs, few bench runs (< 60 s)."),
    threads: Optional[int] = typer.Option(None, help="Threads for training and every backend (default: physical cores)."),
) -> None:
    """Generate sealant-bead data, train, export, quantize and bench: the whole job in minutes."""
    from edge_sealant.cli.bench import render_table
    from edge_sealant.demo import DemoOptions, run_demo

    result = run_demo(DemoOptions.preset(quick=quick, out=out, threads=threads), log=lambda m: console.print(m, highlight=False, markup=False), console=console)
    if result.bench_result is not None:
        render_table(result.bench_result, console)

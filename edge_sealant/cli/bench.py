"""Commands: `bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional, TYPE_CHECKING

import typer

from edge_sealant.card import parse_size
from edge_sealant.bench import BACKENDS, PRECISIONS, BenchOptions
from edge_sealant.cli.common import app, console, default_of, err_console, split_list
from edge_sealant.errors import EdgeSealantError

if TYPE_CHECKING:
    from edge_sealant.bench import BenchResult

# Below this many columns only the headline columns are shown (the files keep them all).
FULL_TABLE_WIDTH = 170


def render_table(result: BenchResult, console: Any) -> None:
    """Rich table, then the header lines and any drop-gate failure.

    On a narrow terminal only the headline columns (``COMPACT_KEYS``) are shown.
    """
    from rich.table import Table

    from edge_sealant.bench import COMPACT_KEYS, TABLE_COLUMNS, header_lines, table_cells

    columns = TABLE_COLUMNS
    if getattr(console, "width", 200) < FULL_TABLE_WIDTH:
        columns = tuple(c for c in TABLE_COLUMNS if c[1] in COMPACT_KEYS)
    table = Table(title=f"bench: {result.header.get('model', '')} on {result.header['cpu']}, {result.header['threads']} threads")
    for title, key, _ in columns:
        table.add_column(title, justify="left" if key == "label" else "right", overflow="fold")
    for row in result.rows:
        table.add_row(*table_cells(row, columns))
    console.print(table)
    for line in header_lines(result.header):
        console.print(line, highlight=False, markup=False)
    for failure in result.gate:
        console.print(f"[bold red]drop gate:[/] {failure}", highlight=False)


@app.command("bench")
def bench_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder (best.pt + exported/quantized models).")],
    data: Annotated[Path, typer.Argument(help="YOLO data.yaml or dataset folder.")],
    split: Annotated[str, typer.Option(help="Split whose images are scored and timed.")] = default_of(BenchOptions, "split"),
    backends: Annotated[Optional[str], typer.Option(help=f"Comma-separated: {','.join(BACKENDS)} (default all).")] = None,
    precisions: Annotated[Optional[str], typer.Option(help=f"Comma-separated: {','.join(PRECISIONS)} (default all; bf16 only where the CPU has it).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads for every backend (default: physical cores).")] = None,
    iterations: Annotated[int, typer.Option(help="Timed batch-1 runs per row, after --warmup.")] = default_of(BenchOptions, "iterations"),
    warmup: Annotated[int, typer.Option(help="Untimed runs before timing.")] = default_of(BenchOptions, "warmup"),
    e2e_images: Annotated[int, typer.Option(help="Files streamed through the runtime for the end-to-end figures.")] = default_of(BenchOptions, "e2e_images"),
    no_e2e: Annotated[bool, typer.Option("--no-e2e", help="Skip the end-to-end (file -> decision) figures.")] = False,
    reference: Annotated[Optional[str], typer.Option(help="full-res: add a timing-only EfficientNet-B0 row at the source resolution.")] = None,
    reference_size: Annotated[Optional[str], typer.Option(help="HxW of the --reference row (default: the split's image size).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here (PNGs go next to it).")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="Write the rows as CSV here.")] = None,
    md_out: Annotated[Optional[Path], typer.Option("--md", help="Write a Markdown report here.")] = None,
    fail_on_drop: Annotated[Optional[float], typer.Option(help="Exit 1 when an INT8 row loses more than this AUROC vs the FP32 row of its backend.")] = None,
) -> None:
    """Accuracy, size, latency, throughput and end-to-end speed of every artifact of a run."""
    from edge_sealant import bench

    if fail_on_drop is not None and not 0.0 <= fail_on_drop <= 1.0:  # checked before minutes of timing
        raise EdgeSealantError(f"--fail-on-drop {fail_on_drop:g} must be an AUROC drop in [0, 1]")
    options = bench.BenchOptions(
        run=run,
        data=data,
        split=split,
        backends=split_list(backends),
        precisions=split_list(precisions),
        threads=threads,
        iterations=iterations,
        warmup=warmup,
        e2e_images=e2e_images,
        e2e=not no_e2e,
        reference=reference,
        reference_size=parse_size(reference_size) if reference_size else None,
    )
    result = bench.run_bench(options, log=lambda message: err_console.print(message, highlight=False, markup=False))
    if fail_on_drop is not None:
        result.gate = bench.drop_gate(result.rows, fail_on_drop)
    written = bench.write_outputs(result, bench.default_out_dir(run, json_out), json_out, csv_out, md_out)
    render_table(result, console)
    console.print(f"written: {', '.join(written.values())}", highlight=False)
    if result.gate:
        raise EdgeSealantError(f"INT8 AUROC drop above {fail_on_drop:g}: {'; '.join(result.gate)}")

"""Commands: `predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional, TYPE_CHECKING

import typer

from edge_sealant.cli.common import app, console, err_console, print_json
from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.regions import DEFAULT_LEVEL

if TYPE_CHECKING:  # the domain module is imported by the command itself, lazily
    from edge_sealant.predict import PredictReport


@app.command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="Exported .xml/.onnx, or a run folder (best artifact: openvino int8 > fp32 > onnx).")],
    source: Annotated[str, typer.Argument(help="Image file, folder (recursive), glob ('imgs/*.jpg') or video (.mp4/.avi/.mkv/.mov).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="preds.csv or preds.json (never overwritten).")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Override the model's threshold.")] = None,
    device: Annotated[str, typer.Option(help="OpenVINO device.")] = "CPU",
    hint: Annotated[str, typer.Option(help="OpenVINO performance hint: LATENCY or THROUGHPUT.")] = "THROUGHPUT",
    precision: Annotated[Optional[str], typer.Option(help="OpenVINO inference precision: f32 (default), bf16, f16.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Inference threads (default: all cores).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows and summary as JSON on stdout.")] = False,
    overlay: Annotated[Optional[Path], typer.Option("--overlay", help="Heatmap models: write a JPEG of every flagged image (heatmap, regions, verdict) to this folder.")] = None,
    regions: Annotated[bool, typer.Option("--regions", help="Heatmap models: add the defect regions (boxes in image pixels, peak) to the rows.")] = False,
    region_level: Annotated[float, typer.Option(help="Heatmap cells at or above this probability form a region.")] = DEFAULT_LEVEL,
) -> None:
    """Inspect images or video frames; one row per image, errors as rows, summary at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edge_sealant.predict import PROGRESS_MIN_ITEMS, predict

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )
    task: list[Any] = []

    def on_start(total: Optional[int], description: str) -> None:
        if not as_json and (total is None or total >= PROGRESS_MIN_ITEMS):
            progress.start()
            task.append(progress.add_task(description, total=total))

    def on_result(_result: Any) -> None:
        if task:
            progress.advance(task[0])

    try:
        report = predict(
            model, source, out=out, threshold=threshold, device=device, hint=hint, precision=precision,
            threads=threads, on_start=on_start, on_result=on_result, overlay=overlay, regions=regions,
            region_level=region_level,
        )
    finally:
        progress.stop()
    if as_json:
        print_json(report.to_dict())
    else:
        if out is None:
            for row in report.rows:
                value = "error: " + str(row.error) if row.error else f"{row.probability:.6f}  {row.decision}"
                if regions and row.regions:
                    value += "  regions " + " ".join(f"{list(r.box)}@{r.peak:.2f}" for r in row.regions)
                console.print(f"{row.name}  {value}", highlight=False, markup=False)
        else:
            console.print(f"wrote {len(report.rows)} rows to {out}")
        render_summary(report, console)
        if report.overlays:
            console.print(f"{len(report.overlays)} overlays in {overlay}", highlight=False, markup=False)
    if report.rows and all(row.error for row in report.rows):  # rows kept, but a pipeline must see the failure
        raise EdgeSealantError(f"none of the {len(report.rows)} images could be inspected (see the error rows)")


def render_summary(report: PredictReport, output: Any) -> None:
    """The end-of-run line and table of ``predict`` on the rich console ``output``."""
    from rich.table import Table

    summary = report.summary
    output.print(
        f"model {report.model} ({report.backend} {report.precision}); "
        f"threshold {report.threshold:g} ({report.threshold_source})",
        highlight=False, markup=False,
    )
    table = Table()
    for column in ("images", "defects", "errors", "mean ms", "p50 ms", "images/s"):
        table.add_column(column, justify="right")

    def fmt(value: Any) -> str:
        return "-" if value is None else str(value)

    table.add_row(
        fmt(summary["images"]), fmt(summary["defects"]), fmt(summary["errors"]),
        fmt(summary["mean_latency_ms"]), fmt(summary["p50_latency_ms"]), fmt(summary["images_per_s"]),
    )
    output.print(table)

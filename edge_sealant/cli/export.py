"""Commands: `export` and `set-threshold`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sealant.cli.common import app, console, err_console, print_json, split_list
from edge_sealant.export import EXPORT_PRECISIONS, FORMATS, PARITY_LIMIT, TOLERANCE


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder made by 'edge-sealant train'.")],
    formats: Annotated[str, typer.Option("--format", help=f"Comma-separated: {', '.join(FORMATS)}.")] = ",".join(FORMATS),
    precisions: Annotated[str, typer.Option("--precision", help=f"Comma-separated: {', '.join(EXPORT_PRECISIONS)} (fp16: OpenVINO only).")] = "fp32",
    bundle: Annotated[Optional[Path], typer.Option("--bundle", help="Also write a deployment zip (models, torch-free runtime, example, OVMS layout); never overwritten.")] = None,
    parity_images: Annotated[int, typer.Option(help=f"Val images compared against torch (FP32 must agree within {TOLERANCE['fp32']:g}).")] = PARITY_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the export report as JSON on stdout.")] = False,
) -> None:
    """Export to ONNX and OpenVINO IR with the model card embedded; check parity with torch."""
    from edge_sealant.export import export_run

    report = export_run(
        run, formats=split_list(formats), precisions=split_list(precisions), bundle=bundle,
        parity_limit=parity_images, log=None if as_json else err_console.print,
    )
    if as_json:
        print_json(report.to_dict())
        return
    for artifact in report.artifacts:
        console.print(
            f"{artifact.path}  {artifact.size_mb:.1f} MB  max |p - p_torch| = {artifact.max_abs_diff:.2g} "
            f"(tolerance {artifact.tolerance:g}, {artifact.inference_precision})"
        )
    console.print(f"parity on {report.parity_source}")
    for note in report.notes:
        console.print(f"note: {note}")


@app.command("set-threshold")
def set_threshold_cmd(
    model: Annotated[Path, typer.Argument(help="Exported model (.xml or .onnx).")],
    value: Annotated[float, typer.Argument(help="New decision threshold in [0, 1].")],
    sidecar: Annotated[bool, typer.Option("--sidecar", help="Write model.threshold.json next to the model instead of editing the file.")] = False,
) -> None:
    """Change a model's decision threshold without re-exporting (embedded metadata or sidecar)."""
    from edge_sealant.runtime.model_file import set_threshold

    change = set_threshold(model, value, mode="sidecar" if sidecar else "embedded")
    console.print(
        f"{change['model']}: threshold {change['previous']:g} -> {change['threshold']:g} "
        f"(in force from: {change['effective_source']}; wrote {', '.join(change['written'])})"
    )

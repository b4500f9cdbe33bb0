"""Commands: `quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edge_sealant.cli.common import app, console, err_console, print_json

@app.command("quantize")
def quantize_cmd(
    run: Path = typer.Argument(..., help="Run folder (its FP32 export is made first when missing)."),
    data: Path = typer.Argument(..., help="Dataset to calibrate and evaluate on (YOLO data.yaml or folder)."),
    backend: str = typer.Option("openvino", "--backend", help="openvino (NNCF -> INT8 IR, recommended) or onnx (ONNX Runtime quantize_static -> QDQ ONNX)."),
    subset_size: int = typer.Option(300, "--subset-size", help="Calibration images, drawn stratified by label."),
    split: str = typer.Option("train", "--split", help="Split the calibration images come from."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Accuracy control: keep layers in float until the val AUROC drop is <= D (absolute)."),
    as_json: bool = typer.Option(False, "--json", help="Print the quantize report as JSON on stdout."),
    force: bool = typer.Option(False, "--force", help="Replace an existing INT8 model of this backend."),
) -> None:
    """Post-training INT8 quantization with a calibration manifest and an FP32-vs-INT8 report."""
    import contextlib

    from edge_sealant.quantize import quantize_run, stdout_to_stderr

    with stdout_to_stderr() if as_json else contextlib.nullcontext():
        report = quantize_run(
            run, data, backend=backend, subset_size=subset_size, split=split, max_drop=max_drop,
            console=err_console if as_json else console, force=force,
        )
    if as_json:
        print_json(report)

"""Commands: `quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from edge_sealant.cli.common import app, console, err_console, print_json
from edge_sealant.quantize.calibration import MIN_CALIBRATION_IMAGES
from edge_sealant.quantize.scoring import PLATEAU


@app.command("quantize")
def quantize_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder (its FP32 export is made first when missing).")],
    data: Annotated[Path, typer.Argument(help="Dataset to calibrate and evaluate on (YOLO data.yaml or folder).")],
    backend: Annotated[str, typer.Option("--backend", help="openvino (NNCF -> INT8 IR, recommended) or onnx (ONNX Runtime quantize_static -> QDQ ONNX).")] = "openvino",
    subset_size: Annotated[int, typer.Option("--subset-size", help="Calibration images, drawn stratified by label.")] = MIN_CALIBRATION_IMAGES,
    split: Annotated[str, typer.Option("--split", help="Split the calibration images come from.")] = "train",
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Accuracy control: keep layers in float until the val AUROC drop is <= D (absolute).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the quantize report as JSON on stdout.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing INT8 model of this backend.")] = False,
    keep_threshold: Annotated[bool, typer.Option("--keep-threshold", help="Give the INT8 model FP32's threshold instead of re-choosing it on INT8's val scores with the run's policy.")] = False,
    overflow_fix: Annotated[Optional[str], typer.Option("--overflow-fix", help="NNCF overflow fix: enable (the recipe: 7-bit weights, right on every CPU) | first_layer_only | disable (full 8-bit weights: 30-45% less logit error on magnetic-tile, but only for factory PCs with VNNI or AMX-INT8; the runtime warns on others).")] = None,
    qat_epochs: Annotated[Optional[float], typer.Option("--qat-epochs", help="Quantization-aware fine-tune of best.pt for this many epochs of the train split (OpenVINO; minutes on a CPU) instead of post-training quantization of the IR; 0: NNCF on the torch net without fine-tuning (a control).")] = None,
) -> None:
    """INT8 quantization (post-training, or quantization-aware with --qat-epochs) with a calibration manifest and an FP32-vs-INT8 report."""
    import contextlib

    from edge_sealant.quantize import quantize_run, stdout_to_stderr

    # With --json, stdout holds the JSON alone: progress, warnings and the table go to stderr.
    out = err_console if as_json else console
    log, warn = console_printers(out)
    with stdout_to_stderr() if as_json else contextlib.nullcontext():
        report = quantize_run(
            run, data, backend=backend, subset_size=subset_size, split=split, max_drop=max_drop,
            force=force, keep_threshold=keep_threshold, qat_epochs=qat_epochs, overflow_fix=overflow_fix,
            log=log, warn=warn,
        )
    render_report(report, out)
    if as_json:
        print_json(report)


def console_printers(out: Console) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """``(log, warn)`` callbacks for ``quantize_run`` that print to ``out``."""

    def log(message: str) -> None:
        out.print(message, highlight=False)

    def warn(message: str) -> None:
        out.print(f"[yellow]warning:[/] {message}", highlight=False)

    return log, warn


def render_report(report: dict[str, Any], out: Console) -> None:
    """FP32-vs-INT8 table per split, then the weights sizes and where the model went."""
    from rich.table import Table

    from edge_sealant.metrics import format_difference, format_with_ci

    int8_threshold = (report.get("int8_threshold") or {}).get("value", report["threshold"])
    thresholds = (f"threshold {report['threshold']:.4g}" if int8_threshold == report["threshold"]
                  else f"thresholds FP32 {report['threshold']:.4g}, INT8 {int8_threshold:.4g}")
    table = Table(title=f"{report['model']} {report['backend']}: FP32 vs INT8 ({thresholds})")
    for column in ("split", "n", "AUROC fp32", "AUROC int8", "drop (paired 95%)", "acc fp32", "acc int8"):
        table.add_column(column, justify="right" if column != "split" else "left")

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    roles = report.get("split_roles", {})
    for split, row in report["metrics"].items():
        table.add_row(
            f"{split} ({roles[split]})" if split in roles else split,
            str(row["n"]),
            format_with_ci(row["fp32"]["auroc"], row["fp32"].get("auroc_ci")),
            format_with_ci(row["int8"]["auroc"], row["int8"].get("auroc_ci")),
            format_difference(row["auroc_drop"], row.get("auroc_drop_ci")),
            fmt(row["fp32"]["accuracy"]),
            fmt(row["int8"]["accuracy"]),
        )
    out.print(table)
    for split, row in report["metrics"].items():
        peaks = row.get("heatmap_peaks")
        if peaks and peaks["n"]:
            out.print(f"{split}: INT8 heatmap peak in FP32's cell on {peaks['same_cell']:.1%} of {peaks['n']} defect images "
                      f"(within one cell {peaks['within_one_cell']:.1%}, on FP32's peak plateau {peaks['on_fp32_plateau']:.1%}, "
                      f"in FP32's region {peaks['in_fp32_region']:.1%}; "
                      f"target {peaks['target']:.0%} same cell)", highlight=False)
            deficit = peaks.get("moved_fp32_deficit")
            if deficit:
                ties = ": mostly near ties between saturated cells" if deficit["median"] <= PLATEAU else ""
                out.print(f"  where the peak moved, FP32 rates INT8's cell {deficit['median']:.3f} below its own peak "
                          f"(median; 90% within {deficit['p90']:.3f}){ties}", highlight=False)
    weights = report["weights"]
    if weights.get("ratio") is not None:
        out.print(
            f"weights {weights['int8_bytes'] / 1e6:.2f} MB (INT8) vs {weights['fp32_bytes'] / 1e6:.2f} MB (FP32): "
            f"{weights['ratio']:.2f}x; wrote {report['int8_model']}",
            highlight=False,
        )

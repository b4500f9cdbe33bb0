"""The ``edge-sealant`` command line: thin by design.

Each command parses options and calls one domain function. Domain modules never import
typer; they raise :class:`EdgeSealantError`, which becomes a one-line message and exit code 1.
Heavy libraries are imported inside the commands so ``edge-sealant --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console

from edge_sealant import __version__
from edge_sealant.card import parse_size
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
                    err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


def split_list(text: Optional[str]) -> Optional[list[str]]:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


GROUP_BY_HELP = (
    "Regex on file names: images whose first capture group (e.g. a part or tile id) is equal stay in one split. "
    "Exact and near duplicates always do."
)
MAX_GROUP_HELP = "Bound on near-duplicate chains before they are cut apart (default: 2% of the images, at least 16)."


# ---------------------------------------------------------------------------------- data
@data_app.command("inspect")
def data_inspect(
    data: Path = typer.Argument(..., help="YOLO data.yaml, or a dataset folder (YOLO or ImageFolder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the audit as JSON on stdout."),
    normal_classes: Optional[str] = typer.Option(None, help="Comma-separated YOLO class names that mean OK."),
    seed: int = typer.Option(0, help="Seed of the split made when val/test are missing."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help=GROUP_BY_HELP),
) -> None:
    """Audit a dataset: counts per split, boxes per class, sizes, label problems, leakage."""
    from edge_sealant.data.audit import audit_dataset, render_audit
    from edge_sealant.data.loading import load_dataset

    dataset = load_dataset(data, normal_classes=split_list(normal_classes), seed=seed, group_by=group_by)
    report = audit_dataset(dataset)
    if as_json:
        print_json(report)
    else:
        render_audit(report, console)


@data_app.command("split")
def data_split(
    data: Path = typer.Argument(..., help="YOLO data.yaml or dataset folder; all its images are pooled."),
    out: Path = typer.Argument(..., help="New folder for the split dataset (links by default)."),
    val: float = typer.Option(0.15, "--val", help="Fraction of images for val."),
    test: float = typer.Option(0.15, "--test", help="Fraction of images for test."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help=GROUP_BY_HELP),
    max_group: Optional[int] = typer.Option(None, "--max-group", help=MAX_GROUP_HELP),
    seed: int = typer.Option(0, help="Random seed (same seed, same split)."),
    normal_classes: Optional[str] = typer.Option(None, help="Comma-separated YOLO class names that mean OK."),
    copy: bool = typer.Option(False, "--copy", help="Copy the files instead of linking them."),
) -> None:
    """Freeze a leak-free, grouped, stratified train/val/test split as a dataset with a manifest."""
    from edge_sealant.data.freeze import split_dataset

    result = split_dataset(
        data, out, val=val, test=test, seed=seed, group_by=group_by, max_group_size=max_group,
        normal_classes=split_list(normal_classes), copy=copy,
    )
    counts = ", ".join(f"{split} {c['normal'] + c['defect']} ({c['defect']} defect)" for split, c in result.counts.items())
    grouping = result.grouping
    console.print(f"wrote {result.out}: {counts}", highlight=False)
    console.print(
        f"{grouping['groups']} groups (largest {grouping['largest_group']}, {grouping['multi_image_groups']} with more than one image); "
        f"manifest {result.manifest}", highlight=False,
    )
    if grouping["split_chains"]:
        console.print(
            f"[yellow]note:[/] {len(grouping['split_chains'])} near-duplicate chains over {grouping['max_group_size']} images were cut apart; "
            f"{grouping['cut_near_pairs']} near pairs may cross splits (the audit lists them)"
        )
    console.print(f"next: edge-sealant data inspect {result.data}", highlight=False)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Folder to write the YOLO dataset to."),
    n: int = typer.Option(400, "--n", help="Number of images (all splits)."),
    defect_ratio: float = typer.Option(0.3, help="Fraction of images with a defect."),
    size: str = typer.Option("320x112", help="Image size HxW (tall, like sealant line frames)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same images)."),
) -> None:
    """Generate a procedural sealant-bead dataset in YOLO format (the embedded default)."""
    from edge_sealant.data.synth import synthesize

    summary = synthesize(out, n=n, defect_ratio=defect_ratio, size=parse_size(size), seed=seed)
    console.print(f"wrote {summary['images']} images to {out} ({summary['counts']})")


# --------------------------------------------------------------------------------- train
@app.command()
def train(
    data: Optional[Path] = typer.Argument(None, help="YOLO data.yaml or dataset folder (may come from --config)."),
    model: Optional[str] = typer.Option(None, help="efficientnet_lite0 (default), efficientnet_b0, mobilenet_v3_small, mobilenet_v3_large."),
    imgsz: Optional[str] = typer.Option(None, help="Input size HxW, e.g. 512x192 (default: the model's)."),
    epochs: Optional[int] = typer.Option(None, help="Total epochs, linear probe included (default 15)."),
    out: Optional[Path] = typer.Option(None, help="Run folder to create (default runs/<model>)."),
    pretrained: Optional[str] = typer.Option(None, help="imagenet | none | PATH to a weights file."),
    balance: Optional[str] = typer.Option(None, help="none | undersample | oversample | weighted-loss | weighted-sampler (default)."),
    resize: Optional[str] = typer.Option(None, "--resize", help="stretch (default) | letterbox."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size (default 32)."),
    lr: Optional[float] = typer.Option(None, help="AdamW learning rate of the fine-tune (default 1e-3)."),
    ema_epochs: Optional[float] = typer.Option(None, help="Validate and keep an average of the weights with this half-life in epochs (default 0: off)."),
    probe_epochs: Optional[int] = typer.Option(None, help="Linear-probe epochs with a frozen backbone (default 1)."),
    patience: Optional[int] = typer.Option(None, help="Early stop after this many epochs without val AUROC gain (default 5)."),
    threshold_policy: Optional[str] = typer.Option(None, help="youden | max-f1 | recall@R | fpr@F | recall@R,fpr<=F (default recall@0.99)."),
    normal_classes: Optional[str] = typer.Option(None, help="Comma-separated YOLO class names that mean OK."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Disable training augmentation."),
    device: Optional[str] = typer.Option(None, help="auto (default) | cpu | cuda | cuda:N."),
    amp: Optional[str] = typer.Option(None, help="CUDA mixed precision: auto (default) | bf16 | fp16 | off."),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes (default 0; 2 helps on Colab GPUs)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (default 0)."),
    time_limit: Optional[float] = typer.Option(None, help="Stop before this many minutes of training (said in run.json)."),
    folds: Optional[int] = typer.Option(None, "--folds", help="K: grouped K-fold cross-validation on train+val, threshold on out-of-fold scores, then one model on all of it."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help=GROUP_BY_HELP),
    max_group: Optional[int] = typer.Option(None, "--max-group", help=MAX_GROUP_HELP),
    config: Optional[Path] = typer.Option(None, help="YAML file with the same keys as these options."),
    resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this folder."),
) -> None:
    """Train a normal-vs-defect classifier (linear probe, then fine-tune; best val AUROC kept)."""
    from edge_sealant import train as training

    if resume is not None:
        training.resume(resume, data=str(data) if data else None, epochs=epochs)
        return
    values: dict[str, Any] = training.load_config(config) if config else {}
    given = {
        "data": str(data) if data else None,
        "model": model,
        "imgsz": parse_size(imgsz) if imgsz else None,
        "epochs": epochs,
        "out": str(out) if out else None,
        "pretrained": pretrained,
        "balance": balance,
        "resize_mode": resize,
        "batch_size": batch_size,
        "lr": lr,
        "ema_epochs": ema_epochs,
        "probe_epochs": probe_epochs,
        "patience": patience,
        "threshold_policy": threshold_policy,
        "normal_classes": split_list(normal_classes),
        "augment": False if no_augment else None,
        "device": device,
        "amp": amp,
        "workers": workers,
        "seed": seed,
        "time_limit_min": time_limit,
        "folds": folds,
        "group_by": group_by,
        "max_group_size": max_group,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    if not values.get("data"):
        raise EdgeSealantError("missing DATA (a data.yaml or dataset folder), on the command line or in --config")
    values.setdefault("out", str(Path("runs") / values.get("model", "efficientnet_lite0")))
    result = training.train(training.TrainOptions.from_mapping(values))
    console.print(f"run saved to {result.run}; next: edge-sealant evaluate {result.run} {values['data']}")


# ------------------------------------------------------------------------------ evaluate
@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run folder (or an exported .xml/.onnx model)."),
    data: Path = typer.Argument(..., help="YOLO data.yaml or dataset folder."),
    split: str = typer.Option("test", help="Split to report on."),
    threshold_policy: Optional[str] = typer.Option(
        None, help="Re-choose the threshold on val (youden | max-f1 | recall@R | fpr@F | recall@R,fpr<=F) and store it in run.json."
    ),
    out: Optional[Path] = typer.Option(None, help="Folder for metrics.json and plots (default RUN/eval/<split>)."),
    leak_check: bool = typer.Option(
        True, "--leak-check/--no-leak-check", help="Also report metrics without images duplicated in other splits."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object on stdout."),
) -> None:
    """AUROC, AP, accuracy, recall, false alarms, confusion matrix and per-class recall."""
    from edge_sealant.evaluate import evaluate_run, render_metrics

    metrics = evaluate_run(run, data, split=split, threshold_policy=threshold_policy, out=out, leak_check=leak_check)
    if as_json:
        print_json(metrics)
    else:
        render_metrics(metrics, console)


# -------------------------------------------------------------------------------- export
@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run folder made by 'edge-sealant train'."),
    formats: str = typer.Option("onnx,openvino", "--format", help="Comma-separated: onnx, openvino."),
    precisions: str = typer.Option("fp32", "--precision", help="Comma-separated: fp32, fp16 (fp16: OpenVINO only)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", help="Also write a deployment zip (models, torch-free runtime, example, OVMS layout); never overwritten."),
    parity_images: int = typer.Option(64, help="Val images compared against torch (FP32 must agree within 1e-4)."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON on stdout."),
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
    model: Path = typer.Argument(..., help="Exported model (.xml or .onnx)."),
    value: float = typer.Argument(..., help="New decision threshold in [0, 1]."),
    sidecar: bool = typer.Option(False, "--sidecar", help="Write model.threshold.json next to the model instead of editing the file."),
) -> None:
    """Change a model's decision threshold without re-exporting (embedded metadata or sidecar)."""
    from edge_sealant.export import set_threshold

    change = set_threshold(model, value, mode="sidecar" if sidecar else "embedded")
    console.print(
        f"{change['model']}: threshold {change['previous']:g} -> {change['threshold']:g} "
        f"(in force from: {change['effective_source']}; wrote {', '.join(change['written'])})"
    )


# ------------------------------------------------------------------------------ quantize
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


# ------------------------------------------------------------------------------- predict
@app.command("predict")
def predict_cmd(
    model: Path = typer.Argument(..., help="Exported .xml/.onnx, or a run folder (best artifact: openvino int8 > fp32 > onnx)."),
    source: str = typer.Argument(..., help="Image file, folder (recursive), glob ('imgs/*.jpg') or video (.mp4/.avi/.mkv/.mov)."),
    out: Optional[Path] = typer.Option(None, "--out", help="preds.csv or preds.json (never overwritten)."),
    threshold: Optional[float] = typer.Option(None, help="Override the model's threshold."),
    device: str = typer.Option("CPU", help="OpenVINO device."),
    hint: str = typer.Option("THROUGHPUT", help="OpenVINO performance hint: LATENCY or THROUGHPUT."),
    precision: Optional[str] = typer.Option(None, help="OpenVINO inference precision: f32 (default), bf16, f16."),
    threads: Optional[int] = typer.Option(None, help="Inference threads (default: all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print rows and summary as JSON on stdout."),
) -> None:
    """Inspect images or video frames; one row per image, errors as rows, summary at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edge_sealant.predict import PROGRESS_MIN_ITEMS, predict, render_summary

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
            threads=threads, on_start=on_start, on_result=on_result,
        )
    finally:
        progress.stop()
    if as_json:
        print_json(report.to_dict())
    else:
        if out is None:
            for row in report.rows:
                value = "error: " + str(row.error) if row.error else f"{row.probability:.6f}  {row.decision}"
                console.print(f"{row.name}  {value}", highlight=False, markup=False)
        else:
            console.print(f"wrote {len(report.rows)} rows to {out}")
        render_summary(report, console)
    if report.rows and all(row.error for row in report.rows):  # rows kept, but a pipeline must see the failure
        raise EdgeSealantError(f"none of the {len(report.rows)} images could be inspected (see the error rows)")


# --------------------------------------------------------------------------------- bench
@app.command("bench")
def bench_cmd(
    run: Path = typer.Argument(..., help="Run folder (best.pt + exported/quantized models)."),
    data: Path = typer.Argument(..., help="YOLO data.yaml or dataset folder."),
    split: str = typer.Option("test", help="Split whose images are scored and timed."),
    backends: Optional[str] = typer.Option(None, help="Comma-separated: torch,onnxruntime,openvino (default all)."),
    precisions: Optional[str] = typer.Option(None, help="Comma-separated: fp32,fp16,int8,bf16 (default all; bf16 only where the CPU has it)."),
    threads: Optional[int] = typer.Option(None, help="Threads for every backend (default: physical cores)."),
    iterations: int = typer.Option(200, help="Timed batch-1 runs per row, after --warmup."),
    warmup: int = typer.Option(20, help="Untimed runs before timing."),
    e2e_images: int = typer.Option(200, help="Files streamed through the runtime for the end-to-end figures."),
    no_e2e: bool = typer.Option(False, "--no-e2e", help="Skip the end-to-end (file -> decision) figures."),
    reference: Optional[str] = typer.Option(None, help="full-res: add a timing-only EfficientNet-B0 row at the source resolution."),
    reference_size: Optional[str] = typer.Option(None, help="HxW of the --reference row (default: the split's image size)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here (PNGs go next to it)."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write the rows as CSV here."),
    md_out: Optional[Path] = typer.Option(None, "--md", help="Write a Markdown report here."),
    fail_on_drop: Optional[float] = typer.Option(None, help="Exit 1 when an INT8 row loses more than this AUROC vs the FP32 row of its backend."),
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
    bench.render_table(result, console)
    console.print(f"written: {', '.join(written.values())}", highlight=False)
    if result.gate:
        raise EdgeSealantError(f"INT8 AUROC drop above {fail_on_drop:g}: {'; '.join(result.gate)}")


# ---------------------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), help="Folder to create (must not exist or be empty)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny version for tests: 64x32 images, 2 epochs, few bench runs (< 60 s)."),
    threads: Optional[int] = typer.Option(None, help="Threads for training and every backend (default: physical cores)."),
) -> None:
    """Generate sealant-bead data, train, export, quantize and bench: the whole job in minutes."""
    from edge_sealant.demo import DemoOptions, run_demo

    run_demo(DemoOptions.preset(quick=quick, out=out, threads=threads), log=lambda m: console.print(m, highlight=False, markup=False), console=console)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

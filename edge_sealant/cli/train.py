"""Commands: `train` and `evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edge_sealant.card import parse_size
from edge_sealant.cli.common import GROUP_BY_HELP, MAX_GROUP_HELP, app, console, print_json, split_list
from edge_sealant.errors import EdgeSealantError

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

"""Commands: `train` and `evaluate`, and how their results are shown (rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from edge_sealant.card import parse_size
from edge_sealant.cli.common import GROUP_BY_HELP, MAX_GROUP_HELP, app, console, default_of, err_console, print_json, split_list
from edge_sealant.errors import EdgeSealantError
from edge_sealant.metrics import POLICY_HELP, format_with_ci
from edge_sealant.train.options import BALANCE_MODES, SUPERVISION_MODES, TrainOptions
from edge_sealant.train.paste import SUGGESTED_SHARE
from edge_sealant.train.progress import TrainProgress, auroc_text, epoch_line, summary_lines


def _default(name: str) -> Any:
    return default_of(TrainOptions, name)


# Every train option defaults to None so that --config values are only replaced by options the
# user typed; the help text shows the real default, read from TrainOptions.
_Opt = typer.Option


@app.command()
def train(
    data: Annotated[Optional[Path], typer.Argument(help="YOLO data.yaml or dataset folder (may come from --config).")] = None,
    model: Annotated[Optional[str], _Opt(help=f"efficientnet_lite0, efficientnet_b0, mobilenet_v3_small, mobilenet_v3_large (default {_default('model')}).")] = None,
    imgsz: Annotated[Optional[str], _Opt(help="Input size HxW, e.g. 512x192 (default: the model's).")] = None,
    epochs: Annotated[Optional[int], _Opt(help=f"Total epochs, linear probe included (default {_default('epochs')}).")] = None,
    out: Annotated[Optional[Path], _Opt(help="Run folder to create (default runs/<model>).")] = None,
    pretrained: Annotated[Optional[str], _Opt(help=f"imagenet | none | PATH to a weights file (default {_default('pretrained')}).")] = None,
    balance: Annotated[Optional[str], _Opt(help=f"{' | '.join(BALANCE_MODES)} (default {_default('balance')}).")] = None,
    resize: Annotated[Optional[str], _Opt("--resize", help=f"stretch | letterbox (default {_default('resize_mode')}).")] = None,
    batch_size: Annotated[Optional[int], _Opt(help=f"Batch size (default {_default('batch_size')}).")] = None,
    lr: Annotated[Optional[float], _Opt(help=f"AdamW learning rate of the fine-tune (default {_default('lr'):g}).")] = None,
    ema_epochs: Annotated[Optional[float], _Opt(help=f"Validate and keep an average of the weights with this half-life in epochs (default {_default('ema_epochs'):g}: off).")] = None,
    probe_epochs: Annotated[Optional[int], _Opt(help=f"Linear-probe epochs with a frozen backbone (default {_default('probe_epochs')}).")] = None,
    select: Annotated[Optional[str], _Opt("--select", help=f"Which epoch is the model: last (the end of the schedule) | best-val (best val AUROC, early stopping; with tens of defect images in val mostly noise) (default {_default('select')}).")] = None,
    patience: Annotated[Optional[int], _Opt(help=f"With --select best-val: early stop after this many epochs without val AUROC gain (default {_default('patience')}).")] = None,
    threshold_policy: Annotated[Optional[str], _Opt(help=f"{POLICY_HELP} (default {_default('threshold_policy')}).")] = None,
    normal_classes: Annotated[Optional[str], _Opt(help="Comma-separated YOLO class names that mean OK.")] = None,
    no_augment: Annotated[bool, _Opt("--no-augment", help="Disable training augmentation.")] = False,
    quarter_turns: Annotated[bool, _Opt("--quarter-turns", help="Also rotate by quarter turns (square --imgsz only): for defects with no direction of their own, e.g. cracks on a tile.")] = False,
    device: Annotated[Optional[str], _Opt(help=f"auto | cpu | cuda | cuda:N (default {_default('device')}).")] = None,
    amp: Annotated[Optional[str], _Opt(help=f"CUDA mixed precision: auto | bf16 | fp16 | off (default {_default('amp')}).")] = None,
    workers: Annotated[Optional[int], _Opt(help=f"DataLoader worker processes (default {_default('workers')}; 2 helps on Colab GPUs).")] = None,
    seed: Annotated[Optional[int], _Opt(help=f"Random seed (default {_default('seed')}).")] = None,
    supervision: Annotated[Optional[str], _Opt(help=f"{' | '.join(SUPERVISION_MODES)}: learn from the labels' boxes/polygons too (a defect heatmap in the model) or from image labels only; auto = boxes when the train labels have any (default {_default('supervision')}).")] = None,
    image_level_classes: Annotated[Optional[str], _Opt(help="Comma-separated defect classes whose boxes do not outline the defect: their images teach the image score only, no heatmap mask.")] = None,
    seg_weight: Annotated[Optional[float], _Opt(help=f"Weight of the heatmap's per-cell loss next to the image loss (default {_default('seg_weight'):g}).")] = None,
    heatmap_stride: Annotated[Optional[int], _Opt(help=f"Input pixels per heatmap cell: 16, or 8 for defects only a few input pixels across (4x the cells; default {_default('heatmap_stride')}).")] = None,
    heatmap_target: Annotated[Optional[str], _Opt(help=f"What a heatmap cell is taught: any (1 when a box or polygon touches it) | coverage (the share of it covered, relative to its neighbours: the peak lands on the defect, not a grazed neighbour) (default {_default('heatmap_target')}).")] = None,
    paste_defects: Annotated[Optional[float], _Opt(help=f"Share of normal training images that get a labelled defect region from another image pasted in (needs boxes/polygons; {SUGGESTED_SHARE:g} was measured; default {_default('paste_defects'):g}: off).")] = None,
    time_limit: Annotated[Optional[float], _Opt(help="Stop before this many minutes of training (said in run.json).")] = None,
    folds: Annotated[Optional[int], _Opt("--folds", help="K: grouped K-fold cross-validation on train+val, threshold on out-of-fold scores, then one model on all of it.")] = None,
    group_by: Annotated[Optional[str], _Opt("--group-by", help=GROUP_BY_HELP)] = None,
    max_group: Annotated[Optional[int], _Opt("--max-group", help=MAX_GROUP_HELP)] = None,
    config: Annotated[Optional[Path], _Opt(help="YAML file with the same keys as these options.")] = None,
    resume: Annotated[Optional[Path], _Opt(help="Continue the interrupted run in this folder.")] = None,
) -> None:
    """Train a normal-vs-defect classifier (linear probe, then fine-tune; the last epoch is the model unless --select best-val)."""
    from edge_sealant import train as training

    progress = RichTrainProgress(err_console)
    if resume is not None:
        training.resume(resume, progress=progress, data=str(data) if data else None, epochs=epochs)
        return
    given = {
        "data": str(data) if data else None, "model": model, "imgsz": parse_size(imgsz) if imgsz else None,
        "epochs": epochs, "out": str(out) if out else None, "pretrained": pretrained, "balance": balance,
        "resize_mode": resize, "batch_size": batch_size, "lr": lr, "ema_epochs": ema_epochs,
        "probe_epochs": probe_epochs, "select": select, "patience": patience, "threshold_policy": threshold_policy,
        "normal_classes": split_list(normal_classes), "augment": False if no_augment else None, "device": device,
        "quarter_turns": True if quarter_turns else None,
        "amp": amp, "workers": workers, "seed": seed, "time_limit_min": time_limit, "folds": folds,
        "group_by": group_by, "max_group_size": max_group, "supervision": supervision, "seg_weight": seg_weight,
        "paste_defects": paste_defects, "heatmap_stride": heatmap_stride, "heatmap_target": heatmap_target,
        "image_level_classes": split_list(image_level_classes),
    }
    values: dict[str, Any] = training.load_config(config) if config else {}
    values.update({k: v for k, v in given.items() if v is not None})
    if not values.get("data"):
        raise EdgeSealantError("missing DATA (a data.yaml or dataset folder), on the command line or in --config")
    values.setdefault("out", str(Path("runs") / values.get("model", _default("model"))))
    result = training.train(training.TrainOptions.from_mapping(values), progress=progress)
    console.print(f"run saved to {result.run}; next: edge-sealant evaluate {result.run} {values['data']}")


class RichTrainProgress(TrainProgress):
    """Training progress on a rich console: a bar per epoch, one line per epoch, the summary."""

    def __init__(self, console: Console):
        self.console = console
        self.bar: Any = None
        self.task: Any = None

    def _print(self, text: str) -> None:
        (self.bar.console if self.bar is not None else self.console).print(text, highlight=False, markup=False)

    def message(self, text: str) -> None:
        self._print(text)

    def warning(self, text: str) -> None:
        target = self.bar.console if self.bar is not None else self.console
        target.print(f"[bold yellow]warning:[/] {text}", highlight=False)

    def started(self, steps: int, best_auroc: Optional[float]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  model val AUROC {task.fields[best]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task("epoch", total=steps, loss=0.0, best=auroc_text(best_auroc))

    def epoch_started(self, epoch: int, epochs: int, phase: str) -> None:
        self.bar.reset(self.task, description=f"epoch {epoch + 1}/{epochs} {phase}")

    def step(self, mean_loss: float) -> None:
        self.bar.update(self.task, advance=1, loss=mean_loss)

    def epoch_finished(self, record: dict[str, Any], improved: bool, best_auroc: Optional[float]) -> None:
        self.bar.update(self.task, best=auroc_text(best_auroc))
        self._print(epoch_line(record, improved))

    def stopped(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.bar = None

    def finished(self, result: Any) -> None:
        styles = {"info": "", "note": "[yellow]note:[/] ", "warning": "[bold yellow]warning:[/] "}
        for kind, text in summary_lines(result):
            self.console.print(styles[kind], end="", highlight=False)
            self.console.print(text, highlight=False, markup=False)


# ------------------------------------------------------------------------------ evaluate
@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder (or an exported .xml/.onnx model).")],
    data: Annotated[Path, typer.Argument(help="YOLO data.yaml or dataset folder.")],
    split: Annotated[str, _Opt(help="Split to report on.")] = "test",
    threshold_policy: Annotated[Optional[str], _Opt(help=f"Re-choose the threshold on val, or on the out-of-fold scores of a --folds run ({POLICY_HELP}), and store it in run.json.")] = None,
    out: Annotated[Optional[Path], _Opt(help="Folder for metrics.json and plots (default RUN/eval/<split>).")] = None,
    leak_check: Annotated[bool, _Opt("--leak-check/--no-leak-check", help="Also report metrics without images duplicated in other splits.")] = True,
    as_json: Annotated[bool, _Opt("--json", help="Print the metrics as one JSON object on stdout.")] = False,
) -> None:
    """AUROC, AP, accuracy, recall, false alarms, confusion matrix and per-class recall."""
    from edge_sealant.evaluate import evaluate_run

    metrics = evaluate_run(run, data, split=split, threshold_policy=threshold_policy, out=out, leak_check=leak_check)
    if as_json:
        print_json(metrics)
    else:
        render_metrics(metrics, console)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def render_metrics(metrics: dict[str, Any], console: Console) -> None:
    """Headline metrics with intervals, the split's role, per-class recall, leaks, worst misses."""
    from edge_sealant.evaluate import ROLE_NOTES

    role = metrics.get("role", "held-out")
    console.print(_headline_table(metrics, role))
    if role in ROLE_NOTES:
        console.print(f"[bold yellow]{metrics['split']} is a {role} split:[/] {ROLE_NOTES[role]}", highlight=False)
    if metrics["recall_per_class"]:
        console.print(_per_class_table(metrics["recall_per_class"], metrics.get("auroc_per_class") or {}))
    roc = metrics.get("roc_at_recall")
    if roc:
        console.print(
            f"ranking: on this split's own ROC, {roc['recall']:.1%} recall costs a false-alarm rate of {roc['fpr']:.3f} "
            f"{format_with_ci(roc['fpr'], roc['fpr_ci'], 3).split(' ', 1)[-1]} (a threshold picked on these very images: not deployable)",
            highlight=False,
        )
    leak = metrics.get("leak_free")
    if leak and leak["excluded"]:
        auroc = format_with_ci(leak.get("auroc"), leak.get("auroc_ci"))
        console.print(
            f"[yellow]{leak['excluded']} of {metrics['n']} images have an exact or near duplicate in another split;[/] "
            f"on the {leak['kept']} others: AUROC {auroc}, recall {_fmt(leak.get('recall'))}, false-alarm rate {_fmt(leak.get('fpr'))}"
        )
    _render_heatmap_figures(metrics, console)
    for key, title in (("missed_defects", "missed defects"), ("false_alarms", "false alarms")):
        items = metrics[key]
        if items:
            shown = ", ".join(f"{m['file']} ({m['probability']:.3f})" for m in items[:10])
            parts = (metrics.get("errors_by_part") or {}).get(key)
            where = f" on {parts['parts']} of {parts['of_parts']} parts" if parts else ""
            console.print(f"[yellow]{title} ({len(items)}{where}):[/] {shown}{' ...' if len(items) > 10 else ''}")
    for warning in metrics.get("warnings", []):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if metrics.get("plots"):
        console.print(f"plots: {Path(next(iter(metrics['plots'].values()))).parent}")


def _render_heatmap_figures(metrics: dict[str, Any], console: Console) -> None:
    """A heatmap model's localization figures and the review of where heatmap and labels disagree."""
    located = metrics.get("localization")
    if located:
        by_size = ", ".join(f"{label} {b['found']}/{b['regions']}" for label, b in located["recall_by_size"].items() if b["regions"])
        console.print(
            f"heatmap: pointing game {format_with_ci(located['pointing_game'], located['pointing_game_ci'], 3)} on "
            f"{located['defect_images']} outlined defect images (a random peak: {located['pointing_game_chance']:.3f}); "
            f"labelled regions found by size: {by_size}",
            highlight=False,
        )
    review = metrics.get("review")
    if review and review["images"]:
        strongest = ", ".join(f"{i['file']} ({i['kind']}, {i['peak']:.2f})" for i in review["items"][:5])
        console.print(
            f"[yellow]review ({review['images']} images of {review['parts']} parts):[/] {review['unlabelled_on_defect_images']} heatmap regions outside the labels "
            f"on defect images, {review['unlabelled_on_normal_images']} on normal images, {review['unseen_labels']} labelled regions "
            f"the heatmap does not reach {review['level']:g} on; strongest: {strongest}",
            highlight=False,
        )
        if review.get("csv"):
            console.print(f"review: {review['csv']}, pictures (labels green, heatmap regions red) in {review['overlays']}", highlight=False)


def _headline_table(metrics: dict[str, Any], role: str) -> Table:
    title = f"{metrics['model']} ({metrics['backend']} {metrics['model_precision']}) on {metrics['split']} ({role}): {metrics['n']} images"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value [95% CI]", justify="right")
    for key in ("auroc", "average_precision", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "fpr"):
        value = metrics[key]
        table.add_row(key.replace("_", " "), format_with_ci(value, metrics.get(f"{key}_ci")) if isinstance(value, float) else _fmt(value))
    table.add_row("threshold", f"{metrics['threshold']:.4g} ({metrics['threshold_policy']})")
    cm = metrics["confusion_matrix"]
    table.add_row("confusion (tn fp / fn tp)", f"{cm['tn']} {cm['fp']} / {cm['fn']} {cm['tp']}")
    return table


def _per_class_table(recall_per_class: dict[str, Any], auroc_per_class: dict[str, Any]) -> Table:
    table = Table(title="per YOLO defect class: recall at the threshold, AUROC against all normal images")
    for column in ("class", "images", "parts", "caught", "recall", "AUROC [95% CI]"):
        table.add_column(column, justify="right" if column != "class" else "left")
    for name, entry in recall_per_class.items():
        ranked = auroc_per_class.get(name, {})
        auroc = format_with_ci(ranked.get("auroc"), ranked.get("auroc_ci"), 3)
        table.add_row(name, str(entry["images"]), _fmt(ranked.get("parts")), str(entry["detected"]), f"{entry['recall']:.3f}", auroc)
    return table

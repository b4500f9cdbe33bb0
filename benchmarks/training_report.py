"""Tabulate finished runs (run.json + eval/{val,test}/metrics.json) as Markdown and JSON.

    python benchmarks/training_report.py RUN [RUN ...] --out benchmarks/results/NAME
    python benchmarks/training_report.py RUN ... --earlier benchmarks/results/OLD.json[:RUN,RUN] --out ...

Every figure is read from the runs' own files; nothing is typed in by hand. ``--earlier`` adds
the rows of a committed report (runs whose folders are gone, e.g. trained in an earlier
session): each keeps its figures and is marked with the file and the CPU it came from, so
training minutes are not compared across machines by mistake.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np


def summarize(run: Path) -> dict[str, Any]:
    card = json.loads((run / "run.json").read_text())
    test, val = (_metrics(run, split) for split in ("test", "val"))
    val = val or card.get("metrics", {}).get("val", {})
    train = card.get("train", {})
    options = train.get("options", {})
    folds = train.get("folds") or {}
    oof = card.get("metrics", {}).get("oof", {})
    return {
        "run": run.name,
        "model": card["model"],
        "input": "x".join(str(v) for v in card["input_size"]),
        "supervision": card.get("supervision", "image"),
        "pretrained": options.get("pretrained"),
        "device": train.get("device"),
        "amp": train.get("amp"),
        "epochs_run": train.get("epochs_run"),
        "best_epoch": (train.get("best_epoch") or 0) + 1,
        # a --folds run: the K fold trainings plus the final model
        "train_minutes": round((train.get("train_seconds", 0) + sum(folds.get("fold_seconds", []))) / 60, 1),
        "epoch_seconds": [round(h["seconds"]) for h in train.get("history", [])],
        "val_auroc": val.get("auroc"),
        "val_auroc_ci": val.get("auroc_ci"),
        "oof_auroc": oof.get("auroc"),
        "oof_auroc_ci": oof.get("auroc_ci"),
        "fold_auroc_mean": folds.get("fold_auroc_mean"),
        "fold_auroc_std": folds.get("fold_auroc_std"),
        "test_auroc": test.get("auroc"),
        "test_auroc_ci": test.get("auroc_ci"),
        "test_recall": test.get("recall"),
        "test_recall_ci": test.get("recall_ci"),
        "test_fpr": test.get("fpr"),
        "test_fpr_ci": test.get("fpr_ci"),
        "test_roc_at_recall": test.get("roc_at_recall"),
        "test_pointing_game": (test.get("localization") or {}).get("pointing_game"),
        "test_pointing_game_ci": (test.get("localization") or {}).get("pointing_game_ci"),
        "threshold": card.get("threshold"),
        "threshold_policy": card.get("threshold_policy"),
        "leak_free": test.get("leak_free"),
        "command": _retrain_command(run, train) or train.get("command") or command_from_options({**options, "folds": options.get("folds") or folds.get("k")}),
        "note": train.get("note"),
    }


def _retrain_command(run: Path, train: dict[str, Any]) -> str:
    """A final model retrained from a --folds run (``benchmarks/fold_final_epochs.py``): its own call."""
    folds = train.get("folds") or {}
    if not folds.get("source_run"):
        return ""
    seed = f" --seed {folds['final_seed']}" if "final_seed" in folds else ""
    return (f"python benchmarks/fold_final_epochs.py {portable(folds['source_run'])} --epochs-run {train.get('epochs_run')}{seed} "
            f"--out runs/{run.name}")


def earlier_rows(spec: str) -> list[dict[str, Any]]:
    """The rows of a committed report (``FILE`` or ``FILE:RUN,RUN`` for some of its runs), each
    marked with the report's file name and CPU."""
    path, _, names = spec.partition(":")
    report = Path(path)
    data = json.loads(report.read_text())
    cpu = (data.get("cpu") or {}).get("cpu", "?")
    wanted = set(names.split(",")) if names else None
    rows = [{**row, "source": f"{report.name} ({cpu})"} for row in data["runs"] if wanted is None or row["run"] in wanted]
    if wanted and len(rows) != len(wanted):
        raise SystemExit(f"{report}: no run(s) {sorted(wanted - {r['run'] for r in rows})}")
    return rows


def _metrics(run: Path, split: str) -> dict[str, Any]:
    path = run / "eval" / split / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# Option -> flag where the name differs; options without a flag (stop_after, time_limit_action,
# extra) are not part of a reproducible call and are left out.
_FLAGS = {"time_limit_min": "--time-limit", "max_group_size": "--max-group", "resize_mode": "--resize"}
_NO_FLAG = {"data", "out", "model", "imgsz", "epochs", "pretrained", "extra", "stop_after", "time_limit_action"}


def command_from_options(options: dict[str, Any]) -> str:
    """The ``edge-sealant train`` call equivalent to a run's recorded options.

    Model, input, epochs and weights always; every other option only where it differs from
    ``TrainOptions``' default (seed, EMA, supervision...), so the call reproduces the run.
    """
    from dataclasses import MISSING, fields

    from edge_sealant.train.options import TrainOptions

    if not options:
        return ""
    size = options.get("imgsz")
    parts = ["edge-sealant", "train", portable(options["data"]), "--model", options["model"]]
    if size:
        parts += ["--imgsz", f"{size[0]}x{size[1]}"]
    parts += ["--epochs", str(options["epochs"]), "--pretrained", str(options["pretrained"])]
    for spec in fields(TrainOptions):
        value = options.get(spec.name)
        default = spec.default if spec.default is not MISSING else None
        if spec.name in _NO_FLAG or value is None or value == default:
            continue
        flag = _FLAGS.get(spec.name, "--" + spec.name.replace("_", "-"))
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, ",".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(parts + ["--out", "runs/" + Path(options["out"]).name])


def portable(path: str) -> str:
    """Machine paths become the layout every checkout has (``../shared/...``)."""
    marker = "/shared/"
    return "../shared/" + path.split(marker, 1)[1] if marker in path else path


def fmt(value: Any, ci: Any = None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not isinstance(value, float):
        return str(value)
    return f"{value:.{digits}f}" + (f" [{ci[0]:.{digits - 1}f}, {ci[1]:.{digits - 1}f}]" if ci else "")


def _roc(point: dict[str, Any] | None) -> str:
    return "-" if not point else fmt(point["fpr"], point.get("fpr_ci"), 3)


def recipe_of(command: str) -> str:
    """A run's command without its seed and output folder: runs of one recipe share it."""
    import re

    return re.sub(r" --(seed \S+|out \S+)", "", command)


def recipe_summary(rows: list[dict[str, Any]]) -> list[str]:
    """Mean and standard deviation over the seeds of each recipe (two runs or more)."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in rows:  # rows from an earlier report stay apart: another machine, another session
        groups.setdefault((recipe_of(r["command"]), r.get("source")), []).append(r)
    lines = []
    for (recipe, source), members in groups.items():
        if len(members) < 2:
            continue

        def stat(values: list[Any]) -> str:
            values = [v for v in values if v is not None]
            return f"{np.mean(values):.4f} +- {np.std(values, ddof=1):.4f}" if len(values) >= 2 else "-"

        lines.append(
            f"- {len(members)} seeds of `{recipe}`" + (f" from `{source}`" if source else "") + f" ({', '.join(m['run'] for m in members)}): val AUROC {stat([m['val_auroc'] for m in members])}, "
            f"test AUROC {stat([m['test_auroc'] for m in members])}, test FPR at 95% recall (own ROC) "
            f"{stat([(m.get('test_roc_at_recall') or {}).get('fpr') for m in members])} (mean +- sd)"
        )
    return (["Over seeds:", ""] + lines) if lines else []


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | model | input | supervision | pretrained | device | epochs (best) | train min | val AUROC (selection) "
        "| out-of-fold AUROC (selection) | test AUROC (held-out) | test recall | test FPR | test FPR at 95% recall, own ROC "
        "| leak-free test AUROC (n) | test pointing game |",
        "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        leak = r["leak_free"] or {}
        folds = "" if r["fold_auroc_mean"] is None else f"; folds {r['fold_auroc_mean']:.3f} +- {r['fold_auroc_std']:.3f}"
        lines.append(
            f"| {r['run']}{' (earlier)' if r.get('source') else ''} | {r['model']} | {r['input']} | {r.get('supervision', 'image')} | {r['pretrained']} | {r['device']}{' ' + r['amp'] if r['amp'] else ''} "
            f"| {r['epochs_run']} ({r['best_epoch']}) | {r['train_minutes']} | {fmt(r['val_auroc'], r['val_auroc_ci'])} "
            f"| {fmt(r['oof_auroc'], r['oof_auroc_ci'])}{folds} | {fmt(r['test_auroc'], r['test_auroc_ci'])} "
            f"| {fmt(r['test_recall'], r['test_recall_ci'], 3)} | {fmt(r['test_fpr'], r['test_fpr_ci'], 3)} "
            f"| {_roc(r.get('test_roc_at_recall'))} | {fmt(leak.get('auroc'))} ({leak.get('kept', '-')}) "
            f"| {fmt(r.get('test_pointing_game'), r.get('test_pointing_game_ci'), 3)} |"
        )
    lines += ["", *recipe_summary(rows), ""]
    for r in rows:
        source = f"; from `{r['source']}`" if r.get("source") else ""
        lines.append(f"- `{r['run']}`: `{r['command']}`; seconds per epoch {r['epoch_seconds']}" + (f"; {r['note']}" if r["note"] else "") + source)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="path without suffix; .md and .json are written")
    parser.add_argument("--title", default="Training runs")
    parser.add_argument("--earlier", action="append", default=[], metavar="FILE[:RUN,RUN]",
                        help="committed report JSON whose rows (or the named runs') to add (repeatable)")
    args = parser.parse_args()
    from edge_sealant.bench import cpu_info

    if not args.runs and not args.earlier:
        parser.error("give at least one run folder or --earlier report")
    rows = [row for report in args.earlier for row in earlier_rows(report)] + [summarize(run) for run in args.runs]
    cpu = cpu_info()
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu.get("isa", {}).items())
    machine = f"Trained on: {cpu.get('cpu', '?')} ({isa}). Intervals: 95%, as each run's evaluation wrote them (`ci` in its metrics: since 2026-11-28 a bootstrap of groups of images of one part for AUROC, Clopper-Pearson widened to it for rates; before, a bootstrap of images).\n\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"cpu": cpu, "runs": rows}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(f"# {args.title}\n\n" + machine + markdown(rows))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

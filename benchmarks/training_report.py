"""Tabulate finished runs (run.json + eval/test/metrics.json) as Markdown and JSON.

    python benchmarks/training_report.py RUN [RUN ...] --out benchmarks/results/NAME

Every figure is read from the runs' own files; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any


def summarize(run: Path) -> dict[str, Any]:
    card = json.loads((run / "run.json").read_text())
    test_file = run / "eval" / "test" / "metrics.json"
    test = json.loads(test_file.read_text()) if test_file.is_file() else {}
    train = card.get("train", {})
    options = train.get("options", {})
    return {
        "run": run.name,
        "model": card["model"],
        "input": "x".join(str(v) for v in card["input_size"]),
        "pretrained": options.get("pretrained"),
        "device": train.get("device"),
        "amp": train.get("amp"),
        "epochs_run": train.get("epochs_run"),
        "best_epoch": (train.get("best_epoch") or 0) + 1,
        "train_minutes": round(train.get("train_seconds", 0) / 60, 1),
        "epoch_seconds": [round(h["seconds"]) for h in train.get("history", [])],
        "val_auroc": card.get("metrics", {}).get("val", {}).get("auroc"),
        "test_auroc": test.get("auroc"),
        "test_recall": test.get("recall"),
        "test_fpr": test.get("fpr"),
        "threshold": card.get("threshold"),
        "threshold_policy": card.get("threshold_policy"),
        "leak_free": test.get("leak_free"),
        "command": train.get("command") or command_from_options(options),
        "note": train.get("note"),
    }


def command_from_options(options: dict[str, Any]) -> str:
    """The ``edge-sealant train`` call equivalent to a run's recorded options."""
    if not options:
        return ""
    size = options.get("imgsz")
    parts = ["edge-sealant", "train", portable(options["data"]), "--model", options["model"]]
    if size:
        parts += ["--imgsz", f"{size[0]}x{size[1]}"]
    parts += ["--epochs", str(options["epochs"]), "--pretrained", str(options["pretrained"])]
    if options.get("time_limit_min"):
        parts += ["--time-limit", f"{options['time_limit_min']:g}"]
    if options.get("device") not in (None, "auto"):
        parts += ["--device", options["device"]]
    return shlex.join(parts + ["--out", "runs/" + Path(options["out"]).name])


def portable(path: str) -> str:
    """Machine paths become the layout every checkout has (``../shared/...``)."""
    marker = "/shared/"
    return "../shared/" + path.split(marker, 1)[1] if marker in path else path


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | model | input | pretrained | device | epochs (best) | train min | val AUROC | test AUROC | test recall | test FPR | leak-free test AUROC (n) |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        leak = r["leak_free"] or {}
        lines.append(
            f"| {r['run']} | {r['model']} | {r['input']} | {r['pretrained']} | {r['device']}{' ' + r['amp'] if r['amp'] else ''} "
            f"| {r['epochs_run']} ({r['best_epoch']}) | {r['train_minutes']} | {fmt(r['val_auroc'])} | {fmt(r['test_auroc'])} "
            f"| {fmt(r['test_recall'])} | {fmt(r['test_fpr'])} | {fmt(leak.get('auroc'))} ({leak.get('kept', '-')}) |"
        )
    lines.append("")
    for r in rows:
        lines.append(f"- `{r['run']}`: `{r['command']}`; seconds per epoch {r['epoch_seconds']}" + (f"; {r['note']}" if r["note"] else ""))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="path without suffix; .md and .json are written")
    parser.add_argument("--title", default="Training runs")
    args = parser.parse_args()
    rows = [summarize(run) for run in args.runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(f"# {args.title}\n\n" + markdown(rows))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

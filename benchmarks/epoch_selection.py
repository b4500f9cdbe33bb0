#!/usr/bin/env python
"""Which epoch should be the model: the last of the schedule, or the best on val?

Each run folder holds ``last.pt`` (the end of the schedule) and, for runs trained with
``--select best-val`` (the default before ``--select``), ``best.pt`` (the epoch with the
best val AUROC). Both checkpoints are scored on val and test with the torch backend; per
checkpoint the script reports test AUROC (95% interval resampling parts), the val AUROC
(optimistic for the best-val checkpoint: val chose it), and the deployable figure: a
threshold chosen on that checkpoint's own val scores (``--policy``, default recall@0.95)
applied to test (recall, false-alarm rate). Runs are grouped by supervision (image / boxes)
and summarised over seeds (mean +- sd, and the mean paired difference last - best).

    python benchmarks/epoch_selection.py DATA RUN [RUN ...] --name magnetic-tile-256
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, publish_results  # noqa: E402

CHECKPOINTS = {"best-val": "best.pt", "last": "last.pt"}


def _checkpoint_figures(checkpoint: Path, data: Path, policy: str) -> dict[str, Any]:
    from edge_sealant.checkpoint import read_checkpoint
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import card_group_by, part_groups, score
    from edge_sealant.metrics import binary_metrics, choose_threshold, with_intervals
    from edge_sealant.torch_backend import TorchBackend

    backend = TorchBackend.from_run(checkpoint)
    dataset = load_dataset_like(data, backend.card.data_summary)
    splits = {}
    for split in ("val", "test"):
        loaded, scores = score(backend, dataset.split(split))
        splits[split] = (loaded.labels, scores, part_groups(loaded.samples, card_group_by(backend.card)))
    threshold = choose_threshold(splits["val"][0], splits["val"][1], policy)
    figures: dict[str, Any] = {"threshold": threshold}
    for split, (labels, scores, groups) in splits.items():
        m = with_intervals(binary_metrics(labels, scores, threshold), labels, scores, groups=groups)
        figures[split] = {k: m[k] for k in ("auroc", "auroc_ci", "recall", "recall_ci", "fpr", "fpr_ci")}
    state = read_checkpoint(checkpoint)
    figures["epoch"] = int(state["epoch"]) + 1 if "epoch" in state else None
    return figures


def measure(run: Path, data: Path, policy: str) -> dict[str, Any]:
    """Both checkpoints of ``run``; the best-val checkpoint's epoch is read from run.json."""
    import json

    card = json.loads((run / "run.json").read_text())
    train = card.get("train") or {}
    options = train.get("options") or {}
    entry = {"run": str(run), "supervision": card.get("supervision") or "image", "seed": options.get("seed"),
             "epochs_run": train.get("epochs_run"), "select": options.get("select", "best-val")}
    if train.get("epochs_run") != options.get("epochs", train.get("epochs_run")) or train.get("ema_epochs", options.get("ema_epochs")):
        # last.pt is then not the end of the schedule (early or time-limited stop), or not the kept (averaged) weights
        print(f"warning: {run}: {train.get('stopped_by') or 'weight average'}; last.pt is not the end of the schedule's model", file=sys.stderr)
    if entry["select"] == "last":
        print(f"warning: {run} kept its last epoch: best.pt and last.pt are one model", file=sys.stderr)
    for rule, name in CHECKPOINTS.items():
        figures = _checkpoint_figures(run / name, data, policy)
        if rule == "best-val":
            figures["epoch"] = int(train.get("best_epoch", -1)) + 1
        entry[rule] = figures
    return entry


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per supervision: mean +- sd of test AUROC and FPR per rule, and the paired last - best-val."""
    rows = []
    for supervision in sorted({r["supervision"] for r in runs}):
        group = [r for r in runs if r["supervision"] == supervision]
        row: dict[str, Any] = {"supervision": supervision, "runs": len(group)}
        for rule in CHECKPOINTS:
            for key in ("auroc", "fpr"):
                values = [r[rule]["test"][key] for r in group]
                row[f"{rule}_test_{key}"] = (statistics.fmean(values), statistics.pstdev(values))
        row["last_minus_best_test_auroc"] = statistics.fmean(r["last"]["test"]["auroc"] - r["best-val"]["test"]["auroc"] for r in group)
        row["last_minus_best_test_fpr"] = statistics.fmean(r["last"]["test"]["fpr"] - r["best-val"]["test"]["fpr"] for r in group)
        rows.append(row)
    return rows


def markdown(payload: dict[str, Any]) -> str:
    def ci(entry: dict[str, Any], key: str, digits: int = 4) -> str:
        lo, hi = entry[f"{key}_ci"]
        return f"{entry[key]:.{digits}f} [{lo:.{min(digits, 3)}f}, {hi:.{min(digits, 3)}f}]"

    cpu = payload["cpu"]
    lines = [
        f"# Epoch selection: last epoch vs best val epoch ({payload['date']})",
        "",
        f"{payload['data']}; torch FP32 on {cpu['cpu']}. Threshold: `{payload['policy']}` on each checkpoint's own val "
        "scores, applied to test. Val AUROC of the best-val checkpoint is optimistic (val chose it). Intervals: 95%, resampling parts.",
        "",
        "| run | supervision | seed | rule | epoch | val AUROC | test AUROC | test recall | test FPR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in payload["runs"]:
        for rule in CHECKPOINTS:
            f = entry[rule]
            lines.append(
                f"| {Path(entry['run']).name} | {entry['supervision']} | {entry['seed']} | {rule} | {f['epoch']} of {entry['epochs_run']} | "
                f"{f['val']['auroc']:.4f} | {ci(f['test'], 'auroc')} | {f['test']['recall']:.3f} | {ci(f['test'], 'fpr', 3)} |"
            )
    lines += [
        "",
        "| supervision | runs | test AUROC, last | test AUROC, best-val | last - best-val (mean of pairs) | test FPR, last | test FPR, best-val |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in payload["summary"]:
        def pm(key: str, digits: int = 4) -> str:
            mean, sd = row[key]
            return f"{mean:.{digits}f} +- {sd:.{digits}f}"

        lines.append(
            f"| {row['supervision']} | {row['runs']} | {pm('last_test_auroc')} | {pm('best-val_test_auroc')} | "
            f"{row['last_minus_best_test_auroc']:+.4f} | {pm('last_test_fpr', 3)} | {pm('best-val_test_fpr', 3)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--policy", default="recall@0.95", help="threshold policy applied on val (default recall@0.95)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="epoch-selection", help="results file name after date and CPU")
    args = parser.parse_args(argv)
    cpu = cpu_info()
    runs = [measure(r, args.data, args.policy) for r in args.runs]
    payload = {"date": date.today().isoformat(), "data": str(args.data), "policy": args.policy, "cpu": cpu,
               "runs": runs, "summary": summarise(runs)}
    publish_results(args.results, f"{args.name}_epoch-selection", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())

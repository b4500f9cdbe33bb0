#!/usr/bin/env python
"""Post-training INT8 vs quantization-aware fine-tuning, on the same FP32 models.

For each run, three copies are quantized with ``quantize_run``: post-training on the IR (the
OpenVINO route, the default: ``ptq``), NNCF on the torch net without fine-tuning
(``--qat-epochs 0``: ``torch-ptq``, the control that separates the fine-tune's share from the
route's) and with ``qat_epochs`` (``qat``). All reports compare with the same FP32 IR on val
and test (f32 execution), so the table holds the AUROC
drop (FP32 - INT8) per split with its paired interval (both models on the same resampled parts),
the models' own AUROC intervals, the heatmap peak agreement, and the
seconds each route took. The issue's target is a drop <= 0.005 on both splits.
``--overflow-fix`` applies one NNCF overflow-fix setting to every route (default: the recipe's);
``--routes ptq`` measures only some routes (post-training alone takes about a minute a run).

    python benchmarks/int8_qat.py DATA RUN [RUN ...] --epochs 1 --work runs/int8_qat --name magnetic-tile-256
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, cpu_label, publish_results  # noqa: E402
from edge_sealant.metrics import format_difference  # noqa: E402
from edge_sealant.quantize.run import OVERFLOW_FIXES  # noqa: E402

TARGET_DROP = 0.005
SPLITS = ("val", "test")
VARIANTS = ("ptq", "torch-ptq", "qat")


def _fresh_copy(run: Path, dest: Path) -> Path:
    """``run`` without INT8 models or evaluations (symlinked checkpoints become files)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run, dest, symlinks=False, ignore=shutil.ignore_patterns("int8", "eval", "folds"))
    return dest


def _rescored(copy: Path, data: Path) -> dict[str, Any]:
    """The quantize report of ``copy``'s INT8 model with its FP32-vs-INT8 figures measured again
    by today's code (e.g. the drop's paired interval, added after the model was made)."""
    import json

    from edge_sealant.card import ModelCard
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import card_group_by
    from edge_sealant.imageset import load_images
    from edge_sealant.quantize.scoring import score_fp32_vs_int8

    int8 = copy / "openvino" / "int8"
    report = json.loads((int8 / "quantize_report.json").read_text())
    card = ModelCard.load(copy)
    dataset = load_dataset_like(data, card.data_summary or {})
    eval_sets = {split: load_images(dataset.split(split), card) for split in SPLITS}
    scored = score_fp32_vs_int8(copy / "openvino" / "fp32" / "model.xml", int8 / "model.xml", eval_sets, card.threshold, card_group_by(card))
    report["metrics"] = scored.comparison
    return report


def measure(run: Path, data: Path, epochs: float, work: Path, reuse: bool = False, overflow_fix: str | None = None,
            routes: tuple[str, ...] = VARIANTS) -> dict[str, Any]:
    """Every route on copies of ``run``: {variant: {split: figures}, seconds}. ``reuse``: score
    the INT8 models already in ``work`` instead of quantizing again. ``overflow_fix``: passed to
    ``quantize_run`` for every route (None: the recipe's). ``routes``: which of ``VARIANTS``."""
    from edge_sealant.quantize import quantize_run

    entry: dict[str, Any] = {"run": str(run)}
    for variant, qat_epochs in zip(VARIANTS, (None, 0.0, epochs)):
        if variant not in routes:
            continue
        copy = work / f"{run.name}-{variant}"
        if reuse and (copy / "openvino" / "int8" / "model.xml").is_file():
            report = _rescored(copy, data)
            made_with = (report["settings"].get("qat") or {}).get("epochs")
            if qat_epochs is not None and made_with != qat_epochs:
                raise SystemExit(f"{copy}: its INT8 model was fine-tuned for {made_with} epoch(s), not {qat_epochs}; run without --reuse")
            if overflow_fix is not None and report["settings"].get("overflow_fix") != overflow_fix:
                raise SystemExit(f"{copy}: its INT8 model was made with overflow fix {report['settings'].get('overflow_fix')!r}, not {overflow_fix!r}; run without --reuse")
        else:
            copy = _fresh_copy(run, copy)
            report = quantize_run(copy, data, qat_epochs=qat_epochs, overflow_fix=overflow_fix, log=lambda line: print(f"  [{run.name} {variant}] {line}", flush=True))
        figures: dict[str, Any] = {"seconds": report["seconds"], "engine": report["settings"]["engine"],
                                   "overflow_fix": report["settings"].get("overflow_fix")}
        for split in SPLITS:
            row = report["metrics"].get(split)
            if row is None:
                continue
            peaks = row.get("heatmap_peaks") or {}
            figures[split] = {
                "fp32_auroc": row["fp32"]["auroc"], "fp32_auroc_ci": row["fp32"]["auroc_ci"],
                "int8_auroc": row["int8"]["auroc"], "int8_auroc_ci": row["int8"]["auroc_ci"],
                "auroc_drop": row["auroc_drop"], "auroc_drop_ci": row.get("auroc_drop_ci"), "peak_same_cell": peaks.get("same_cell"),
                "peak_in_fp32_region": peaks.get("in_fp32_region"),
            }
        entry[variant] = figures
    return entry


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant and split: mean +- sd of the drop, and how many runs meet the target on both splits."""
    summary: dict[str, Any] = {}
    for variant in [v for v in VARIANTS if all(v in r for r in runs)]:
        row: dict[str, Any] = {}
        for split in SPLITS:
            drops = [r[variant][split]["auroc_drop"] for r in runs if split in r[variant]]
            if drops:
                row[split] = (statistics.fmean(drops), statistics.pstdev(drops))
        row["runs_meeting_target"] = sum(
            all(r[variant][s]["auroc_drop"] <= TARGET_DROP for s in SPLITS if s in r[variant]) for r in runs
        )
        row["seconds"] = statistics.fmean(r[variant]["seconds"] for r in runs)
        summary[variant] = row
    return summary


def markdown(payload: dict[str, Any]) -> str:
    def auroc(entry: dict[str, Any], key: str) -> str:
        lo, hi = entry[f"{key}_ci"]
        return f"{entry[key]:.4f} [{lo:.3f}, {hi:.3f}]"

    def share(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    cpu = payload["cpu"]
    lines = [
        f"# INT8: post-training vs quantization-aware fine-tune ({payload['date']})",
        "",
        f"{payload['data']}; OpenVINO FP32 and INT8 (f32 execution) on {cpu_label(cpu)}. "
        f"Routes: {', '.join(payload.get('routes', VARIANTS))}. "
        + (f"QAT: {payload['epochs']:g} epoch(s) of the train split. " if "qat" in payload.get("routes", VARIANTS) else "")
        + f"NNCF overflow fix: {payload.get('overflow_fix') or 'as the recipe sets it'}. "
        f"Target: AUROC drop <= {TARGET_DROP} on both splits. Intervals: 95%, resampling parts.",
        "",
        "| run | route | split | FP32 AUROC | INT8 AUROC | drop (paired 95%) | heatmap peak: same cell | in FP32's region | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in payload["runs"]:
        for variant in [v for v in VARIANTS if v in entry]:
            figures = entry[variant]
            for split in SPLITS:
                if split not in figures:
                    continue
                f = figures[split]
                lines.append(
                    f"| {Path(entry['run']).name} | {variant} | {split} | {auroc(f, 'fp32_auroc')} | {auroc(f, 'int8_auroc')} | "
                    f"{format_difference(f['auroc_drop'], f.get('auroc_drop_ci'))} | {share(f['peak_same_cell'])} | {share(f['peak_in_fp32_region'])} | {figures['seconds']:.0f} |"
                )
    lines += ["", "| route | val drop (mean +- sd) | test drop (mean +- sd) | runs meeting the target on both splits | seconds |",
              "|---|---|---|---|---|"]
    for variant, row in payload["summary"].items():
        cells = [f"{row[s][0]:+.4f} +- {row[s][1]:.4f}" if s in row else "-" for s in SPLITS]
        lines.append(f"| {variant} | {cells[0]} | {cells[1]} | {row['runs_meeting_target']} of {len(payload['runs'])} | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--epochs", type=float, default=1.0, help="QAT epochs (default 1)")
    parser.add_argument("--work", type=Path, default=Path("runs") / "int8_qat", help="folder for the run copies")
    parser.add_argument("--overflow-fix", choices=OVERFLOW_FIXES, default=None,
                        help="NNCF overflow fix for every route (default: the recipe's)")
    parser.add_argument("--routes", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)")
    parser.add_argument("--reuse", action="store_true", help="score the INT8 models already in --work instead of quantizing again")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default=None, help="dataset name in the results file <date>_<cpu>_<name>_int8-qat (default: the data folder's)")
    args = parser.parse_args(argv)
    cpu = cpu_info()
    routes = tuple(args.routes.split(","))
    if not set(routes) <= set(VARIANTS):
        parser.error(f"--routes: choose from {', '.join(VARIANTS)}")
    runs = [measure(r, args.data, args.epochs, args.work, args.reuse, args.overflow_fix, routes) for r in args.runs]
    payload = {"date": date.today().isoformat(), "data": str(args.data), "epochs": args.epochs, "overflow_fix": args.overflow_fix, "routes": list(routes), "cpu": cpu,
               "runs": runs, "summary": summarise(runs)}
    publish_results(args.results, f"{args.name or Path(args.data).resolve().parent.name}_int8-qat", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())

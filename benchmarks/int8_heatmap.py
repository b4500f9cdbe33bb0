#!/usr/bin/env python
"""INT8 heatmap models against their FP32 source: AUROC drop, heatmap peak agreement, latency.

For each run (a box-supervised run with ``openvino/fp32`` and ``openvino/int8``), on the val
and test splits the run was trained around: AUROC of both with intervals and the drop, how
often INT8's heatmap peak is FP32's cell (issue #10: >= 95% of defect images), one cell
away, or on FP32's peak plateau (cells within 0.05 of its maximum), and batch-1 OpenVINO
latency (p50, 2 threads, alternating rounds).

    edge-sealant quantize RUN DATA                      # default INT8
    edge-sealant quantize RUN2 DATA --max-drop 0.005    # accuracy control, on a copy of RUN
    python benchmarks/int8_heatmap.py DATA RUN RUN2 [--label default --label max-drop]

Results: ``benchmarks/results/<date>_<cpu>_int8_heatmap.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant import bench  # noqa: E402


def measure(run: Path, data: Path) -> dict[str, Any]:
    from edge_sealant.card import ModelCard
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.imageset import load_images
    from edge_sealant.evaluate import card_group_by
    from edge_sealant.quantize.scoring import score_fp32_vs_int8

    card = ModelCard.load(run)
    dataset = load_dataset_like(data, card.data_summary)
    eval_sets = {split: load_images(dataset.split(split), card) for split in ("val", "test")}
    fp32, int8 = run / "openvino" / "fp32" / "model.xml", run / "openvino" / "int8" / "model.xml"
    scored = score_fp32_vs_int8(fp32, int8, eval_sets, card.threshold, card_group_by(card))
    return {"run": str(run), "kept_in_float": _kept_in_float(int8), "splits": scored.comparison}


def _kept_in_float(int8: Path) -> list[str]:
    """Operations accuracy control put back in float (none for a plain quantization)."""
    import json

    manifest = json.loads((int8.parent / "calibration.json").read_text())
    return list((manifest.get("accuracy_control") or {}).get("reverted_operations", []))


def latencies(runs: list[Path], rounds: int = 5, iterations: int = 300) -> list[dict[str, float]]:
    import numpy as np

    from edge_sealant.runtime import open_backend

    backends = [(open_backend(r / "openvino" / "fp32" / "model.xml", threads=2), open_backend(r / "openvino" / "int8" / "model.xml", threads=2)) for r in runs]
    height, width = backends[0][0].card.input_size
    image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    samples = [([], []) for _ in runs]
    for _ in range(rounds):
        for pair, sample in zip(backends, samples):
            for backend, values in zip(pair, sample):
                values += bench.time_calls(lambda i, b=backend: b.predict(image), iterations // rounds, 10)
    return [{"fp32_p50_ms": float(np.median(f)) * 1e3, "int8_p50_ms": float(np.median(i)) * 1e3} for f, i in samples]


def markdown(payload: dict[str, Any]) -> str:
    cpu = payload["cpu"]
    lines = [f"# INT8 heatmap models vs FP32 ({payload['date']})", "",
             f"{bench.cpu_label(cpu)}; data: `{payload['data']}`; "
             "peaks on the defect images of each split.", "",
             "| model | split | n defects | AUROC FP32 | AUROC INT8 | drop | peak same cell | within one cell | on FP32 plateau | in FP32's region | INT8 p50 ms (FP32) |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, result, latency in zip(payload["labels"], payload["runs"], payload["latency"]):
        for split, row in result["splits"].items():
            peaks = row["heatmap_peaks"]
            ci = lambda m: f"{m['auroc']:.4f} [{m['auroc_ci'][0]:.3f}, {m['auroc_ci'][1]:.3f}]"  # noqa: E731
            lines.append(f"| {label} | {split} | {peaks['n']} | {ci(row['fp32'])} | {ci(row['int8'])} | {row['auroc_drop']:.4f} | "
                         f"{peaks['same_cell']:.3f} | {peaks['within_one_cell']:.3f} | {peaks['on_fp32_plateau']:.3f} | "
                         f"{_rate(peaks.get('in_fp32_region'))} | {latency['int8_p50_ms']:.2f} ({latency['fp32_p50_ms']:.2f}) |")
    lines += ["", "Targets (issue #10): AUROC drop <= 0.005 on both splits; INT8 peak in FP32's cell on >= 95% of defect images.", ""]
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--label", action="append", default=None, help="one per run (default: the folder names)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    labels = args.label or [r.name for r in args.runs]
    payload: dict[str, Any] = {"date": date.today().isoformat(), "cpu": bench.cpu_info(), "data": str(args.data), "labels": labels,
                               "runs": [measure(run, args.data) for run in args.runs], "latency": latencies(args.runs)}
    bench.publish_results(args.results, "int8_heatmap", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Where the INT8 model's threshold should come from: FP32's, or its own val scores.

For each run (its ``openvino/fp32`` and ``openvino/int8`` models, made by ``edge-sealant
export`` and ``quantize``) and each threshold policy, the threshold is chosen on val as
training does, then applied to the held-out test split:

* FP32 at FP32's threshold (what the FP32 model ships with);
* INT8 at FP32's threshold (what ``quantize --keep-threshold`` ships);
* INT8 at the threshold the policy picks on INT8's own val scores (``quantize``'s default).

Test recall and false-alarm rate carry 95% intervals that resample parts (Clopper-Pearson
widened to the grouped bootstrap, as ``evaluate`` reports them).

    python benchmarks/int8_threshold.py DATA RUN [RUN ...] --name magnetic-tile-256
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, cpu_label, publish_results  # noqa: E402

POLICIES = ("recall@0.99", "recall@0.95")


def _scores(model: Path, data: Path) -> dict[str, Any]:
    """{split: (labels, probabilities, part groups)} of val and test through ``model``."""
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import card_group_by, part_groups, score
    from edge_sealant.runtime.backends import open_backend

    backend = open_backend(model)
    dataset = load_dataset_like(data, backend.card.data_summary)
    out = {}
    for split in ("val", "test"):
        loaded, scores = score(backend, dataset.split(split))
        out[split] = (loaded.labels, scores, part_groups(loaded.samples, card_group_by(backend.card)))
    return out


def _at(split: tuple[Any, Any, Any], threshold: float) -> dict[str, Any]:
    from edge_sealant.metrics import binary_metrics, with_intervals

    labels, scores, groups = split
    m = with_intervals(binary_metrics(labels, scores, threshold), labels, scores, groups=groups)
    return {"threshold": threshold, "recall": m["recall"], "recall_ci": m["recall_ci"], "fpr": m["fpr"], "fpr_ci": m["fpr_ci"]}


def measure(run: Path, data: Path) -> dict[str, Any]:
    from edge_sealant.metrics import choose_threshold

    fp32 = _scores(run / "openvino" / "fp32" / "model.xml", data)
    int8 = _scores(run / "openvino" / "int8" / "model.xml", data)
    rows = []
    for policy in POLICIES:
        fp32_threshold = choose_threshold(fp32["val"][0], fp32["val"][1], policy)
        int8_threshold = choose_threshold(int8["val"][0], int8["val"][1], policy)
        rows.append({
            "policy": policy,
            "fp32": _at(fp32["test"], fp32_threshold),
            "int8_at_fp32_threshold": _at(int8["test"], fp32_threshold),
            "int8_at_own_threshold": _at(int8["test"], int8_threshold),
        })
    return {"run": str(run), "rows": rows}


def markdown(payload: dict[str, Any]) -> str:
    def cell(entry: dict[str, Any]) -> str:
        lo, hi = entry["fpr_ci"]
        return f"{entry['threshold']:.4f} | {entry['recall']:.3f} | {entry['fpr']:.3f} [{lo:.2f}, {hi:.2f}]"

    cpu = payload["cpu"]
    lines = [
        f"# INT8 threshold: FP32's or its own ({payload['date']})",
        "",
        f"{payload['data']}; OpenVINO FP32 and INT8 (f32 execution) on {cpu_label(cpu)}. "
        f"Thresholds chosen on val with the policy; recall and "
        "false-alarm rate (FPR) measured on test, intervals 95% resampling parts.",
        "",
        "| run | policy | FP32: threshold | recall | FPR | INT8 at FP32's: threshold | recall | FPR | INT8 at its own: threshold | recall | FPR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in payload["runs"]:
        for row in entry["rows"]:
            lines.append(
                f"| {Path(entry['run']).name} | {row['policy']} | {cell(row['fp32'])} | "
                f"{cell(row['int8_at_fp32_threshold'])} | {cell(row['int8_at_own_threshold'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="int8-threshold", help="results file name after date and CPU")
    args = parser.parse_args(argv)
    cpu = cpu_info()
    payload = {"date": date.today().isoformat(), "data": str(args.data), "cpu": cpu, "runs": [measure(r, args.data) for r in args.runs]}
    publish_results(args.results, f"{args.name}_int8-threshold", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Small defects on large frames: defect recall at a 5% false-alarm rate, image-only vs boxes.

The data: ``edge-sealant data synth OUT --size 2532x824 --defect-scale S`` (customer-size
frames whose defects are S times their usual size). Two runs trained on it with the same
model, input size and epochs, one ``--supervision image``, one or more from the boxes
(``--boxes-run`` repeated, e.g. heatmap stride 16 and 8). On the test
split this reports, for each run (torch FP32 scores):

* image-level AUROC with its 95% interval;
* defect recall at the threshold that flags 5% of the normal test frames (the highest
  threshold whose false-alarm rate is <= 5%), for all defect frames and for those whose
  largest defect box covers less than 0.1% of the frame, with Clopper-Pearson intervals.

    python benchmarks/small_defects.py DATA --image-run RUN_A --boxes-run RUN_B
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, result_stem, write_result_files  # noqa: E402
from edge_sealant.metrics import bootstrap_intervals, clopper_pearson  # noqa: E402

FALSE_ALARM_BUDGET = 0.05
SMALL = 0.001  # share of the frame


def largest_area(sample: Any) -> float:
    return max((r.points[2] * r.points[3] for r in sample.regions if r.kind == "box"), default=0.0)


def recall_at_budget(labels: np.ndarray, scores: np.ndarray, subset: np.ndarray) -> dict[str, Any]:
    """Recall of the defect frames in ``subset`` at the threshold flagging <= 5% of normal frames."""
    normal = np.sort(scores[labels == 0])
    allowed = int(np.floor(FALSE_ALARM_BUDGET * len(normal)))
    threshold = float(np.nextafter(normal[-allowed - 1], np.inf)) if allowed < len(normal) else float(normal[0])
    caught = int(np.sum(scores[subset] >= threshold))
    total = int(subset.sum())
    return {"threshold": threshold, "false_alarm_rate": float(np.mean(normal >= threshold)),
            "caught": caught, "defects": total, "recall": caught / total if total else None,
            "recall_ci": clopper_pearson(caught, total) if total else None}


def evaluate(run: Path, data: Path) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import score
    from edge_sealant.torch_backend import TorchBackend

    backend = TorchBackend.from_run(run)
    dataset = load_dataset_like(data, backend.card.data_summary)
    loaded, scores = score(backend, dataset.split("test"))
    labels = loaded.labels
    small = np.array([s.label == 1 and largest_area(s) < SMALL for s in loaded.samples])
    return {
        "run": str(run),
        "model": backend.card.model,
        "input_size": list(backend.card.input_size),
        "supervision": backend.card.supervision,
        "heatmap_stride": backend.card.heatmap_stride,
        "auroc": float(roc_auc_score(labels, scores)),
        "auroc_ci": bootstrap_intervals(labels, scores).get("auroc"),
        "all_defects": recall_at_budget(labels, scores, labels == 1),
        "small_defects": recall_at_budget(labels, scores, small),
    }


def markdown(payload: dict[str, Any]) -> str:
    def rate(entry: dict[str, Any]) -> str:
        if entry["recall"] is None:
            return "-"
        low, high = entry["recall_ci"]
        return f"{entry['recall']:.3f} [{low:.2f}, {high:.2f}] ({entry['caught']}/{entry['defects']})"

    lines = [
        f"# Small defects on 2532x824 frames ({payload['date']})",
        "",
        f"{payload['data']} (test split), {payload['cpu']['cpu']} ({', '.join(k for k, v in payload['cpu']['isa'].items() if v)}). "
        f"Recall at the threshold flagging <= {FALSE_ALARM_BUDGET:.0%} of the normal test frames; 'small': largest defect box "
        f"< {SMALL:.1%} of the frame. Intervals: 95%, stratified bootstrap (AUROC), Clopper-Pearson (recall).",
        "",
        "| run | supervision | heatmap stride | input | test AUROC [95% CI] | recall at 5% FPR, all defects | recall at 5% FPR, small defects |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["runs"]:
        ci = r["auroc_ci"] or [float("nan")] * 2
        lines.append(
            f"| {Path(r['run']).name} | {r['supervision']} | {r.get('heatmap_stride') or '-'} | {r['input_size'][0]}x{r['input_size'][1]} | "
            f"{r['auroc']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}] | {rate(r['all_defects'])} | {rate(r['small_defects'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--image-run", type=Path, required=True)
    parser.add_argument("--boxes-run", type=Path, required=True, action="append", help="repeat to compare several (e.g. heatmap strides)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="small-defects", help="results file name after date and CPU")
    args = parser.parse_args(argv)
    cpu = cpu_info()
    payload = {"date": date.today().isoformat(), "data": str(args.data), "cpu": cpu,
               "runs": [evaluate(run, args.data) for run in [args.image_run, *args.boxes_run]]}
    stem = result_stem(payload["date"], cpu["cpu"], args.name)
    write_result_files(args.results, stem, payload, markdown(payload))
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())

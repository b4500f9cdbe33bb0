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
  largest defect box covers less than 0.1% of the frame, with Clopper-Pearson intervals;
* for each boxes run, its recall gain over the image-only run on the same frames, with a
  paired bootstrap interval (frames resampled, both thresholds re-chosen in every resample).
  Any run can stand as ``--image-run`` (the baseline) or ``--boxes-run``: e.g. an image-only
  run at a larger input against the default one, for the effect of input size alone;
* for each box-supervised run, the same paired gain over the image-only run of the same input
  size, when one is among the runs (the issue's comparison).

    python benchmarks/small_defects.py DATA --image-run RUN_A --boxes-run RUN_B

``--split all`` scores every frame of DATA: for a set generated with another ``--seed``,
none of which any run saw, large enough that the small defects decide something.
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

from edge_sealant.bench import cpu_info, cpu_label, publish_results  # noqa: E402
from edge_sealant.metrics import bootstrap_intervals, clopper_pearson  # noqa: E402

FALSE_ALARM_BUDGET = 0.05
SMALL = 0.001  # share of the frame


def largest_area(sample: Any) -> float:
    return max((r.points[2] * r.points[3] for r in sample.regions if r.kind == "box"), default=0.0)


def budget_threshold(normal_scores: np.ndarray) -> float:
    """The highest threshold flagging <= 5% of these normal frames."""
    normal = np.sort(normal_scores)
    allowed = int(np.floor(FALSE_ALARM_BUDGET * len(normal)))
    return float(np.nextafter(normal[-allowed - 1], np.inf)) if allowed < len(normal) else float(normal[0])


def recall_at_budget(labels: np.ndarray, scores: np.ndarray, subset: np.ndarray) -> dict[str, Any]:
    """Recall of the defect frames in ``subset`` at the threshold flagging <= 5% of normal frames."""
    normal = np.sort(scores[labels == 0])
    threshold = budget_threshold(normal)
    caught = int(np.sum(scores[subset] >= threshold))
    total = int(subset.sum())
    return {"threshold": threshold, "false_alarm_rate": float(np.mean(normal >= threshold)),
            "caught": caught, "defects": total, "recall": caught / total if total else None,
            "recall_ci": clopper_pearson(caught, total) if total else None}


def paired_recall_gain(
    labels: np.ndarray, base: np.ndarray, other: np.ndarray, subset: np.ndarray, resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """``other``'s recall at 5% FPR minus ``base``'s on the defect frames of ``subset``, with a
    paired bootstrap interval: the same frames are redrawn for both runs, normal frames and
    subset frames separately, and each run's threshold is re-chosen on the redrawn normals."""
    normal, defects = np.flatnonzero(labels == 0), np.flatnonzero(subset)
    if not len(defects):
        return {"gain": None, "gain_ci": None}

    def gain(n_idx: np.ndarray, d_idx: np.ndarray) -> float:
        return float(np.mean(other[d_idx] >= budget_threshold(other[n_idx])) - np.mean(base[d_idx] >= budget_threshold(base[n_idx])))

    rng = np.random.default_rng(seed)
    draws = [gain(rng.choice(normal, len(normal)), rng.choice(defects, len(defects))) for _ in range(resamples)]
    return {"gain": gain(normal, defects), "gain_ci": [float(v) for v in np.percentile(draws, [2.5, 97.5])]}


def add_same_input_gains(runs: list[dict[str, Any]], labels: np.ndarray, scores_of: list[np.ndarray], small: np.ndarray) -> None:
    """For each box-supervised run, its paired gain over the image-only run of the same input
    size among ``runs`` (the issue's comparison: same model, input and epochs), when there is one."""
    for figures, scores in zip(runs, scores_of):
        if figures["supervision"] == "image":
            continue
        same = [k for k, other in enumerate(runs) if other["supervision"] == "image" and other["input_size"] == figures["input_size"]]
        if not same:
            continue
        base = scores_of[same[0]]
        figures["gain_over_image_same_input"] = {
            "image_run": runs[same[0]]["run"],
            "all_defects": paired_recall_gain(labels, base, scores, labels == 1),
            "small_defects": paired_recall_gain(labels, base, scores, small),
        }


def split_samples(dataset: Any, split: str) -> list[Any]:
    if split == "all":
        return [s for name in dataset.splits for s in dataset.split(name)]
    return list(dataset.split(split))


def evaluate(run: Path, data: Path, split: str = "test") -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """The run's figures, and (labels, scores, small-defect mask) for the paired comparison."""
    from sklearn.metrics import roc_auc_score

    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import score
    from edge_sealant.torch_backend import TorchBackend

    backend = TorchBackend.from_run(run)
    dataset = load_dataset_like(data, backend.card.data_summary)
    loaded, scores = score(backend, split_samples(dataset, split))
    labels = loaded.labels
    small = np.array([s.label == 1 and largest_area(s) < SMALL for s in loaded.samples])
    figures = {
        "run": str(run),
        "model": backend.card.model,
        "input_size": list(backend.card.input_size),
        "supervision": backend.card.supervision,
        "heatmap_stride": backend.card.heatmap_stride,
        "auroc": float(roc_auc_score(labels, scores)),
        "auroc_ci": bootstrap_intervals(labels, scores).get("auroc"),
        "all_defects": recall_at_budget(labels, scores, labels == 1),
        "small_defects": recall_at_budget(labels, scores, small),
        "frames": [str(s.path) for s in loaded.samples],
    }
    return figures, labels, scores, small


def markdown(payload: dict[str, Any]) -> str:
    def rate(entry: dict[str, Any]) -> str:
        if entry["recall"] is None:
            return "-"
        low, high = entry["recall_ci"]
        return f"{entry['recall']:.3f} [{low:.2f}, {high:.2f}] ({entry['caught']}/{entry['defects']})"

    lines = [
        f"# Small defects on 2532x824 frames ({payload['date']})",
        "",
        f"{payload['data']} ({payload.get('split', 'test')} split{'s' if payload.get('split') == 'all' else ''}), {cpu_label(payload['cpu'])}. "
        f"Recall at the threshold flagging <= {FALSE_ALARM_BUDGET:.0%} of the normal frames scored; 'small': largest defect box "
        f"< {SMALL:.1%} of the frame. Intervals: 95%, stratified bootstrap (AUROC), Clopper-Pearson (recall).",
        "",
        "| run | supervision | heatmap stride | input | AUROC [95% CI] | recall at 5% FPR, all defects | recall at 5% FPR, small defects |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["runs"]:
        ci = r["auroc_ci"] or [float("nan")] * 2
        lines.append(
            f"| {Path(r['run']).name} | {r['supervision']} | {r.get('heatmap_stride') or '-'} | {r['input_size'][0]}x{r['input_size'][1]} | "
            f"{r['auroc']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}] | {rate(r['all_defects'])} | {rate(r['small_defects'])} |"
        )
    gains = [r for r in payload["runs"] if "gain_over_image" in r]
    if gains:
        base = payload["runs"][0]
        lines += ["", f"Recall gain over {Path(base['run']).name} ({base['supervision']}, {base['input_size'][0]}x{base['input_size'][1]}), "
                  "same frames (paired bootstrap, 2000 resamples, 95%):", "",
                  "| run | all defects | small defects |", "|---|---|---|"]
        for r in gains:
            cells = [f"{g['gain']:+.3f} [{g['gain_ci'][0]:+.3f}, {g['gain_ci'][1]:+.3f}]" if g["gain"] is not None else "-"
                     for g in (r["gain_over_image"]["all_defects"], r["gain_over_image"]["small_defects"])]
            lines.append(f"| {Path(r['run']).name} | {cells[0]} | {cells[1]} |")
    same_input = [r for r in payload["runs"] if "gain_over_image_same_input" in r]
    if same_input:
        lines += ["", "Recall gain of each box-supervised run over the image-only run of the same input size (paired, 95%):", "",
                  "| run | image-only run | all defects | small defects |", "|---|---|---|---|"]
        for r in same_input:
            entry = r["gain_over_image_same_input"]
            cells = [f"{g['gain']:+.3f} [{g['gain_ci'][0]:+.3f}, {g['gain_ci'][1]:+.3f}]" if g["gain"] is not None else "-"
                     for g in (entry["all_defects"], entry["small_defects"])]
            lines.append(f"| {Path(r['run']).name} | {Path(entry['image_run']).name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--image-run", type=Path, required=True)
    parser.add_argument("--boxes-run", type=Path, required=True, action="append", help="repeat to compare several (e.g. heatmap strides)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--name", default="small-defects", help="results file name after date and CPU")
    parser.add_argument("--split", default="test", help="split to score, or 'all' for a set no run saw (default test)")
    args = parser.parse_args(argv)
    cpu = cpu_info()
    image, labels, base, small = evaluate(args.image_run, args.data, args.split)
    runs, scores_of = [image], [base]
    for run in args.boxes_run:
        figures, run_labels, scores, _ = evaluate(run, args.data, args.split)
        scores_of.append(scores)
        if figures["frames"] != image["frames"] or not np.array_equal(run_labels, labels):
            raise SystemExit(f"{run} scored other frames than {args.image_run}: cannot pair them")
        figures["gain_over_image"] = {"all_defects": paired_recall_gain(labels, base, scores, labels == 1),
                                      "small_defects": paired_recall_gain(labels, base, scores, small)}
        runs.append(figures)
    add_same_input_gains(runs, labels, scores_of, small)
    for figures in runs:
        figures.pop("frames")
    payload = {"date": date.today().isoformat(), "data": str(args.data), "split": args.split, "cpu": cpu, "runs": runs}
    publish_results(args.results, args.name, payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())

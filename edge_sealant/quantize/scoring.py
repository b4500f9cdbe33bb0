"""Step 4 of ``quantize_run``: FP32 and INT8 scored the same way, side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VERIFY_IMAGES = 8  # per split: the published copy must reproduce the draft's INT8 scores on these
PEAK_AGREEMENT_TARGET = 0.95  # issue #10: INT8 keeps the heatmap's peak cell on >= 95% of defect images
PLATEAU = 0.05  # FP32 cells this close to FP32's maximum count as its peak too (saturated defect areas)


@dataclass
class Scored:
    """FP32 vs INT8 on each report split."""

    precision_hint: str  # inference precision the FP32 backend really ran with
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> compare_metrics(fp32, int8)
    int8: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> all INT8 metrics
    checks: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # split -> (images, INT8 scores)
    int8_threshold: float = 0.5  # the INT8 model's decision threshold (FP32's, or re-chosen on INT8's val scores)
    int8_operating_point: dict[str, Any] | None = None  # the re-choice on val, when there was one


def score_fp32_vs_int8(
    source: Path, draft: Path, eval_sets: dict[str, Any], threshold: float, group_by: str | None = None, policy: str | None = None
) -> Scored:
    """Metrics with intervals of both models on every loaded split (the intervals resample
    groups of images of one part, as ``evaluate`` does). FP32 is measured at ``threshold``;
    INT8 too, or, with ``policy`` and a val split, at the threshold ``policy`` picks on INT8's
    own val scores: rounding shifts the scores (on magnetic-tile INT8's ran higher, and FP32's
    threshold flagged up to 8.5 points more good parts), so the INT8 model gets the choice FP32 got."""
    from edge_sealant.evaluate import infer_images, part_groups
    from edge_sealant.metrics import binary_metrics, paired_auroc_difference_interval, threshold_choice, with_intervals
    from edge_sealant.runtime.backends import open_backend

    # open_backend runs f32 (PITFALL: the CPU plugin's bf16 default would make "FP32" bf16).
    fp32_backend, int8_backend = open_backend(source), open_backend(draft)
    scored = Scored(precision_hint=getattr(fp32_backend, "inference_precision", "f32"), int8_threshold=threshold)
    outputs = {name: (infer_images(fp32_backend, loaded.images), infer_images(int8_backend, loaded.images)) for name, loaded in eval_sets.items()}
    if policy is not None and "val" in outputs:
        choice = threshold_choice(eval_sets["val"].labels, outputs["val"][1].probability, policy)
        scored.int8_threshold = choice.threshold
        scored.int8_operating_point = {**choice.to_dict(), "chosen_on": "val (INT8 scores)"}
    for name, loaded in eval_sets.items():
        fp32_out, int8_out = outputs[name]
        fp32_scores, int8_scores = fp32_out.probability, int8_out.probability
        groups = part_groups(loaded.samples, group_by)
        fp32 = with_intervals(binary_metrics(loaded.labels, fp32_scores, threshold), loaded.labels, fp32_scores, groups=groups)
        int8 = with_intervals(
            binary_metrics(loaded.labels, int8_scores, scored.int8_threshold), loaded.labels, int8_scores, groups=groups
        )
        scored.comparison[name] = compare_metrics(fp32, int8)
        # the drop's own interval: both models on the same resampled parts
        scored.comparison[name]["auroc_drop_ci"] = paired_auroc_difference_interval(loaded.labels, fp32_scores, int8_scores, groups=groups)
        if fp32_out.heatmap is not None and int8_out.heatmap is not None:
            defects = np.asarray(loaded.labels) == 1
            scored.comparison[name]["heatmap_peaks"] = peak_agreement(fp32_out.heatmap[defects], int8_out.heatmap[defects])
        scored.int8[name] = int8
        scored.checks[name] = (loaded.images[:VERIFY_IMAGES], int8_scores[:VERIFY_IMAGES])
    return scored


def peak_agreement(fp32: np.ndarray, int8: np.ndarray) -> dict[str, Any]:
    """How often INT8 puts the heatmap's peak in the same cell as FP32 (defect images).

    ``same_cell``: the very cell (the issue's target, >= 0.95); ``within_one_cell``: at most one
    cell away in each direction; ``on_fp32_plateau``: INT8's peak cell is within ``PLATEAU`` of
    FP32's maximum in the FP32 heatmap; ``in_fp32_region``: INT8's peak cell is inside the
    region (connected cells >= the runtime's region level, what ``regions`` and overlays
    show) around FP32's peak. A defect larger than a cell saturates several cells almost
    equally, and which of them is the maximum is then a coin toss for any rounding:
    ``moved_fp32_deficit`` says how much lower FP32 rates the cell INT8 picked than its own peak,
    over the images where the peak moved (median and 90th percentile; on magnetic-tile the
    median was 0.001-0.02, i.e. near ties of saturated cells).
    """
    n = len(fp32)
    if n == 0:
        return {"n": 0, "same_cell": None, "within_one_cell": None, "on_fp32_plateau": None, "in_fp32_region": None,
                "moved_fp32_deficit": None, "target": PEAK_AGREEMENT_TARGET, "met": None}
    columns = fp32.shape[-1]
    flat32, flat8 = fp32.reshape(n, -1), int8.reshape(n, -1)
    a, b = np.argmax(flat32, axis=1), np.argmax(flat8, axis=1)
    distance = np.maximum(np.abs(a // columns - b // columns), np.abs(a % columns - b % columns))
    deficit = flat32.max(axis=1) - flat32[np.arange(n), b]
    plateau = deficit <= PLATEAU
    moved = deficit[distance > 0]
    same = float(np.mean(distance == 0))
    in_region = [_in_peak_region(fp32[k].reshape(-1, columns), int(a[k]), int(b[k])) for k in range(n)]
    return {"n": n, "same_cell": same, "within_one_cell": float(np.mean(distance <= 1)),
            "on_fp32_plateau": float(np.mean(plateau)), "in_fp32_region": float(np.mean(in_region)),
            "moved_fp32_deficit": {"median": float(np.median(moved)), "p90": float(np.quantile(moved, 0.9))} if moved.size else None,
            "target": PEAK_AGREEMENT_TARGET, "met": same >= PEAK_AGREEMENT_TARGET}


def _in_peak_region(heatmap: np.ndarray, fp32_peak: int, int8_peak: int) -> bool:
    """Whether INT8's peak cell lies in the region an operator sees around FP32's peak: the
    connected cells at or above the runtime's region level (the very cell when FP32's peak
    is below that level and there is no region)."""
    import cv2

    from edge_sealant.runtime.regions import DEFAULT_LEVEL

    columns = heatmap.shape[1]
    if heatmap.flat[fp32_peak] < DEFAULT_LEVEL:
        return fp32_peak == int8_peak
    _, components = cv2.connectedComponents((heatmap >= DEFAULT_LEVEL).astype(np.uint8), connectivity=8)
    return bool(components[int8_peak // columns, int8_peak % columns] == components[fp32_peak // columns, fp32_peak % columns])


def compare_metrics(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    """The report row of one split: headline metrics of both models and the drops (FP32 - INT8)."""

    def drop(key: str) -> float | None:
        if fp32.get(key) is None or int8.get(key) is None:
            return None
        return float(fp32[key]) - float(int8[key])

    keys = ("auroc", "auroc_ci", "accuracy", "balanced_accuracy", "recall", "recall_ci", "fpr", "fpr_ci")
    return {
        "fp32": {k: fp32.get(k) for k in keys},
        "int8": {k: int8.get(k) for k in keys},
        "auroc_drop": drop("auroc"),
        "accuracy_drop": drop("accuracy"),
        "n": int8.get("n"),
        "n_defect": int8.get("n_defect"),
    }


def weights_bytes(path: Path) -> int:
    """Bytes of a model's weights: the ``.bin`` of an IR, the ``.onnx`` file itself."""
    path = Path(path)
    return (path.with_suffix(".bin") if path.suffix == ".xml" else path).stat().st_size


def weights_sizes(source: Path, draft: Path) -> dict[str, Any]:
    """FP32 and INT8 weights bytes and their ratio (None when the FP32 file is empty)."""
    sizes: dict[str, Any] = {"fp32_bytes": weights_bytes(source), "int8_bytes": weights_bytes(draft)}
    sizes["ratio"] = sizes["int8_bytes"] / sizes["fp32_bytes"] if sizes["fp32_bytes"] else None
    return sizes

"""Step 4 of ``quantize_run``: FP32 and INT8 scored the same way, side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VERIFY_IMAGES = 8  # per split: the published copy must reproduce the draft's INT8 scores on these


@dataclass
class Scored:
    """FP32 vs INT8 on each report split."""

    precision_hint: str  # inference precision the FP32 backend really ran with
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> compare_metrics(fp32, int8)
    int8: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> all INT8 metrics
    checks: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # split -> (images, INT8 scores)


def score_fp32_vs_int8(source: Path, draft: Path, eval_sets: dict[str, Any], threshold: float) -> Scored:
    """Metrics with intervals of both models at ``threshold``, on every loaded split."""
    from edge_sealant.evaluate import score_images
    from edge_sealant.metrics import binary_metrics, with_intervals
    from edge_sealant.runtime.backends import open_backend

    # open_backend runs f32 (PITFALL: the CPU plugin's bf16 default would make "FP32" bf16).
    fp32_backend, int8_backend = open_backend(source), open_backend(draft)
    scored = Scored(precision_hint=getattr(fp32_backend, "inference_precision", "f32"))
    for name, loaded in eval_sets.items():
        fp32_scores = score_images(fp32_backend, loaded.images)
        int8_scores = score_images(int8_backend, loaded.images)
        fp32 = with_intervals(binary_metrics(loaded.labels, fp32_scores, threshold), loaded.labels, fp32_scores)
        int8 = with_intervals(binary_metrics(loaded.labels, int8_scores, threshold), loaded.labels, int8_scores)
        scored.comparison[name] = compare_metrics(fp32, int8)
        scored.int8[name] = int8
        scored.checks[name] = (loaded.images[:VERIFY_IMAGES], int8_scores[:VERIFY_IMAGES])
    return scored


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

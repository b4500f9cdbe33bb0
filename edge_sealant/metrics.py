"""Image-level metrics and operating-threshold policies (numpy + scikit-learn, no torch).

Decision rule everywhere: an image is a defect when ``probability >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_sealant.errors import EdgeSealantError

DEFAULT_POLICY = "recall@0.99"
POLICY_HELP = "youden | max-f1 | recall@R | fpr@F (e.g. recall@0.99: highest threshold keeping val defect recall >= 0.99)"


@dataclass(frozen=True)
class ThresholdPolicy:
    kind: str  # youden, max-f1, recall, fpr
    target: float | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}@{self.target:g}"


def parse_policy(text: str) -> ThresholdPolicy:
    text = text.strip().lower()
    if text in ("youden", "max-f1"):
        return ThresholdPolicy(text)
    kind, _, value = text.partition("@")
    if kind in ("recall", "fpr") and value:
        try:
            target = float(value)
        except ValueError:
            target = math.nan
        if 0.0 <= target <= 1.0:
            return ThresholdPolicy(kind, target)
    raise EdgeSealantError(f"threshold policy {text!r} is not one of: {POLICY_HELP}")


def _check_binary(labels: np.ndarray, scores: np.ndarray) -> None:
    if labels.shape != scores.shape or labels.ndim != 1:
        raise EdgeSealantError("labels and scores must be 1-D arrays of the same length")
    if not len(labels):
        raise EdgeSealantError("no images to score")


def _counts_at(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives for each threshold (decision: score >= threshold)."""
    pos = np.sort(scores[labels == 1])
    neg = np.sort(scores[labels == 0])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    return tp, fp


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Midpoints between distinct scores, plus one below and one above all of them.

    Midpoints (rather than the scores themselves) leave a margin, so a backend whose
    probabilities differ in the 5th decimal still makes the same decisions on val.
    """
    unique = np.unique(scores.astype(np.float64))
    mids = (unique[:-1] + unique[1:]) / 2
    low = max(0.0, unique[0] / 2)
    high = min(1.0, (unique[-1] + 1.0) / 2)
    return np.unique(np.concatenate([[low], mids, [high]]))


def choose_threshold(labels: Sequence[int], scores: Sequence[float], policy: ThresholdPolicy | str) -> float:
    """Pick the operating threshold on validation scores according to ``policy``."""
    if isinstance(policy, str):
        policy = parse_policy(policy)
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    _check_binary(labels, scores)
    n_pos, n_neg = int(labels.sum()), int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise EdgeSealantError("choosing a threshold needs both normal and defect images in the validation split")
    thresholds = candidate_thresholds(scores)
    tp, fp = _counts_at(labels, scores, thresholds)
    recall, fpr = tp / n_pos, fp / n_neg
    if policy.kind == "youden":
        index = int(np.argmax(recall - fpr))
    elif policy.kind == "max-f1":
        f1 = 2 * tp / np.maximum(2 * tp + fp + (n_pos - tp), 1)
        index = int(np.argmax(f1))
    elif policy.kind == "recall":
        ok = np.flatnonzero(recall >= policy.target - 1e-12)
        index = int(ok.max())  # highest threshold that still keeps the recall
    else:  # fpr
        ok = np.flatnonzero(fpr <= policy.target + 1e-12)
        index = int(ok.min())  # lowest threshold (most recall) within the false-alarm budget
    return float(thresholds[index])


def binary_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, Any]:
    """Threshold-free (AUROC, AP) and thresholded metrics of defect-vs-normal scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    _check_binary(labels, scores)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    tn = int(np.sum(~predicted & (labels == 0)))
    both = tp + fn > 0 and tn + fp > 0
    recall = tp / (tp + fn) if tp + fn else None
    specificity = tn / (tn + fp) if tn + fp else None
    precision = tp / (tp + fp) if tp + fp else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "n": int(len(labels)),
        "n_defect": tp + fn,
        "n_normal": tn + fp,
        "auroc": float(roc_auc_score(labels, scores)) if both else None,
        "average_precision": float(average_precision_score(labels, scores)) if both else None,
        "threshold": float(threshold),
        "accuracy": (tp + tn) / len(labels),
        "balanced_accuracy": (recall + specificity) / 2 if both else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fp / (fp + tn) if fp + tn else None,
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def recall_per_class(class_sets: Sequence[Sequence[str]], labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, dict[str, Any]]:
    """For each YOLO defect class: how many defect images containing it were caught."""
    out: dict[str, dict[str, Any]] = {}
    for classes, label, score in zip(class_sets, labels, scores):
        if label != 1:
            continue
        for name in set(classes):
            entry = out.setdefault(name, {"images": 0, "detected": 0})
            entry["images"] += 1
            entry["detected"] += int(score >= threshold)
    for entry in out.values():
        entry["recall"] = entry["detected"] / entry["images"]
    return dict(sorted(out.items()))

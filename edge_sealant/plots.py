"""PNG figures for training, evaluation and the bench (matplotlib, headless, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on Colab workers or factory PCs
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def training_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Train/val loss and val AUROC per epoch; the linear-probe epochs are shaded."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 3.6))
    def series(key: str) -> list[float]:  # None: no validation that epoch (the folds' final model)
        return [np.nan if h.get(key) is None else h[key] for h in history]

    ax_loss.plot(epochs, series("train_loss"), label="train loss")
    ax_loss.plot(epochs, series("val_loss"), label="val loss")
    ax_auc.plot(epochs, series("val_auroc"), color="tab:green", label="val AUROC")
    probe = [h["epoch"] for h in history if h.get("phase") == "probe"]
    for ax in (ax_loss, ax_auc):
        if probe:
            ax.axvspan(min(probe) - 0.5, max(probe) + 0.5, color="0.9", label="linear probe")
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    ax_loss.set_title("loss")
    ax_auc.set_title("validation AUROC")
    return _save(fig, path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str = "ROC") -> Path:
    """One or several (labels, scores) pairs as ROC curves with their AUROC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(labels, scores):.4f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6")
    ax.set(xlabel="false-alarm rate", ylabel="defect recall", title=title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def pr_curve(labels: np.ndarray, scores: np.ndarray, path: Path) -> Path:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _pyplot()
    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(recall, precision, label=f"AP {average_precision_score(labels, scores):.4f}")
    ax.set(xlabel="defect recall", ylabel="defect precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion(matrix: dict[str, int], labels: Sequence[str], threshold: float, path: Path) -> Path:
    plt = _pyplot()
    grid = np.array([[matrix["tn"], matrix["fp"]], [matrix["fn"], matrix["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(grid, cmap="Blues")
    for (row, col), value in np.ndenumerate(grid):
        ax.text(col, row, str(value), ha="center", va="center", color="black", fontsize=13)
    ax.set_xticks([0, 1], [f"pred {labels[0]}", f"pred {labels[1]}"])
    ax.set_yticks([0, 1], [f"true {labels[0]}", f"true {labels[1]}"])
    ax.set_title(f"threshold {threshold:.4g}")
    return _save(fig, path)


def score_histograms(labels: np.ndarray, scores: np.ndarray, class_sets: Sequence[Sequence[str]], threshold: float, path: Path) -> Path:
    """Score distribution of normal images and of defect images per YOLO class."""
    plt = _pyplot()
    groups: dict[str, list[float]] = {"normal": list(scores[labels == 0])}
    for classes, label, score in zip(class_sets, labels, scores):
        if label == 1:
            for name in set(classes) or {"defect"}:
                groups.setdefault(name, []).append(float(score))
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    for name, values in groups.items():
        ax.hist(values, bins=bins, alpha=0.55, label=f"{name} ({len(values)})", log=True)
    ax.axvline(threshold, color="red", ls="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="defect probability", ylabel="images (log)", title="Scores per class")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_bench_plots(result: Any, out_dir: Path, prefix: str = "") -> dict[str, str]:
    """The bench's figures: ROC curves of all rows overlaid, latency bars, AUROC vs latency.

    ``result`` is an ``edge_sealant.bench.BenchResult``; returns {figure name: path} of what
    was drawn (no ROC without scored rows of both classes, no bars without timed rows).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    curves = {k: v for k, v in result.curves.items() if len(v[0]) and v[0].min() != v[0].max()}
    if curves:
        written["roc"] = str(roc_curves(curves, out_dir / f"{prefix}roc.png", title="ROC, all rows"))
    timed = [r for r in result.rows if r["latency_p50_ms"] is not None]
    if timed:
        written["latency"] = str(latency_bars(timed, result.header["threads"], out_dir / f"{prefix}latency.png"))
    scored = [r for r in timed if r["auroc"] is not None]
    if scored:
        written["auroc_vs_latency"] = str(auroc_vs_latency(scored, out_dir / f"{prefix}auroc_vs_latency.png"))
    return written


def latency_bars(rows: Sequence[dict[str, Any]], threads: int, path: Path) -> Path:
    """p50 latency per bench row with a whisker to p99; timing-only rows in grey."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    labels = [r["label"] for r in rows]
    p50 = np.array([r["latency_p50_ms"] for r in rows])
    p99 = np.array([r["latency_p99_ms"] for r in rows])
    y = np.arange(len(rows))
    ax.barh(y, p50, color=["0.6" if r["timing_only"] else "tab:blue" for r in rows], label="p50")
    ax.errorbar(p50, y, xerr=[np.zeros_like(p50), np.maximum(p99 - p50, 0)], fmt="none", ecolor="black", capsize=3, label="to p99")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    # A full-res reference row can be 100x slower than the rest: log scale keeps both readable.
    ax.set_xscale("log" if p50.max() / max(p50.min(), 1e-6) > 50 else "linear")
    ax.set(xlabel="batch-1 latency (ms)", title=f"latency, {threads} thread(s) per backend")
    ax.legend(fontsize=8)
    return _save(fig, path)


def auroc_vs_latency(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One marker per scored bench row: p50 latency against AUROC."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    markers = "osD^vP*X"
    for index, row in enumerate(rows):  # a legend, not annotations: equal rows overlap
        ax.scatter(row["latency_p50_ms"], row["auroc"], s=45, marker=markers[index % len(markers)], label=row["label"], alpha=0.8)
    ax.set(xlabel="p50 latency (ms, batch 1)", ylabel="AUROC (test)", title="AUROC vs latency (up and left is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)

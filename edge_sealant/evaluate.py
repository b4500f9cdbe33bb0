"""Evaluation of any backend on a dataset split, written once for torch, ONNX and OpenVINO.

The operating threshold is chosen on val (never on the split being reported) and stored in
``run.json``, so every later step (export, quantize, bench, predict) reuses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_sealant.card import ModelCard, atomic_write_text
from edge_sealant.data.types import Sample
from edge_sealant.errors import EdgeSealantError
from edge_sealant.imageset import LoadedImages, load_images
from edge_sealant.metrics import auroc_per_class, binary_metrics, fpr_at_recall, operating_point_warnings, recall_per_class, threshold_choice, with_intervals
from edge_sealant.runtime.protocol import Backend, Outputs


def score(backend: Backend, samples: Sequence[Sample], batch_size: int = 32) -> tuple[LoadedImages, np.ndarray]:
    """Defect probabilities of ``samples`` through ``backend`` with the card's preprocessing."""
    loaded = load_images(samples, backend.card)
    return loaded, score_images(backend, loaded.images, batch_size)


def score_images(backend: Backend, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Defect probabilities (float64) of already preprocessed uint8 ``images``, in batches."""
    return infer_images(backend, images, batch_size).probability


def infer_images(backend: Backend, images: np.ndarray, batch_size: int = 32) -> Outputs:
    """Probabilities (float64) and a heatmap model's heatmaps (N x rows x columns), in batches."""
    outputs = [backend.infer(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    if not outputs:
        return Outputs(np.zeros(0), None)
    heatmaps = None if outputs[0].heatmap is None else np.concatenate([o.heatmap for o in outputs])
    return Outputs(np.concatenate([o.probability for o in outputs]).astype(np.float64), heatmaps)


def selection_splits(card: ModelCard) -> list[str]:
    """Splits the run looked at to choose its best epoch or threshold: not held-out evidence."""
    if "selection_splits" in card.train:
        return list(card.train["selection_splits"])
    return ["val"] if card.train else []


def split_role(card: ModelCard, split: str) -> str:
    """'training' (the model learnt from it), 'selection' (it chose the epoch or threshold) or 'held-out'."""
    if split in card.train.get("training_splits", ["train"] if card.train else []):
        return "training"
    return "selection" if split in selection_splits(card) else "held-out"


def card_group_by(card: ModelCard) -> str | None:
    """The ``--group-by`` key the run was trained with (or split its data with), if any."""
    options = card.train.get("options") or {}
    return options.get("group_by") or (card.data_summary.get("split_settings") or {}).get("group_by")


def part_groups(samples: Sequence[Sample], group_by: str | None = None) -> list[int]:
    """A group id per sample: images of one part (exact or near duplicates, e.g. exposures of
    one tile, or one ``group_by`` key) share it, so intervals resample parts, not photographs."""
    from edge_sealant.data.groups import find_groups

    return find_groups(samples, group_by=group_by).group_of


def report(
    loaded: LoadedImages, scores: np.ndarray, card: ModelCard, root: Path | None = None, groups: Sequence[int] | None = None
) -> dict[str, Any]:
    """All metrics at the card's threshold with 95% intervals (resampling parts: ``groups``,
    default :func:`part_groups`), per-class recall and AUROC, and the misclassified files."""
    labels = loaded.labels
    threshold = card.threshold
    groups = part_groups(loaded.samples, card_group_by(card)) if groups is None else groups
    metrics = with_intervals(binary_metrics(labels, scores, threshold), labels, scores, groups=groups)
    metrics["roc_at_recall"] = fpr_at_recall(labels, scores)  # what the ranking allows on this split (not deployable)
    classes = [s.defect_classes for s in loaded.samples]
    predicted = scores >= threshold

    def name(sample: Sample) -> str:
        return relative_name(sample, root)

    rows = list(zip(loaded.samples, scores, labels, predicted, groups))
    misses = [(name(s), float(p), int(g)) for s, p, y, d, g in rows if y == 1 and not d]
    alarms = [(name(s), float(p), int(g)) for s, p, y, d, g in rows if y == 0 and d]
    metrics.update(
        threshold_policy=card.threshold_policy,
        recall_per_class=recall_per_class(classes, labels, scores, threshold),
        auroc_per_class=auroc_per_class(classes, labels, scores, groups),
        missed_defects=[{"file": f, "probability": p, "part": g} for f, p, g in sorted(misses, key=lambda m: m[1])],
        false_alarms=[{"file": f, "probability": p, "part": g} for f, p, g in sorted(alarms, key=lambda m: -m[1])],
        errors_by_part=errors_by_part(labels, predicted, groups),
        skipped=loaded.skipped,
    )
    return metrics


def errors_by_part(labels: np.ndarray, predicted: np.ndarray, groups: Sequence[int]) -> dict[str, dict[str, int]]:
    """How many parts the misclassified images come from, against the parts of each class.

    Why: exposures of one part tend to be missed together (magnetic-tile at 320: the 5-fold
    final models miss 3-5 of 66 test defect images at the out-of-fold recall@0.95, on 1-2 of 19
    defect parts, 3-5 of them exposures of one break tile), so a recall short of its target by one part is a hard part
    to review, not the same problem as one short by many parts (a model or threshold problem).
    """
    groups = np.asarray(groups)
    labels, predicted = np.asarray(labels), np.asarray(predicted, bool)

    def count(label: int, wrong: np.ndarray) -> dict[str, int]:
        mine = labels == label
        return {"images": int(wrong.sum()), "parts": len(set(groups[wrong].tolist())), "of_images": int(mine.sum()),
                "of_parts": len(set(groups[mine].tolist()))}

    return {"missed_defects": count(1, (labels == 1) & ~predicted), "false_alarms": count(0, (labels == 0) & predicted)}


def relative_name(sample: Sample, root: Path | None) -> str:
    """The sample's path relative to the dataset root (as reports list files), else as given."""
    try:
        return str(sample.path.relative_to(root)) if root else str(sample.path)
    except ValueError:
        return str(sample.path)


def leak_free_metrics(
    dataset: Any, split: str, loaded: LoadedImages, scores: np.ndarray, threshold: float, groups: Sequence[int] | None = None
) -> dict[str, Any]:
    """Metrics on the images of ``split`` that have no exact or near duplicate in other splits
    (intervals resampling ``groups`` when given)."""
    from edge_sealant.data.audit import duplicated_elsewhere

    leaked = duplicated_elsewhere(dataset, split)
    keep = np.array([s.path not in leaked for s in loaded.samples], dtype=bool)
    out: dict[str, Any] = {"excluded": int((~keep).sum()), "kept": int(keep.sum())}
    labels = loaded.labels[keep]
    if keep.any() and labels.min() != labels.max():
        kept_groups = None if groups is None else np.asarray(groups)[keep]
        subset = with_intervals(binary_metrics(labels, scores[keep], threshold), labels, scores[keep], groups=kept_groups)
        keys = ("auroc", "auroc_ci", "average_precision", "accuracy", "balanced_accuracy", "recall", "recall_ci", "fpr", "fpr_ci", "n_defect", "n_normal")
        out.update({k: subset[k] for k in keys})
    return out


def retune_threshold(backend: Backend, val: Sequence[Sample], policy_text: str) -> dict[str, Any]:
    """Re-choose the threshold on ``val``; the operating point it gives there, with intervals."""
    loaded, scores = score(backend, val)
    return threshold_choice(loaded.labels, scores, policy_text).to_dict()


def oof_scores(run: Path) -> tuple[list[int], list[float]]:
    """A ``--folds`` run's stored out-of-fold labels and probabilities (``folds/oof.csv``:
    every train+val image scored by the fold model that never saw it)."""
    import csv

    from edge_sealant.artifacts import OOF_SCORES

    path = Path(run) / OOF_SCORES
    if not path.is_file():
        raise EdgeSealantError(
            f"this run's model was trained on val (--folds) and {path} is missing, so there is nothing unseen to choose "
            "a threshold on; use set-threshold, or train again with --folds and --threshold-policy"
        )
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [int(row["label"]) for row in rows], [float(row["probability"]) for row in rows]


def oof_threshold(run: Path, policy_text: str) -> dict[str, Any]:
    """Re-choose a ``--folds`` run's threshold on its out-of-fold scores, as training did."""
    labels, probabilities = oof_scores(run)
    return threshold_choice(labels, probabilities, policy_text).to_dict()


def write_plots(loaded: LoadedImages, scores: np.ndarray, metrics: dict[str, Any], card: ModelCard, out: Path) -> dict[str, str]:
    from edge_sealant import plots

    labels = loaded.labels
    if labels.min() == labels.max():
        return {}  # ROC/PR need both classes
    classes = [s.defect_classes for s in loaded.samples]
    return {
        "roc": str(plots.roc_curves({card.model: (labels, scores)}, out / "roc.png")),
        "pr": str(plots.pr_curve(labels, scores, out / "pr.png")),
        "confusion": str(plots.confusion(metrics["confusion_matrix"], card.labels, card.threshold, out / "confusion.png")),
        "histogram": str(plots.score_histograms(labels, scores, classes, card.threshold, out / "scores.png")),
    }


def open_for_evaluation(model: str | Path) -> tuple[Backend, Path | None]:
    """A run folder evaluates its torch checkpoint; a .xml/.onnx file its runtime backend."""
    path = Path(model)
    if path.is_file() and path.suffix in (".xml", ".onnx"):
        from edge_sealant.runtime.backends import open_backend

        return open_backend(path), None
    if not path.is_dir():
        raise EdgeSealantError(f"{path}: not a run folder nor a .xml/.onnx model")
    from edge_sealant.torch_backend import TorchBackend

    return TorchBackend.from_run(path), path


def evaluate_run(
    model: str | Path,
    data: str | Path,
    split: str = "test",
    threshold_policy: str | None = None,
    out: str | Path | None = None,
    leak_check: bool = True,
) -> dict[str, Any]:
    """Evaluate a run (or exported model) on ``split``; optionally re-choose the threshold on val.

    Writes ``metrics.json`` and PNGs (ROC, PR, confusion matrix, score histograms) to ``out``
    (default ``RUN/eval/<split>``) and returns the metrics. A heatmap model adds
    ``localization`` (pointing game, recall by defect size) and ``review`` (where heatmap and
    labels disagree: ``review.csv`` and overlay pictures in ``out/review/``; see
    :mod:`edge_sealant.localize`). With ``leak_check`` the metrics
    are repeated under ``leak_free`` for the images without a duplicate in another split.
    """
    from edge_sealant.data.loading import load_dataset_like

    backend, run = open_for_evaluation(model)
    card = backend.card
    dataset = load_dataset_like(data, card.data_summary)
    operating_point, chosen_on = None, ""
    if threshold_policy is not None:
        if run is None:
            raise EdgeSealantError("--threshold-policy needs a run folder (use set-threshold for exported files)")
        if split_role(card, "val") == "training":  # --folds: val is in the model; its OOF scores are not
            operating_point, chosen_on = oof_threshold(run, threshold_policy), "out-of-fold scores"
        else:
            operating_point, chosen_on = retune_threshold(backend, dataset.split("val"), threshold_policy), "val"
            card.train["selection_splits"] = sorted(set(selection_splits(card)) | {"val"})
        card.threshold, card.threshold_policy = operating_point["threshold"], operating_point["policy"]
        card.metrics["operating_point"] = {**operating_point, "chosen_on": chosen_on}
        card.save(run)
    loaded = load_images(dataset.split(split), card)
    outputs = infer_images(backend, loaded.images)
    scores = outputs.probability
    groups = part_groups(loaded.samples, card_group_by(card))
    metrics = report(loaded, scores, card, root=dataset.root, groups=groups)
    # 'precision' is the defect-precision metric; the artifact's numeric precision gets its own key.
    metrics.update(split=split, model=card.model, backend=backend.name, model_precision=backend.precision)
    metrics["role"] = split_role(card, split)
    if operating_point is not None:
        metrics["operating_point"] = operating_point
        metrics["warnings"] = operating_point_warnings(operating_point, chosen_on) + metrics["warnings"]
    if leak_check:
        metrics["leak_free"] = leak_free_metrics(dataset, split, loaded, scores, card.threshold, groups)
    out_dir = Path(out) if out else (run / "eval" / split if run else Path(model).parent / "eval" / split)
    metrics["plots"] = write_plots(loaded, scores, metrics, card, out_dir)
    if outputs.heatmap is not None:  # where the heatmap points against the labels, and where they disagree
        from edge_sealant.localize import heatmap_report

        names = [relative_name(s, dataset.root) for s in loaded.samples]
        metrics.update(heatmap_report(outputs.heatmap, scores, loaded, names, card, groups, out_dir))
    atomic_write_text(out_dir / "metrics.json", _dumps(metrics))
    if run is not None:
        card.metrics[split] = {k: v for k, v in metrics.items() if k not in ("missed_defects", "false_alarms", "plots", "skipped", "review")}
        card.save(run)
    return metrics


def _dumps(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2) + "\n"


ROLE_NOTES = {
    "selection": "it chose the best epoch or the threshold, so these are not held-out results",
    "training": "the model learnt from these images, so these are not held-out results",
}

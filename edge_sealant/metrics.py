"""Image-level metrics and operating-threshold policies (numpy + scikit-learn, no torch).

Decision rule everywhere: an image is a defect when ``probability >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_sealant.errors import EdgeSealantError

DEFAULT_POLICY = "recall@0.99"
POLICY_HELP = (
    "youden | max-f1 | recall@R | fpr@F | recall@R,fpr<=F (e.g. recall@0.99: highest threshold keeping "
    "defect recall >= 0.99; recall@0.95,fpr<=0.2: recall >= 0.95 within a 20% false-alarm budget)"
)
FPR_WARNING = 0.2  # a recall target that costs more false alarms than this is flagged
CI_LEVEL = 0.95
CI_RESAMPLES = 2000
AUROC_CI_WARNING = 0.05  # an AUROC interval wider than this is flagged


@dataclass(frozen=True)
class ThresholdPolicy:
    kind: str  # youden, max-f1, recall, fpr
    target: float | None = None
    max_fpr: float | None = None  # recall@R,fpr<=F: the false-alarm budget

    def __str__(self) -> str:
        text = self.kind if self.target is None else f"{self.kind}@{self.target:g}"
        return text if self.max_fpr is None else f"{text},fpr<={self.max_fpr:g}"


def _unit_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def parse_policy(text: str) -> ThresholdPolicy:
    text = str(text).strip().lower().replace(" ", "")
    if text in ("youden", "max-f1"):
        return ThresholdPolicy(text)
    head, comma, budget = text.partition(",")
    kind, _, value = head.partition("@")
    target = _unit_float(value) if value else None
    if kind in ("recall", "fpr") and target is not None and not comma:
        return ThresholdPolicy(kind, target)
    if kind == "recall" and target is not None and budget.startswith("fpr<="):
        max_fpr = _unit_float(budget[len("fpr<="):])
        if max_fpr is not None:
            return ThresholdPolicy(kind, target, max_fpr)
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


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, what it gives on the scores it was chosen on, and whether the policy was met."""

    threshold: float
    policy: str
    caught: int  # defects at or above the threshold
    false_alarms: int  # normal images at or above the threshold
    n_defect: int
    n_normal: int
    met: bool = True
    note: str = ""

    @property
    def recall(self) -> float:
        return self.caught / self.n_defect

    @property
    def fpr(self) -> float:
        return self.false_alarms / self.n_normal

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "policy": self.policy,
            "recall": self.recall,
            "fpr": self.fpr,
            "fpr_ci": clopper_pearson(self.false_alarms, self.n_normal),
            "recall_ci": clopper_pearson(self.caught, self.n_defect),
            "n_defect": self.n_defect,
            "n_normal": self.n_normal,
            "policy_met": self.met,
            "note": self.note,
        }


def threshold_choice(labels: Sequence[int], scores: Sequence[float], policy: ThresholdPolicy | str) -> ThresholdChoice:
    """Pick the operating threshold on selection scores according to ``policy``.

    ``recall@R,fpr<=F`` spends the false-alarm budget F on recall margin: the lowest
    threshold whose false-alarm rate is within F, provided recall reaches R there. When the
    two cannot both hold, the budget wins (it is the stated limit) and ``met`` is False.
    """
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
    met, note = True, ""
    if policy.kind == "youden":
        index = int(np.argmax(recall - fpr))
    elif policy.kind == "max-f1":
        f1 = 2 * tp / np.maximum(2 * tp + fp + (n_pos - tp), 1)
        index = int(np.argmax(f1))
    elif policy.kind == "recall" and policy.max_fpr is not None:
        index = int(np.flatnonzero(fpr <= policy.max_fpr + 1e-12).min())  # lowest threshold within budget
        met = bool(recall[index] >= policy.target - 1e-12)
        if not met:
            note = f"recall {recall[index]:.3f} < {policy.target:g} within the false-alarm budget {policy.max_fpr:g}"
    elif policy.kind == "recall":
        ok = np.flatnonzero(recall >= policy.target - 1e-12)
        index = int(ok.max())  # highest threshold that still keeps the recall
    else:  # fpr
        ok = np.flatnonzero(fpr <= policy.target + 1e-12)
        index = int(ok.min())  # lowest threshold (most recall) within the false-alarm budget
    return ThresholdChoice(float(thresholds[index]), str(policy), int(tp[index]), int(fp[index]), n_pos, n_neg, met, note)


def choose_threshold(labels: Sequence[int], scores: Sequence[float], policy: ThresholdPolicy | str) -> float:
    """The threshold of :func:`threshold_choice`."""
    return threshold_choice(labels, scores, policy).threshold


def operating_point_warnings(choice: dict[str, Any], where: str) -> list[str]:
    """What a user must hear about a chosen operating point (``ThresholdChoice.to_dict``)."""
    out = []
    if not choice.get("policy_met", True):
        out.append(f"threshold policy {choice['policy']} not met on {where}: {choice['note']}")
    if choice["fpr"] > FPR_WARNING:
        lo, hi = choice["fpr_ci"]
        out.append(
            f"the threshold ({choice['policy']}) flags {choice['fpr']:.0%} of good parts on {where} (95% CI {lo:.0%}-{hi:.0%}): "
            f"above {FPR_WARNING:.0%}; consider --threshold-policy recall@0.95,fpr<=0.2, "
            + ("more data" if "out-of-fold" in where else "--folds, or more data")
        )
    return out


# ------------------------------------------------------------------------------ intervals
def clopper_pearson(successes: int, trials: int, level: float = CI_LEVEL) -> list[float] | None:
    """Exact binomial interval of a rate (recall, false-alarm rate) at a fixed threshold.

    Used instead of a bootstrap for rates: when every defect is caught the bootstrap interval
    collapses to [1, 1], while 10 of 10 caught is only evidence for recall >= 0.69.
    """
    from scipy.stats import beta

    if trials <= 0:
        return None
    alpha = 1.0 - level
    lo = 0.0 if successes <= 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    hi = 1.0 if successes >= trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return [lo, hi]


def _resample_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(np.float64)


def _bootstrap_auroc(pos: np.ndarray, neg: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> np.ndarray:
    """AUROC of each resample (rows of counts), ties counted half, without re-sorting."""
    order = np.argsort(neg, kind="stable")
    neg_sorted = neg[order]
    cum = np.concatenate([np.zeros((len(c_neg), 1)), np.cumsum(c_neg[:, order], axis=1)], axis=1)
    below = cum[:, np.searchsorted(neg_sorted, pos, side="left")]
    up_to = cum[:, np.searchsorted(neg_sorted, pos, side="right")]
    wins = below + 0.5 * (up_to - below)
    # grouped resamples change the class counts, so divide by each resample's own pair count
    return (c_pos * wins).sum(axis=1) / (c_pos.sum(axis=1) * c_neg.sum(axis=1))


def _bootstrap_ap(scores: np.ndarray, labels: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's step definition) of each resample."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    weights = np.zeros((len(c_pos), len(scores)))
    weights[:, labels == 1], weights[:, labels == 0] = c_pos, c_neg
    weights = weights[:, order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    tp = np.cumsum(np.add.reduceat(weights * (sorted_labels == 1), starts, axis=1), axis=1)
    fp = np.cumsum(np.add.reduceat(weights * (sorted_labels == 0), starts, axis=1), axis=1)
    precision = tp / np.maximum(tp + fp, 1e-12)
    gained = np.diff(np.concatenate([np.zeros((len(tp), 1)), tp], axis=1), axis=1)
    return (gained * precision).sum(axis=1) / tp[:, -1]


def bootstrap_intervals(
    labels: Sequence[int],
    scores: Sequence[float],
    resamples: int = CI_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
    groups: Sequence[int] | None = None,
    threshold: float | None = None,
) -> dict[str, list[float] | None]:
    """Stratified bootstrap percentile intervals of AUROC and average precision (and, with
    ``threshold``, of recall and false-alarm rate).

    Without ``groups`` images are resampled, defects and normal images separately (the class
    counts stay fixed, as in the split being measured). With ``groups`` (a group id per image:
    the same part photographed again, duplicates) whole groups are resampled, those holding a
    defect and the clean ones separately: images of one part are not independent evidence, and
    treating six exposures of one tile as six tiles makes an interval about sqrt(6) too narrow.
    Seeded: the same scores give the same interval.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return {"auroc": None, "average_precision": None, "recall": None, "fpr": None}
    figures: dict[str, list[np.ndarray]] = {"auroc": [], "average_precision": [], "recall": [], "fpr": []}
    for c_pos, c_neg in _resample_weights(labels, groups, resamples, seed):
        figures["auroc"].append(_bootstrap_auroc(pos, neg, c_pos, c_neg))
        figures["average_precision"].append(_bootstrap_ap(scores, labels, c_pos, c_neg))
        if threshold is not None:
            figures["recall"].append((c_pos * (pos >= threshold)).sum(axis=1) / c_pos.sum(axis=1))
            figures["fpr"].append((c_neg * (neg >= threshold)).sum(axis=1) / c_neg.sum(axis=1))
    return {k: _percentile_interval(runs, level) if runs else None for k, runs in figures.items()}


def _resample_weights(labels: np.ndarray, groups: Sequence[int] | None, resamples: int, seed: int):
    """Chunks of bootstrap resamples as (defect, normal) draw counts per image: images per
    class, or with ``groups`` whole parts per stratum (see :func:`bootstrap_intervals`)."""
    draw = _image_draws(labels) if groups is None else _group_draws(labels, np.asarray(groups))
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, 4_000_000 // len(labels)))  # bounded memory on large splits
    for start in range(0, resamples, chunk):
        weights = draw(rng, min(chunk, resamples - start))
        yield weights[:, labels == 1], weights[:, labels == 0]


def _percentile_interval(chunks: list[np.ndarray], level: float) -> list[float]:
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return [float(v) for v in np.percentile(np.concatenate(chunks), tails)]


def paired_auroc_difference_interval(
    labels: Sequence[int],
    reference: Sequence[float],
    other: Sequence[float],
    resamples: int = CI_RESAMPLES,
    seed: int = 0,
    level: float = CI_LEVEL,
    groups: Sequence[int] | None = None,
) -> list[float] | None:
    """Bootstrap percentile interval of AUROC(``reference``) - AUROC(``other``), two models'
    scores of the same images (e.g. FP32 and INT8: the INT8 drop).

    Every resample draws the same images (or, with ``groups``, parts) for both models, so the
    interval is of the difference itself; the two models' own intervals overlap almost wholly
    and say nothing about it. None when a class is missing.
    """
    labels = np.asarray(labels, dtype=np.int64)
    reference, other = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if not (labels == 1).any() or not (labels == 0).any():
        return None
    differences = [
        _bootstrap_auroc(reference[labels == 1], reference[labels == 0], c_pos, c_neg)
        - _bootstrap_auroc(other[labels == 1], other[labels == 0], c_pos, c_neg)
        for c_pos, c_neg in _resample_weights(labels, groups, resamples, seed)
    ]
    return _percentile_interval(differences, level)


def _image_draws(labels: np.ndarray):
    """Resample images, each class separately: how often each image is drawn, per resample."""
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())

    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        weights = np.zeros((size, len(labels)))
        weights[:, labels == 1] = _resample_counts(rng, n_pos, size)
        weights[:, labels == 0] = _resample_counts(rng, n_neg, size)
        return weights

    return draw


def _group_draws(labels: np.ndarray, groups: np.ndarray):
    """Resample whole groups, defect-holding and clean groups separately; an image is drawn
    as often as its group."""
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} group ids for {len(labels)} images")
    ids, image_group = np.unique(groups, return_inverse=True)
    has_defect = np.zeros(len(ids), bool)
    np.logical_or.at(has_defect, image_group, labels == 1)
    strata = [np.flatnonzero(has_defect), np.flatnonzero(~has_defect)]

    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        counts = np.zeros((size, len(ids)))
        for members in strata:
            if len(members):
                counts[:, members] = _resample_counts(rng, len(members), size)
        return counts[:, image_group]

    return draw


def grouped_rate_interval(hits: Sequence[bool], groups: Sequence[int], resamples: int = CI_RESAMPLES, seed: int = 0, level: float = CI_LEVEL) -> list[float]:
    """Percentile interval of a hit rate (e.g. the pointing game) when whole ``groups``
    (images of one part) are resampled, as :func:`bootstrap_intervals` does."""
    hits = np.asarray(hits, dtype=np.float64)
    weights = _group_draws(np.ones(len(hits), dtype=np.int64), np.asarray(groups))(np.random.default_rng(seed), resamples)
    rates = (weights @ hits) / weights.sum(axis=1)
    return [float(v) for v in np.percentile(rates, [100 * (1 - level) / 2, 100 * (1 + level) / 2])]


def n_groups(groups: Sequence[int] | None) -> int | None:
    return None if groups is None else len(set(np.asarray(groups).tolist()))


def with_intervals(
    metrics: dict[str, Any], labels: Sequence[int], scores: Sequence[float], seed: int = 0, groups: Sequence[int] | None = None
) -> dict[str, Any]:
    """Add 95% intervals to :func:`binary_metrics` output, and the warnings they call for.

    ``auroc_ci``/``average_precision_ci``: stratified bootstrap (2000 resamples, seeded), of
    images, or of whole ``groups`` when given (see :func:`bootstrap_intervals`);
    ``recall_ci``/``fpr_ci``: exact binomial (Clopper-Pearson) at the fixed threshold, widened
    to the grouped bootstrap's interval when groups are given (Clopper-Pearson alone assumes
    independent images; the bootstrap alone collapses to [1, 1] when every defect is caught).
    """
    boot = bootstrap_intervals(labels, scores, seed=seed, groups=groups, threshold=metrics["threshold"] if groups is not None else None)
    cm = metrics["confusion_matrix"]
    recall_ci = widen(clopper_pearson(cm["tp"], cm["tp"] + cm["fn"]), boot["recall"])
    fpr_ci = widen(clopper_pearson(cm["fp"], cm["fp"] + cm["tn"]), boot["fpr"])
    if groups is None:
        how = {"auroc": f"stratified bootstrap, {CI_RESAMPLES} resamples, seed {seed}", "rates": "Clopper-Pearson"}
    else:
        how = {
            "auroc": f"bootstrap of {n_groups(groups)} groups (images of one part stay together), stratified, {CI_RESAMPLES} resamples, seed {seed}",
            "rates": "Clopper-Pearson widened to the grouped bootstrap",
        }
    metrics.update(
        auroc_ci=boot["auroc"],
        average_precision_ci=boot["average_precision"],
        recall_ci=recall_ci,
        fpr_ci=fpr_ci,
        ci={"level": CI_LEVEL, **how, **({"groups": n_groups(groups)} if groups is not None else {})},
    )
    warnings = []
    if boot["auroc"] is not None and boot["auroc"][1] - boot["auroc"][0] > AUROC_CI_WARNING:
        lo, hi = boot["auroc"]
        warnings.append(f"AUROC 95% interval [{lo:.3f}, {hi:.3f}] is wider than {AUROC_CI_WARNING}: too few images to rank models by it")
    if metrics["auroc"] == 1.0 and metrics["n_defect"] < 30:
        warnings.append(
            f"AUROC 1.0 on {metrics['n_defect']} defect images: the bootstrap cannot show its uncertainty; "
            f"recall's interval {_interval(metrics['recall_ci'])} can"
        )
    metrics["warnings"] = metrics.get("warnings", []) + warnings
    return metrics


def widen(exact: list[float] | None, boot: list[float] | None) -> list[float] | None:
    """The union of two intervals (``exact`` alone when there is no ``boot``)."""
    if exact is None or boot is None:
        return exact
    return [min(exact[0], boot[0]), max(exact[1], boot[1])]


def _interval(ci: Sequence[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def format_with_ci(value: float | None, ci: Sequence[float] | None, digits: int = 4) -> str:
    """'0.9585 [0.93, 0.98]' for tables and reports; '-' when there is no value."""
    if value is None:
        return "-"
    if not ci:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{ci[0]:.{max(2, digits - 2)}f}, {ci[1]:.{max(2, digits - 2)}f}]"


def format_difference(value: float | None, ci: Sequence[float] | None, digits: int = 4) -> str:
    """'+0.0103 [+0.0021, +0.0190]': a difference (e.g. an INT8 drop) with its interval, signs shown."""
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" + (f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]" if ci else "")


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


ROC_RECALL = 0.95  # issue #10's operating region: false alarms at >= 95% defect recall


def fpr_at_recall(labels: Sequence[int], scores: Sequence[float], recall: float = ROC_RECALL) -> dict[str, Any] | None:
    """The split's own ROC at ``recall``: the fewest false alarms of any threshold catching at
    least that share of its defects. A property of the ranking, *not* a threshold one can
    deploy (it is chosen on the very images it is measured on); the deployable figure is the
    false-alarm rate at the card's threshold, chosen on val."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(scores[labels == 1])[::-1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return None
    needed = int(np.ceil(recall * len(pos) - 1e-9))
    threshold = float(pos[max(needed, 1) - 1])  # the needed-th highest defect score
    caught = int(np.sum(pos >= threshold))
    false_alarms = int(np.sum(neg >= threshold))
    return {"recall": caught / len(pos), "fpr": false_alarms / len(neg), "fpr_ci": clopper_pearson(false_alarms, len(neg)),
            "recall_asked": recall, "threshold": threshold}


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


def auroc_per_class(
    class_sets: Sequence[Sequence[str]], labels: Sequence[int], scores: Sequence[float], groups: Sequence[int] | None = None
) -> dict[str, dict[str, Any]]:
    """For each YOLO defect class: AUROC of its defect images against all normal images.

    The overall AUROC hides which defect the model cannot rank: one class seen on a few parts
    in training (e.g. a crack running along the surface texture) can hold a split's AUROC down
    on its own. With ``groups`` the interval resamples parts, and ``parts`` counts the class's.
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    group_ids = None if groups is None else np.asarray(groups)
    normal = labels == 0
    out: dict[str, dict[str, Any]] = {}
    if not normal.any():
        return out
    for name in sorted({c for classes, label in zip(class_sets, labels) if label == 1 for c in classes}):
        holds = np.array([label == 1 and name in classes for classes, label in zip(class_sets, labels)])
        keep = holds | normal
        boot = bootstrap_intervals(labels[keep], scores[keep], groups=None if group_ids is None else group_ids[keep])
        entry = {"images": int(holds.sum()), "auroc": float(roc_auc_score(labels[keep], scores[keep])), "auroc_ci": boot["auroc"]}
        if group_ids is not None:
            entry["parts"] = n_groups(group_ids[holds])
        out[name] = entry
    return out

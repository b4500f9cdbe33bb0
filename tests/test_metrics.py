import numpy as np
import pytest

from edge_sealant.errors import EdgeSealantError
from edge_sealant.metrics import binary_metrics, choose_threshold, parse_policy, recall_per_class

LABELS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
SCORES = np.array([0.05, 0.10, 0.20, 0.30, 0.55, 0.70, 0.40, 0.60, 0.80, 0.90])


def test_binary_metrics_counts_and_rates():
    m = binary_metrics(LABELS, SCORES, threshold=0.5)
    assert m["confusion_matrix"] == {"tn": 4, "fp": 2, "fn": 1, "tp": 3}
    assert m["recall"] == pytest.approx(0.75)
    assert m["fpr"] == pytest.approx(2 / 6)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 4 / 6) / 2)
    assert m["precision"] == pytest.approx(0.6)
    # 24 positive-negative pairs; the defect scored 0.40 loses to 0.55 and 0.70, 0.60 loses to 0.70.
    assert m["auroc"] == pytest.approx(21 / 24)


def test_threshold_equal_to_score_counts_as_defect():
    m = binary_metrics([0, 1], [0.3, 0.5], threshold=0.5)
    assert m["confusion_matrix"]["tp"] == 1


def test_recall_policy_keeps_every_defect_with_the_highest_threshold():
    t = choose_threshold(LABELS, SCORES, "recall@0.99")
    assert 0.30 < t < 0.40  # just below the lowest defect score, above the next lower score
    assert binary_metrics(LABELS, SCORES, t)["recall"] == 1.0


def test_recall_policy_partial_target():
    t = choose_threshold(LABELS, SCORES, "recall@0.75")
    assert 0.55 < t < 0.60
    assert binary_metrics(LABELS, SCORES, t)["recall"] == pytest.approx(0.75)


def test_fpr_policy_respects_false_alarm_budget():
    t = choose_threshold(LABELS, SCORES, "fpr@0.0")
    assert 0.70 < t < 0.80
    assert binary_metrics(LABELS, SCORES, t)["fpr"] == 0.0
    t2 = choose_threshold(LABELS, SCORES, "fpr@0.2")  # one false alarm of six allowed
    assert binary_metrics(LABELS, SCORES, t2)["fpr"] <= 0.2
    assert 0.55 < t2 < 0.60


def test_youden_and_max_f1_pick_sensible_points():
    for policy in ("youden", "max-f1"):
        t = choose_threshold(LABELS, SCORES, policy)
        m = binary_metrics(LABELS, SCORES, t)
        assert m["recall"] - m["fpr"] >= 0.5


@pytest.mark.parametrize("text", ["recall", "recall@2", "fpr@x", "best", ""])
def test_bad_policies_are_rejected(text):
    with pytest.raises(EdgeSealantError, match="threshold policy"):
        parse_policy(text)


def test_threshold_needs_both_classes():
    with pytest.raises(EdgeSealantError, match="both normal and defect"):
        choose_threshold([1, 1], [0.2, 0.3], "youden")


def test_recall_per_class():
    out = recall_per_class([("gap",), ("gap", "bubble"), ()], [1, 1, 0], [0.9, 0.1, 0.8], 0.5)
    assert out == {
        "bubble": {"images": 1, "detected": 0, "recall": 0.0},
        "gap": {"images": 2, "detected": 1, "recall": 0.5},
    }


def test_auroc_per_class_ranks_each_class_against_all_normals_and_counts_its_parts():
    from edge_sealant.metrics import auroc_per_class

    rng = np.random.default_rng(0)
    normal = rng.uniform(0.0, 0.6, 60)
    gap = rng.uniform(0.7, 1.0, 12)  # ranked above every normal image
    crack = np.repeat([0.05, 0.25, 0.4, 0.55], 3) + rng.uniform(0, 0.02, 12)  # 4 parts: each ranks as one
    classes = [()] * 60 + [("gap",)] * 12 + [("crack",)] * 12
    labels = [0] * 60 + [1] * 24
    scores = np.concatenate([normal, gap, crack])
    groups = list(range(60)) + [100 + i // 6 for i in range(12)] + [200 + i // 3 for i in range(12)]
    out = auroc_per_class(classes, labels, scores, groups)
    assert set(out) == {"crack", "gap"}
    assert out["gap"]["auroc"] == 1.0 and out["gap"]["images"] == 12 and out["gap"]["parts"] == 2
    assert out["crack"]["parts"] == 4
    assert 0.3 < out["crack"]["auroc"] < 0.7
    lo, hi = out["crack"]["auroc_ci"]
    assert lo <= out["crack"]["auroc"] <= hi
    # 12 images of 4 parts are weaker evidence than 12 independent images: a wider interval
    independent = auroc_per_class(classes, labels, scores, list(range(84)))["crack"]["auroc_ci"]
    assert hi - lo > (independent[1] - independent[0])
    assert "parts" not in auroc_per_class(classes, labels, scores)["gap"]
    assert auroc_per_class([("gap",)], [1], [0.5]) == {}  # no normal images: nothing to rank against


# ------------------------------------------------------------------------------ intervals
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from edge_sealant.metrics import (  # noqa: E402
    _bootstrap_ap,
    _bootstrap_auroc,
    bootstrap_intervals,
    clopper_pearson,
    operating_point_warnings,
    threshold_choice,
    with_intervals,
)


def noisy_scores(n=300, seed=1):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    return labels, np.round(rng.random(n) * 0.6 + labels * 0.3, 2)  # rounded: ties on purpose


def test_vectorised_bootstrap_equals_sklearn_on_each_resample():
    labels, scores = noisy_scores()
    rng = np.random.default_rng(0)
    c_pos = rng.multinomial(labels.sum(), np.full(labels.sum(), 1 / labels.sum()), size=4).astype(float)
    c_neg = rng.multinomial((labels == 0).sum(), np.full((labels == 0).sum(), 1 / (labels == 0).sum()), size=4).astype(float)
    aurocs = _bootstrap_auroc(scores[labels == 1], scores[labels == 0], c_pos, c_neg)
    aps = _bootstrap_ap(scores, labels, c_pos, c_neg)
    for k in range(4):
        weights = np.zeros(len(labels))
        weights[labels == 1], weights[labels == 0] = c_pos[k], c_neg[k]
        assert aurocs[k] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)
        assert aps[k] == pytest.approx(average_precision_score(labels, scores, sample_weight=weights), abs=1e-12)


def test_bootstrap_interval_is_seeded_and_shrinks_with_more_images():
    small, big = noisy_scores(100), noisy_scores(2000)
    a, b = bootstrap_intervals(*small, seed=3), bootstrap_intervals(*small, seed=3)
    assert a == b
    point = roc_auc_score(*small)
    assert a["auroc"][0] < point < a["auroc"][1]
    wide = a["auroc"][1] - a["auroc"][0]
    narrow = bootstrap_intervals(*big)["auroc"]
    assert narrow[1] - narrow[0] < wide / 2


def test_grouped_bootstrap_counts_parts_not_photographs():
    """Six photographs of each part are not six parts: resampling whole groups gives the
    interval of the parts alone, where resampling images would be about sqrt(6) narrower."""
    labels, scores = noisy_scores(120)
    repeated_labels, repeated_scores = np.repeat(labels, 6), np.repeat(scores, 6)
    parts = np.repeat(np.arange(len(labels)), 6)
    alone = bootstrap_intervals(labels, scores)["auroc"]
    grouped = bootstrap_intervals(repeated_labels, repeated_scores, groups=parts)["auroc"]
    naive = bootstrap_intervals(repeated_labels, repeated_scores)["auroc"]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(grouped) == pytest.approx(width(alone), rel=0.15)
    assert width(naive) < 0.6 * width(grouped)
    singletons = bootstrap_intervals(labels, scores, groups=np.arange(len(labels)) * 7)["auroc"]
    assert width(singletons) == pytest.approx(width(alone), rel=0.15)  # one image per group: the image bootstrap


def test_paired_auroc_difference_is_narrower_than_either_models_interval():
    from edge_sealant.metrics import bootstrap_intervals, paired_auroc_difference_interval

    rng = np.random.default_rng(0)
    labels = np.array([0] * 140 + [1] * 60)
    reference = rng.normal(labels * 1.5, 1.0)
    other = reference + rng.normal(0, 0.05, len(labels))  # the same model, slightly rounded
    lo, hi = paired_auroc_difference_interval(labels, reference, other)
    drop = roc_auc_score(labels, reference) - roc_auc_score(labels, other)
    assert lo <= drop <= hi and hi - lo < 0.02
    own = bootstrap_intervals(labels, reference)["auroc"]
    assert own[1] - own[0] > 5 * (hi - lo)  # the models' own intervals cannot resolve the drop
    assert paired_auroc_difference_interval(labels, reference, other) == [lo, hi]  # seeded
    worse = np.where(labels == 1, reference - 1.0, reference)  # a clearly worse second model
    assert paired_auroc_difference_interval(labels, reference, worse)[0] > 0
    groups = np.arange(len(labels)) // 4  # four images per part, resampled together
    glo, ghi = paired_auroc_difference_interval(labels, reference, other, groups=groups)
    assert glo <= drop <= ghi and [glo, ghi] != [lo, hi]
    assert paired_auroc_difference_interval(np.zeros(5, int), np.ones(5), np.ones(5)) is None


def test_grouped_intervals_widen_rates_and_keep_the_exact_bound():
    labels, scores = noisy_scores(120)
    labels6, scores6, parts = np.repeat(labels, 6), np.repeat(scores, 6), np.repeat(np.arange(120), 6)
    plain = with_intervals(binary_metrics(labels6, scores6, 0.5), labels6, scores6)
    grouped = with_intervals(binary_metrics(labels6, scores6, 0.5), labels6, scores6, groups=parts)
    assert grouped["ci"]["groups"] == 120 and "groups" in grouped["ci"]["auroc"]
    for key in ("recall_ci", "fpr_ci"):
        assert grouped[key][0] <= plain[key][0] and grouped[key][1] >= plain[key][1]
        assert grouped[key][1] - grouped[key][0] > 1.5 * (plain[key][1] - plain[key][0])
    caught = with_intervals(binary_metrics(labels6, scores6, 0.0), labels6, scores6, groups=parts)
    assert caught["recall"] == 1.0 and caught["recall_ci"][0] < 1.0  # the bootstrap alone would say [1, 1]
    with pytest.raises(ValueError, match="group ids"):
        bootstrap_intervals(labels, scores, groups=parts)


def test_grouped_rate_interval_counts_parts():
    from edge_sealant.metrics import grouped_rate_interval

    hits = np.random.default_rng(2).random(60) < 0.8
    alone = grouped_rate_interval(hits, np.arange(60))
    assert alone == grouped_rate_interval(np.repeat(hits, 6), np.repeat(np.arange(60), 6))  # six photographs, one part
    assert alone[0] < hits.mean() < alone[1]


def test_fpr_at_recall_reads_the_split_own_roc():
    from edge_sealant.metrics import fpr_at_recall

    labels = [1] * 20 + [0] * 10
    scores = [0.9] * 18 + [0.5, 0.1] + [0.6] + [0.2] * 9  # the 19th defect (0.5) sits below one normal (0.6)
    point = fpr_at_recall(labels, scores)
    assert point["recall"] == 0.95 and point["fpr"] == 0.1 and point["threshold"] == 0.5
    assert fpr_at_recall(labels, scores, recall=0.9)["fpr"] == 0.0
    assert fpr_at_recall(labels, scores, recall=1.0)["fpr"] == 1.0  # the 0.1 defect needs a threshold under every normal
    assert fpr_at_recall([0, 0], [0.1, 0.2]) is None


def test_clopper_pearson_known_values():
    lo, hi = clopper_pearson(10, 10)
    assert lo == pytest.approx(0.6915, abs=1e-4) and hi == 1.0  # 10 of 10 caught: recall >= 0.69, not 1.0
    lo, hi = clopper_pearson(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0362, abs=1e-4)
    assert clopper_pearson(0, 0) is None


def test_with_intervals_adds_keys_and_warns_on_wide_auroc():
    labels, scores = noisy_scores(60)
    metrics = with_intervals(binary_metrics(labels, scores, 0.5), labels, scores)
    for key in ("auroc_ci", "average_precision_ci", "recall_ci", "fpr_ci"):
        lo, hi = metrics[key]
        assert 0.0 <= lo <= hi <= 1.0
    assert metrics["recall_ci"][0] <= metrics["recall"] <= metrics["recall_ci"][1]
    assert any("wider than 0.05" in w for w in metrics["warnings"])
    perfect = with_intervals(binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.5), [0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect["auroc_ci"] == [1.0, 1.0] and any("cannot show its uncertainty" in w for w in perfect["warnings"])


# ------------------------------------------------------------------------------ recall within a budget
def test_recall_with_false_alarm_budget_spends_the_budget_on_margin():
    choice = threshold_choice(LABELS, SCORES, "recall@0.75,fpr<=0.2")
    assert choice.policy == "recall@0.75,fpr<=0.2" and choice.met
    assert 0.55 < choice.threshold < 0.60  # lowest threshold with at most 1 of 6 false alarms
    assert choice.recall == pytest.approx(0.75) and choice.fpr <= 0.2


def test_recall_with_budget_says_when_the_target_is_not_met():
    choice = threshold_choice(LABELS, SCORES, "recall@0.99,fpr<=0.2")
    assert not choice.met and choice.fpr <= 0.2 and choice.recall == pytest.approx(0.75)
    warnings = operating_point_warnings(choice.to_dict(), "val")
    assert any("not met" in w for w in warnings)


def test_high_false_alarm_cost_of_a_recall_target_is_flagged():
    point = threshold_choice(LABELS, SCORES, "recall@0.99").to_dict()
    assert point["fpr"] == pytest.approx(2 / 6)  # 0.55 and 0.70 score above the lowest defect
    lo, hi = point["fpr_ci"]
    assert lo < 1 / 3 < hi
    assert any("flags 33% of good parts" in w for w in operating_point_warnings(point, "val"))


@pytest.mark.parametrize("text", ["recall@0.9,fpr<=2", "recall@0.9,fpr>=0.1", "fpr@0.1,fpr<=0.2", "recall@0.9,"])
def test_bad_budget_policies_are_rejected(text):
    with pytest.raises(EdgeSealantError, match="threshold policy"):
        parse_policy(text)

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

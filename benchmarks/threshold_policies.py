#!/usr/bin/env python
"""Which threshold policy to deploy: each policy chosen where training chooses it, scored on test.

For each run (its torch checkpoint) and each ``--policy``, the threshold is chosen as
``evaluate --threshold-policy`` would choose it, without changing the run: on the out-of-fold
scores (``folds/oof.csv``) of a ``--folds`` run or of a final model retrained from one, else on
val. It is then applied to the held-out test split. Reported per policy: the threshold and the
operating point it gives on the scores that chose it, whether the policy was met there, and on
test the recall and false-alarm rate with their 95% intervals (resampling parts, as
``evaluate`` does) and how many parts the errors come from (``errors_by_part``).

Why: a recall target picked exactly on the selection scores leaves no margin, so test recall
falls below it about half the time; ``recall@R,fpr<=F`` spends a stated false-alarm budget on
margin instead. This measures what each policy buys on unseen parts.

    python benchmarks/threshold_policies.py DATA RUN [RUN ...] --name magnetic-tile-320-cv5 \\
        --policy recall@0.95 --policy "recall@0.95,fpr<=0.2"
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_sealant.bench import cpu_info, cpu_label, publish_results  # noqa: E402

POLICIES = ("recall@0.95", "recall@0.95,fpr<=0.2")


def selection_scores(run: Path, backend: Any, dataset: Any) -> tuple[str, list[int], list[float]]:
    """(where, labels, probabilities) a policy is chosen on, by the rule of ``evaluate
    --threshold-policy``: the out-of-fold scores of a model that learnt from val, else val."""
    from edge_sealant.evaluate import oof_scores, score, split_role

    if split_role(backend.card, "val") == "training":
        return ("out-of-fold", *oof_scores(run))
    loaded, scores = score(backend, dataset.split("val"))
    return "val", loaded.labels.tolist(), scores.tolist()


def test_point(labels: Any, scores: Any, groups: list[int], threshold: float, names: list[str]) -> dict[str, Any]:
    """Test recall and FPR at ``threshold`` with intervals, errors by part, and the missed
    defect files by name (so a claim like "one tile's exposures" can be read off the file)."""
    from edge_sealant.evaluate import errors_by_part
    from edge_sealant.metrics import binary_metrics, with_intervals

    m = with_intervals(binary_metrics(labels, scores, threshold), labels, scores, groups=groups)
    missed = [name for name, label, s in zip(names, labels, scores) if label == 1 and s < threshold]
    return {"recall": m["recall"], "recall_ci": m["recall_ci"], "fpr": m["fpr"], "fpr_ci": m["fpr_ci"],
            "errors_by_part": errors_by_part(labels, scores >= threshold, groups), "missed_files": missed}


def measure(run: Path, data: Path, policies: list[str]) -> dict[str, Any]:
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import card_group_by, part_groups, relative_name, score
    from edge_sealant.metrics import threshold_choice
    from edge_sealant.torch_backend import TorchBackend

    backend = TorchBackend.from_run(run)
    dataset = load_dataset_like(data, backend.card.data_summary)
    chosen_on, sel_labels, sel_scores = selection_scores(run, backend, dataset)
    loaded, scores = score(backend, dataset.split("test"))
    groups = part_groups(loaded.samples, card_group_by(backend.card))
    names = [relative_name(sample, dataset.root) for sample in loaded.samples]
    rows = []
    for policy in policies:
        choice = threshold_choice(sel_labels, sel_scores, policy)
        rows.append({"policy": policy, "chosen_on": chosen_on, "selection": choice.to_dict(),
                     "test": test_point(loaded.labels, scores, groups, choice.threshold, names)})
    return {"run": str(run), "rows": rows}


def markdown(payload: dict[str, Any]) -> str:
    cpu = payload["cpu"]
    lines = [
        f"# Threshold policies on unseen parts ({payload['date']})",
        "",
        f"{payload['data']}, {cpu_label(cpu)}. Each policy chosen on the run's out-of-fold scores (or val), applied to test; "
        "intervals 95%, resampling parts; errors: images (parts) of all test images (parts) of that class.",
        "",
        "| run | policy | chosen on | threshold | there: recall / FPR (met) | test recall [95% CI] | test FPR [95% CI] | missed defects: images (parts) | false alarms: images (parts) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in payload["runs"]:
        for row in entry["rows"]:
            sel, test = row["selection"], row["test"]
            missed, alarms = test["errors_by_part"]["missed_defects"], test["errors_by_part"]["false_alarms"]
            lines.append(
                f"| {Path(entry['run']).name} | `{row['policy']}` | {row['chosen_on']} | {sel['threshold']:.4f} | "
                f"{sel['recall']:.3f} / {sel['fpr']:.3f} ({'yes' if sel['policy_met'] else 'no'}) | "
                f"{test['recall']:.3f} [{test['recall_ci'][0]:.2f}, {test['recall_ci'][1]:.2f}] | "
                f"{test['fpr']:.3f} [{test['fpr_ci'][0]:.2f}, {test['fpr_ci'][1]:.2f}] | "
                f"{missed['images']} ({missed['parts']}) of {missed['of_images']} ({missed['of_parts']}) | "
                f"{alarms['images']} ({alarms['parts']}) of {alarms['of_images']} ({alarms['of_parts']}) |"
            )
    lines += ["", "Missed test defects (file names without folder and extension):", ""]
    for entry in payload["runs"]:
        for row in entry["rows"]:
            missed = [Path(name).stem for name in row["test"]["missed_files"]]
            lines.append(f"- {Path(entry['run']).name}, `{row['policy']}`: {', '.join(missed) or 'none'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--policy", action="append", default=None, help=f"threshold policy (repeat; default: {', '.join(POLICIES)})")
    parser.add_argument("--name", default=None, help="dataset name in the result file (default: the data folder's)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    policies = args.policy or list(POLICIES)
    payload = {
        "date": date.today().isoformat(),
        "data": str(args.data),
        "cpu": cpu_info(),
        "policies": policies,
        "runs": [measure(run, args.data, policies) for run in args.runs],
    }
    name = args.name or Path(args.data).resolve().parent.name
    publish_results(args.results, f"{name}_threshold-policies", payload, markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())

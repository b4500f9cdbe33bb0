"""Retrain a ``train --folds K`` run's final model for another number of epochs of its schedule.

Why: ``--folds`` stops the final model after the epoch it chose on the folds (until 2026-11-29
the best mean fold AUROC, now :func:`edge_sealant.train.crossval.choose_epochs`). When the mean
fold curve is flat (differences inside the folds' noise), the best mean can be mid-schedule, at
a learning rate the cosine schedule has not yet brought down. This script trains the same final
model (all of train+val, the run's recorded options) for ``--epochs-run`` epochs instead, with
the run's out-of-fold threshold, into ``--out``
(:func:`edge_sealant.train.crossval.retrain_final_model`); then ``edge-sealant evaluate OUT DATA --split
test`` scores it. Only the threshold-free figures (AUROC) compare fairly: the threshold was
chosen on the out-of-fold scores of the run's own epoch.

    python benchmarks/fold_final_epochs.py runs/mt_320_cv5 --epochs-run 8 --out runs/mt_320_cv5_e8
    python benchmarks/fold_final_epochs.py runs/mt_320_cv5_s1 --epochs-run 8 --seed 2 --out runs/mt_320_cv5_s1_final2

``--seed`` trains the final model from another seed (same pool, options and threshold): how much
the deployed model moves with the seed, at the cost of one training instead of K + 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished train --folds run")
    parser.add_argument("--epochs-run", type=int, required=True, help="epochs of the run's schedule to train the final model for")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=None, help="train the final model from this seed (default: the run's)")
    args = parser.parse_args(argv)

    from edge_sealant.errors import EdgeSealantError
    from edge_sealant.train.crossval import retrain_final_model
    from edge_sealant.train.progress import TextProgress

    try:
        retrain_final_model(args.run, args.epochs_run, args.out, TextProgress(), seed=args.seed)
    except EdgeSealantError as error:
        raise SystemExit(str(error)) from None
    print(f"final model trained {args.epochs_run} epochs into {args.out}; next: edge-sealant evaluate {args.out} DATA --split test")
    return 0


if __name__ == "__main__":
    sys.exit(main())

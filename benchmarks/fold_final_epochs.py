"""Retrain a ``train --folds K`` run's final model for another number of epochs of its schedule.

Why: ``--folds`` stops the final model after the epoch it chose on the folds (until 2026-11-29
the best mean fold AUROC, now :func:`edge_sealant.train.crossval.choose_epochs`). When the mean
fold curve is flat (differences inside the folds' noise), the best mean can be mid-schedule, at
a learning rate the cosine schedule has not yet brought down. This script trains the same final
model (all of train+val, the run's recorded options) for ``--epochs-run`` epochs instead, with
the run's out-of-fold threshold, into ``--out``; then ``edge-sealant evaluate OUT DATA --split
test`` scores it. Only the threshold-free figures (AUROC) compare fairly: the threshold was
chosen on the out-of-fold scores of the run's own epoch.

    python benchmarks/fold_final_epochs.py runs/mt_320_cv5 --epochs-run 8 --out runs/mt_320_cv5_e8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished train --folds run")
    parser.add_argument("--epochs-run", type=int, required=True, help="epochs of the run's schedule to train the final model for")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from edge_sealant.imageset import load_images
    from edge_sealant.train.crossval import _train_final_model
    from edge_sealant.train.options import recorded_options
    from edge_sealant.train.progress import TextProgress
    from edge_sealant.train.trainer import load_training_dataset, new_card

    card = json.loads((args.run / "run.json").read_text())
    options = recorded_options(card["train"]["options"])
    if not options.folds:
        raise SystemExit(f"{args.run} is not a --folds run")
    if not 1 <= args.epochs_run <= options.epochs:
        raise SystemExit(f"--epochs-run must be in [1, {options.epochs}]")
    options = dataclasses.replace(options, out=str(args.out))
    dataset = load_training_dataset(options)
    pool = dataset.split("train") + list(dataset.splits.get("val") or [])
    model_card = new_card(options, dataset)
    loaded = load_images(sorted(pool, key=lambda s: str(s.path)), model_card, masks=model_card.has_heatmap)  # as train_folds orders them
    # the run's own step 4 (crossval), stopped after --epochs-run instead of the chosen epoch
    _train_final_model(options, TextProgress(), dataset, loaded, args.epochs_run - 1, card["metrics"]["operating_point"],
                       card["metrics"]["oof"], {**card["train"]["folds"], "source_run": str(args.run),
                                                "epochs_set_by": f"benchmarks/fold_final_epochs.py --epochs-run {args.epochs_run}"})
    print(f"final model trained {args.epochs_run} of {options.epochs} epochs into {args.out}; next: edge-sealant evaluate {args.out} DATA --split test")
    return 0


if __name__ == "__main__":
    sys.exit(main())

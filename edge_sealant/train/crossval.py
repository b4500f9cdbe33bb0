"""``train --folds K``: grouped, stratified K-fold cross-validation, then one final model.

Why: with 10-70 defect images in val, one val split is a noisy judge of the best epoch and a
worse one of the threshold. Here every image of train+val is scored once by a model that never
saw it (out-of-fold, OOF), so both choices use all the labelled data, and the test split stays
untouched.

Steps:

1. Pool train+val; split it into K folds with :func:`edge_sealant.data.groups.group_kfold`
   (duplicates and ``--group-by`` keys never cross folds; stratified by label and class).
2. Train one model per fold for the full schedule (no early stopping: every fold trains the
   same epochs) and keep its held-out scores after every epoch.
3. Choose the number of epochs (:func:`choose_epochs`: the whole schedule, unless an earlier
   epoch is better on the folds by more than their noise); the OOF scores of that epoch give
   the pooled AUROC (with a bootstrap interval), the per-fold mean +- std, and the operating
   threshold.
4. Retrain on all of train+val on the same schedule, stopped after the chosen epoch: that is
   the model in ``RUN/best.pt``. Its threshold comes from step 3 (``run.json`` says so).

The chosen epoch is picked on the same OOF scores it then reports, a mild optimism for one
integer out of ``epochs``; the fold figures are therefore labelled "selection", and only the
test split is held-out evidence.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edge_sealant.artifacts import OOF_SCORES
from edge_sealant.card import ModelCard
from edge_sealant.checkpoint import BEST, LAST
from edge_sealant.errors import EdgeSealantError
from edge_sealant.imageset import LoadedImages, load_images
from edge_sealant.metrics import binary_metrics, threshold_choice, with_intervals
from edge_sealant.train.options import TrainOptions, jsonable, recorded_options
from edge_sealant.train.progress import TrainProgress
from edge_sealant.train.trainer import TrainData, Trainer, TrainResult, load_training_dataset, new_card


def _fold_options(options: TrainOptions, out: Path, **changes: Any) -> TrainOptions:
    # patience beyond the schedule: every fold trains every epoch, so epoch curves line up
    return dataclasses.replace(options, out=str(out), folds=None, patience=options.epochs + 1, time_limit_min=None, **changes)


def choose_epochs(curves: np.ndarray, probe_epochs: int) -> int:
    """Index of the epoch the final model stops after: the last one (the end of the schedule),
    unless an earlier fine-tune epoch has the best mean fold AUROC and beats the last by more
    than one standard error of their paired per-fold difference (the one-standard-error rule).

    Why not the plain best mean: fold curves are usually flat over the last epochs, and their
    argmax is then noise that stops the final model mid-schedule, at a learning rate the cosine
    schedule has not brought down. Measured on magnetic-tile 320x320, 5 folds: mean fold AUROC
    0.9686-0.9696 over epochs 4-8, the argmax picked epoch 5 (+0.001 over epoch 8, standard
    error 0.005); that final model scored test AUROC 0.924, and the same final model trained
    on to epoch 8 scored 0.951 (one seed; ``benchmarks/fold_final_epochs.py``).
    """
    mean = curves.mean(axis=0)
    first = probe_epochs if curves.shape[1] > probe_epochs else 0
    best, last = first + int(np.argmax(mean[first:])), curves.shape[1] - 1
    if best == last or curves.shape[0] < 2:
        return best
    gain = curves[:, best] - curves[:, last]
    standard_error = float(np.std(gain, ddof=1)) / np.sqrt(len(gain))
    return best if float(np.mean(gain)) > standard_error else last


def train_folds(options: TrainOptions, progress: TrainProgress | None = None) -> TrainResult:
    """Run steps 1-4 of the module doc into ``options.out``; returns the final model's result."""
    from edge_sealant.data.groups import group_kfold

    progress = progress or TrainProgress()
    run = Path(options.out)
    dataset, pool, card, loaded = _load_pool(options)
    folds, grouping = group_kfold(
        pool, options.folds, seed=options.seed, group_by=options.group_by, max_group_size=options.max_group_size
    )
    for problem in loaded.skipped:
        progress.warning(f"skipped {problem}")
    scale = loaded.defect_scale(options.heatmap_stride, card.resize_mode)
    if scale is not None and scale.needs_larger_input:  # said once here, not by every fold's trainer
        progress.warning(scale.advice(card.has_heatmap))
    index_of = {s.path: i for i, s in enumerate(loaded.samples)}
    held_out = [[index_of[s.path] for s in fold if s.path in index_of] for fold in folds]
    progress.message(
        f"{options.folds}-fold cross-validation on train+val: {len(loaded.samples)} images in {grouping.n_groups} groups "
        f"(largest {grouping.largest}); fold sizes {[len(h) for h in held_out]}"
    )
    folds_run = _train_each_fold(options, progress, dataset, loaded, held_out)
    best = choose_epochs(np.array(folds_run.curves, dtype=np.float64), options.probe_epochs)
    oof = folds_run.out_of_fold(held_out, best, len(loaded.samples))
    choice = {**threshold_choice(loaded.labels, oof, options.threshold_policy).to_dict(), "chosen_on": "out-of-fold scores"}
    group_of = {sample.path: group for sample, group in zip(pool, grouping.group_of)}  # the folds' own groups
    groups = [group_of[s.path] for s in loaded.samples]
    pooled = with_intervals(binary_metrics(loaded.labels, oof, choice["threshold"]), loaded.labels, oof, groups=groups)
    pooled["role"] = "selection"
    fold_aurocs = [float(curve[best]) for curve in folds_run.curves]
    _write_oof(run / OOF_SCORES, loaded, held_out, oof)
    progress.message(
        f"cross-validation: {best + 1} epochs chosen; fold AUROC {np.mean(fold_aurocs):.4f} +- {np.std(fold_aurocs):.4f}, "
        f"pooled out-of-fold AUROC {pooled['auroc']:.4f} [{pooled['auroc_ci'][0]:.4f}, {pooled['auroc_ci'][1]:.4f}]"
    )
    record = {
        "k": options.folds,
        "grouping": grouping.summary(),
        "fold_sizes": [len(h) for h in held_out],
        "epoch_curves": folds_run.curves,
        "chosen_epochs": best + 1,
        "fold_auroc": fold_aurocs,
        "fold_auroc_mean": float(np.mean(fold_aurocs)),
        "fold_auroc_std": float(np.std(fold_aurocs)),
        "fold_seconds": [round(s, 1) for s in folds_run.seconds],
    }
    return _train_final_model(options, progress, dataset, loaded, best, choice, pooled, record)


def retrain_final_model(
    run: Path, epochs: int, out: Path, progress: TrainProgress | None = None, seed: int | None = None
) -> TrainResult:
    """Step 4 of a finished ``--folds`` ``run`` again, stopped after ``epochs`` epochs of its schedule, into ``out``.

    The run's recorded options, pool and out-of-fold threshold are kept. ``seed`` trains the
    final model from another seed: the spread of final models over seeds for 12 minutes each
    on a CPU, not 70 for whole new folds (the threshold was never the final model's own; it
    comes from the fold models either way). With ``epochs`` other than the run's choice, only
    the threshold-free figures (AUROC) compare fairly: the threshold was chosen on the
    out-of-fold scores of the run's own epoch. ``benchmarks/fold_final_epochs.py`` calls this.
    """
    recorded = ModelCard.load(run)
    options = recorded_options(recorded.train.get("options"))
    if not options.folds:
        raise EdgeSealantError(f"{run} is not a --folds run")
    if not 1 <= epochs <= options.epochs:
        raise EdgeSealantError(f"epochs must be in [1, {options.epochs}] (the run's schedule), got {epochs}")
    options = dataclasses.replace(options, out=str(out), seed=options.seed if seed is None else seed)
    dataset, _, _, loaded = _load_pool(options)
    record = {**recorded.train["folds"], "source_run": str(run), "epochs_set_by": f"retrain_final_model(epochs={epochs})",
              "final_seed": options.seed}
    result = _train_final_model(options, progress or TrainProgress(), dataset, loaded, epochs - 1,
                                recorded.metrics["operating_point"], recorded.metrics["oof"], record)
    # the out-of-fold scores its threshold came from travel with it, so that
    # ``evaluate OUT --threshold-policy P`` can re-choose the threshold as on the source run
    source, copy = Path(run) / OOF_SCORES, Path(out) / OOF_SCORES
    if source.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
    return result


def _load_pool(options: TrainOptions) -> tuple[Any, list[Any], ModelCard, LoadedImages]:
    """Step 1's data: (dataset, pool = train + val samples, new card, the pool's images sorted by path)."""
    dataset = load_training_dataset(options)
    pool = dataset.split("train") + list(dataset.splits.get("val") or [])
    card = new_card(options, dataset)
    # sorted, so that fold membership and the out-of-fold rows do not depend on the listing order
    loaded = load_images(sorted(pool, key=lambda s: str(s.path)), card, masks=card.has_heatmap)
    return dataset, pool, card, loaded


@dataclasses.dataclass
class _FoldScores:
    curves: list[list[float]]  # per fold: held-out AUROC after each epoch
    scores: list[np.ndarray]  # per fold: epochs x held-out images probabilities
    seconds: list[float]

    def out_of_fold(self, held_out: list[list[int]], epoch: int, n: int) -> np.ndarray:
        """Every image's probability from the fold model that did not see it, after ``epoch``."""
        oof = np.empty(n)
        for held, scores in zip(held_out, self.scores):
            oof[held] = scores[epoch]
        return oof


def _train_each_fold(
    options: TrainOptions, progress: TrainProgress, dataset: Any, loaded: LoadedImages, held_out: list[list[int]]
) -> _FoldScores:
    """Step 2: one model per fold, full schedule; keeps the held-out scores of every epoch."""
    run = Path(options.out)
    result = _FoldScores([], [], [])
    for k, held in enumerate(held_out):
        rest = sorted(set(range(len(loaded.samples))) - set(held))
        progress.message(f"fold {k + 1}/{options.folds}: train {len(rest)}, held out {len(held)}")
        trainer = Trainer(_fold_options(options, run / "folds" / f"fold{k}"), progress, dataset=dataset,
                          data=TrainData(loaded.subset(rest), loaded.subset(held)))
        fitted = trainer.fit()
        result.curves.append([h["val_auroc"] for h in trainer.history])
        result.scores.append(np.stack(trainer.val_scores))
        result.seconds.append(fitted.seconds)
        for name in (BEST, LAST):  # the fold models are not deployed; their scores are kept
            (trainer.run / name).unlink(missing_ok=True)
    return result


def _train_final_model(
    options: TrainOptions, progress: TrainProgress, dataset: Any, loaded: LoadedImages, best: int,
    choice: dict[str, Any], pooled: dict[str, Any], record: dict[str, Any],
) -> TrainResult:
    """Step 4: all of train+val, stopped after the chosen epoch; threshold from the OOF scores."""
    n = len(loaded.samples)
    progress.message(f"final model: all {n} images of train+val, stopped after epoch {best + 1} of the same schedule")
    final = Trainer(_fold_options(options, Path(options.out), stop_after=best + 1), progress, dataset=dataset,
                    data=TrainData(loaded, None))
    final.fixed_choice = choice
    final.card.metrics = {"oof": pooled, "operating_point": choice}
    final.extra_train_info = {
        "options": jsonable(dataclasses.asdict(options)),  # what the user asked for, not the final model's internals
        "selection_splits": [],
        "training_splits": ["train", "val"],
        "folds": {
            **record,
            "final_model": f"retrained on all of train+val ({n} images) for {best + 1} epochs of the {options.epochs}-epoch schedule; "
            "threshold and epochs chosen on out-of-fold scores",
        },
    }
    return final.fit()


def _write_oof(path: Path, loaded: LoadedImages, held_out: list[list[int]], oof: np.ndarray) -> None:
    """One row per image: path, label, fold, out-of-fold probability (for audits and plots)."""
    from edge_sealant.card import atomic_write_text

    fold_of = {i: k for k, held in enumerate(held_out) for i in held}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "fold", "probability"])
    writer.writerows([str(s.path), s.label, fold_of[i], f"{oof[i]:.6f}"] for i, s in enumerate(loaded.samples))
    atomic_write_text(path, buffer.getvalue())


"""Start a training run (``train``) or continue an interrupted one (``resume``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from edge_sealant.card import removed_on_failure
from edge_sealant.checkpoint import LAST, read_checkpoint
from edge_sealant.errors import EdgeSealantError
from edge_sealant.train.options import LEGACY_VALUES, TrainOptions
from edge_sealant.train.progress import TextProgress, TrainProgress
from edge_sealant.train.trainer import Trainer, TrainResult


def train(options: TrainOptions, progress: TrainProgress | None = None) -> TrainResult:
    """Train a classifier into ``options.out`` (see :class:`TrainOptions`).

    With ``options.folds`` = K: grouped K-fold cross-validation on train+val first, then one
    model on all of it (see :mod:`edge_sealant.train.crossval`). ``progress`` receives the
    run's progress (default: plain lines on stderr, :class:`TextProgress`).
    """
    progress = progress or TextProgress()
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise EdgeSealantError(f"--out {out}: exists and is not a folder")
    if (out / "run.json").exists():
        raise EdgeSealantError(f"{out} already holds a finished run; choose another --out")
    if (out / LAST).exists():
        raise EdgeSealantError(f"{out} holds an interrupted run; continue it with --resume {out}")
    threads = int(os.environ.get("EDGE_SEALANT_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    # nothing to resume (no last.pt yet): a failure leaves no half-made run behind
    with removed_on_failure(out, keep=(out / LAST).exists):
        if options.folds:
            from edge_sealant.train.crossval import train_folds

            return train_folds(options, progress)
        return Trainer(options, progress).fit(resume=False)


def resume(run: str | Path, progress: TrainProgress | None = None, data: str | None = None, epochs: int | None = None) -> TrainResult:
    """Continue an interrupted run from its last completed epoch.

    Options come from the run; ``data`` (the dataset moved, e.g. a new Colab mount) and
    ``epochs`` (train longer) may be overridden.
    """
    progress = progress or TextProgress()
    if (Path(run) / "run.json").exists():
        raise EdgeSealantError(f"{run} is finished already (run.json exists); nothing to resume")
    state = read_checkpoint(Path(run) / LAST)
    values = dict(state["options"])
    # A run from before box supervision has no such option: it is what its card says
    # (image-only), not what "auto" would choose today.
    values.setdefault("supervision", (state.get("card") or {}).get("supervision", "image"))
    for key, value in LEGACY_VALUES.items():  # likewise: e.g. runs from before --select kept the best val epoch
        values.setdefault(key, value)
    if epochs is not None:
        values["epochs"] = epochs
    if data is not None:
        values["data"] = str(data)
    if values.get("imgsz"):
        values["imgsz"] = tuple(values["imgsz"])
    options = TrainOptions.from_mapping(values)
    options.out = str(run)
    return Trainer(options, progress).fit(resume=True)

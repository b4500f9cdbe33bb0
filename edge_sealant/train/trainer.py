"""``Trainer``: one training run (linear probe, fine-tune, the last epoch or the best on val, threshold).

Built for two places: a 2-core CPU (images decoded once into memory, no worker processes)
and a Colab GPU (AMP, channels_last, loader workers). Checkpoints are written atomically
every epoch so ``--resume`` continues a Colab session that dropped. Progress goes to a
:class:`~edge_sealant.train.progress.TrainProgress`; nothing here prints.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from edge_sealant.card import ModelCard
from edge_sealant.checkpoint import BEST, LAST, read_checkpoint, save_checkpoint
from edge_sealant.errors import EdgeSealantError
from edge_sealant.data.scale import DefectScale
from edge_sealant.imageset import LoadedImages, load_images
from edge_sealant.metrics import binary_metrics, threshold_choice, with_intervals
from edge_sealant.train.options import TrainOptions, jsonable
from edge_sealant.train.paste import DefectPaster
from edge_sealant.train.parts import (
    ArrayDataset,
    WeightAverage,
    bce,
    cosine_with_warmup,
    epoch_indices,
    freeze_body,
    image_loss_fn,
    inspection_loss,
    pick_device,
    predict_logits,
    sigmoid,
    training_transform,
)
from edge_sealant.train.progress import TrainProgress, auroc_text
from edge_sealant.versions import TRAINING, library_versions


@dataclass
class TrainResult:
    run: Path
    card: ModelCard
    best_epoch: int
    seconds: float


def load_training_dataset(options: TrainOptions) -> Any:
    """The dataset as ``options`` ask for it (normal classes, split seed, grouping)."""
    from edge_sealant.data.loading import load_dataset
    from edge_sealant.data.types import with_image_level_classes

    dataset = load_dataset(
        options.data, normal_classes=options.normal_classes, seed=options.seed,
        group_by=options.group_by, max_group_size=options.max_group_size,
    )
    if options.image_level_classes:
        dataset = with_image_level_classes(dataset, options.image_level_classes)
    return dataset


def new_card(options: TrainOptions, dataset: Any) -> ModelCard:
    """The card of a run before training: preprocessing, labels and the data it saw."""
    from edge_sealant.models.registry import get_spec

    spec = get_spec(options.model)
    normal = set(dataset.normal_classes)
    supervision = resolve_supervision(options.supervision, dataset.split("train"))
    return ModelCard(
        model=options.model,
        input_size=options.imgsz or spec.default_size,
        resize_mode=options.resize_mode,
        mean=spec.mean,
        std=spec.std,
        defect_classes=[c for c in dataset.class_names if c not in normal],
        threshold=0.5,
        threshold_policy="untuned",
        heatmap_stride=options.heatmap_stride if supervision == "boxes" else 0,
        supervision=supervision,
        output=heatmap_output(options.heatmap_stride) if supervision == "boxes" else ModelCard.__dataclass_fields__["output"].default,
        data_summary=dataset.summary(),
        library_versions=library_versions(TRAINING),
    )


def heatmap_output(stride: int) -> str:
    """The card's ``output`` text of a heatmap model."""
    return f"defect probability (sigmoid inside the graph); heatmap: N x 1 x ceil(H/{stride}) x ceil(W/{stride}) defect probability per cell"


def resolve_supervision(requested: str, train: list[Any]) -> str:
    """``image`` or ``boxes`` for ``--supervision`` auto/image/boxes and the train samples."""
    with_regions = sum(1 for sample in train if sample.regions)
    if requested == "boxes" and not with_regions:
        raise EdgeSealantError("--supervision boxes: the train split's labels have no boxes or polygons of defect classes")
    if requested == "image":
        return "image"
    return "boxes" if with_regions else "image"


FUSION_LR_FACTOR = 10.0


def parameter_groups(net: nn.Module, lr: float) -> list[dict[str, Any]]:
    """Trainable parameters; the score fusion's three scalars get 10x the rate and no decay.

    They weigh the classifier against the heatmap peak: with the network's rate they would
    move about 0.1 in a short run (measured: 0.50 -> 0.53 in 8 epochs), and weight decay
    would pull a weight towards 0, i.e. towards silencing one of the two.
    """
    fusion = getattr(net, "fusion", None)
    fusion_ids = {id(p) for p in fusion.parameters()} if fusion is not None else set()
    body = [p for p in net.parameters() if p.requires_grad and id(p) not in fusion_ids]
    groups: list[dict[str, Any]] = [{"params": body}]
    scalars = [p for p in net.parameters() if p.requires_grad and id(p) in fusion_ids]
    if scalars:
        groups.append({"params": scalars, "lr": lr * FUSION_LR_FACTOR, "weight_decay": 0.0})
    return groups


@dataclass
class TrainData:
    """Decoded images a :class:`Trainer` learns from; ``val`` None means no validation."""

    train: LoadedImages
    val: Optional[LoadedImages]


# ---------------------------------------------------------------------------------- loop


# ---------------------------------------------------------------------------------- loop
class Trainer:
    """One training run; state lives here so the epoch loop stays readable.

    By default it loads ``options.data`` and validates on its val split. The K-fold driver
    passes ``dataset`` and decoded ``data`` instead (a fold's images, or all of train+val
    without validation for the final model) and sets ``fixed_choice`` (the threshold chosen
    on out-of-fold scores).
    """

    def __init__(
        self, options: TrainOptions, progress: TrainProgress | None = None, dataset: Any = None, data: TrainData | None = None
    ):
        from edge_sealant.models.registry import build_inspection_net, split_parameters

        self.options = options
        self.progress = progress or TrainProgress()
        self.run = Path(options.out)
        self.device = pick_device(options.device)
        torch.manual_seed(options.seed)
        self.dataset = dataset if dataset is not None else load_training_dataset(options)
        self.card = new_card(options, self.dataset)
        self.data = data
        self.fixed_choice: Optional[dict[str, Any]] = None
        self.val_scores: list[np.ndarray] = []  # held-out probabilities after each epoch
        self.stopped_by: Optional[str] = None
        self._resume_state: dict[str, Any] = {}
        self.extra_train_info: dict[str, Any] = {}  # merged into card.train (the K-fold record)
        self.net = build_inspection_net(options.model, pretrained=options.pretrained, heatmap=self.card.heatmap_stride).to(self.device)
        # channels_last: faster convolutions with cuDNN and with oneDNN on CPU (measured ~20% here).
        self.net = self.net.to(memory_format=torch.channels_last)
        self.head, _ = split_parameters(self.net)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema: Optional[WeightAverage] = None  # made once the steps per epoch are known
        self.history: list[dict[str, Any]] = []
        self.defect_scale: Optional[DefectScale] = None  # labelled defects against one heatmap cell (load_data)
        self.best = {"epoch": -1, "auroc": -1.0, "loss": math.inf}
        self.start_epoch = 0
        self.seconds_before = 0.0
        self.optimizer_phase: str | None = None

    def _amp_dtype(self) -> torch.dtype | None:
        """Mixed precision on CUDA only: bf16 needs no loss scaling; T4-class GPUs lack it."""
        if self.device.type != "cuda" or self.options.amp == "off":
            return None
        if self.options.amp == "fp16" or (self.options.amp == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16

    # -- data
    def load_data(self) -> None:
        started = time.perf_counter()
        if self.data is None:
            self.train_set = load_images(self.dataset.split("train"), self.card, masks=self.card.has_heatmap)
            self.val_set: Optional[LoadedImages] = load_images(self.dataset.split("val"), self.card)
            for loaded in (self.train_set, self.val_set):
                for problem in loaded.skipped:
                    self.progress.warning(f"skipped {problem}")
        else:
            self.train_set, self.val_set = self.data.train, self.data.val
        labels = self.train_set.labels
        val = "no validation" if self.val_set is None else f"val {len(self.val_set.labels)} ({int(self.val_set.labels.sum())} defect)"
        self.progress.message(
            f"data: train {len(labels)} ({int(labels.sum())} defect), {val}, input {self.card.height}x{self.card.width} "
            f"{self.card.resize_mode}; decoded in {time.perf_counter() - started:.1f} s"
        )
        self.defect_scale = self.train_set.defect_scale(self.options.heatmap_stride, self.card.resize_mode)
        if self.data is None and self.defect_scale is not None and self.defect_scale.needs_larger_input:  # --folds warns once itself
            self.progress.warning(self.defect_scale.advice(self.card.has_heatmap))
        if labels.min() == labels.max() or (self.val_set is not None and self.val_set.labels.min() == self.val_set.labels.max()):
            raise EdgeSealantError("train and val splits both need normal and defect images")
        if self.options.quarter_turns and self.card.height != self.card.width:
            raise EdgeSealantError(f"--quarter-turns needs a square input; this run's is {self.card.height}x{self.card.width} (set --imgsz)")
        self.transform = training_transform(self.options)
        self.paster = self._defect_paster()
        self.loss_fn = image_loss_fn(self.options, labels, self.device)

    def _defect_paster(self) -> Optional[DefectPaster]:
        if not self.options.paste_defects:
            return None
        if self.train_set.masks is None:
            self.progress.warning("--paste-defects ignored: the train labels have no boxes or polygons to paste")
            return None
        loaded = self.train_set
        paster = DefectPaster(loaded.images, loaded.masks, loaded.labels, loaded.has_geometry, self.options.paste_defects)
        if not paster:
            self.progress.warning("--paste-defects ignored: no defect region is small enough to move (<= 25% of the image)")
            return None
        self.progress.message(f"defect copy-paste: {len(paster.patches)} regions onto {paster.share:.0%} of normal images")
        return paster

    def loader(self, epoch: int) -> tuple[torch.utils.data.DataLoader, np.ndarray]:
        rng = np.random.default_rng([self.options.seed, epoch])
        indices = epoch_indices(self.train_set.labels, self.options.balance, rng)
        torch.manual_seed(self.options.seed * 100_003 + epoch)  # augmentation draws, resumable
        dataset = ArrayDataset(self.train_set, self.transform, self.paster)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.options.batch_size,
            sampler=indices.tolist(),
            num_workers=self.options.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=len(indices) > self.options.batch_size,
        )
        return loader, indices

    # -- optimisation
    def phase(self, epoch: int) -> str:
        return "probe" if epoch < self.options.probe_epochs else "finetune"

    def make_optimizer(self, phase: str, steps_per_epoch: int) -> None:
        options = self.options
        freeze_body(self.net, self.head, frozen=phase == "probe")
        lr = options.lr * 3 if phase == "probe" else options.lr
        self.optimizer = torch.optim.AdamW(parameter_groups(self.net, lr), lr=lr, weight_decay=options.weight_decay)
        self.optimizer_phase = phase
        epochs = options.probe_epochs if phase == "probe" else options.epochs - options.probe_epochs
        total = max(1, epochs * steps_per_epoch)
        self.scheduler = cosine_with_warmup(self.optimizer, total, warmup_steps=max(1, steps_per_epoch // 2))

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        loader, indices = self.loader(epoch)
        self.net.train()
        if self.phase(epoch) == "probe":
            freeze_body(self.net, self.head, frozen=True)
        total, count = 0.0, 0
        for batch in loader:
            images, labels, *geometry = (part.to(self.device, non_blocking=True) for part in batch)
            images = images.float().contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
                loss = self.batch_loss(images, labels, geometry)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.net)
            total += loss.item() * len(labels)
            count += len(labels)
            self.progress.step(total / count)
        defect = int(self.train_set.labels[indices].sum())
        return {"train_loss": total / max(1, count), "mix": {"normal": len(indices) - defect, "defect": defect}}

    def batch_loss(self, images: torch.Tensor, labels: torch.Tensor, geometry: list[torch.Tensor]) -> torch.Tensor:
        return inspection_loss(self.net, images, labels, geometry, self.loss_fn, self.options.seg_weight, self.options.heatmap_target)

    @property
    def model(self) -> nn.Module:
        """The model that is validated and saved: the weight average when there is one."""
        return self.ema.model if self.ema is not None else self.net

    def validate(self) -> tuple[Optional[float], Optional[float]]:
        """Val AUROC and loss after an epoch (None without validation); keeps the scores."""
        if self.val_set is None:
            return None, None
        logits = predict_logits(self.model, self.val_set.images, self.device)
        self.val_scores.append(sigmoid(logits))
        metrics = binary_metrics(self.val_set.labels, self.val_scores[-1], 0.5)
        return float(metrics["auroc"]), bce(self.val_set.labels, logits)

    # -- checkpoints
    def save_last(self, epoch: int, seconds: float) -> None:
        save_checkpoint(
            self.run / LAST,
            self.net,
            self.card,
            epoch=epoch,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            history=self.history,
            best=self.best,
            seconds=seconds,
            options=jsonable(dataclasses.asdict(self.options)),
            **({"ema_state": self.ema.model.state_dict(), "ema_updates": self.ema.updates} if self.ema is not None else {}),
        )

    def restore(self, steps_per_epoch: int) -> None:
        state = read_checkpoint(self.run / LAST)
        self._resume_state = state
        self.net.load_state_dict(state["state_dict"])
        self.start_epoch = int(state["epoch"]) + 1
        self.history, self.best = list(state["history"]), dict(state["best"])
        self.seconds_before = float(state["seconds"])
        if self.start_epoch < self.options.epochs:
            self.make_optimizer(self.phase(int(state["epoch"])), steps_per_epoch)
            if self.phase(self.start_epoch) == self.phase(int(state["epoch"])):
                self.optimizer.load_state_dict(state["optimizer"])
                self.scheduler.load_state_dict(state["scheduler"])
                self.scaler.load_state_dict(state["scaler"])
        self.progress.message(f"resuming {self.run} after epoch {self.start_epoch} (model so far: epoch {self.best['epoch'] + 1}, val AUROC {auroc_text(self.best['auroc'])})")

    # -- main
    def fit(self, resume: bool = False) -> TrainResult:
        """Train (or continue) to the end of the schedule, early stop or time limit; then :meth:`finish`."""
        self.run.mkdir(parents=True, exist_ok=True)
        self.load_data()
        steps = len(self.loader(0)[0])
        if resume:
            self.restore(steps)
        self._start_weight_average(steps, resume)
        self.progress.message(f"training {self.options.model} on {self.device} ({self.options.balance}), run folder {self.run}")
        started = time.perf_counter()
        self.progress.started(steps, self.best["auroc"] if self.best["epoch"] >= 0 else None)
        try:
            stale = sum(1 for h in self.history if h["phase"] == "finetune" and h["epoch"] > self.best["epoch"])
            for epoch in range(self.start_epoch, self.options.stop_after or self.options.epochs):
                stale = self.run_epoch(epoch, steps, stale)
                elapsed = self.seconds_before + time.perf_counter() - started
                self.save_last(epoch, elapsed)
                if self._should_stop(epoch, stale, elapsed):
                    break
        finally:
            self.progress.stopped()
        return self.finish(self.seconds_before + time.perf_counter() - started)

    def _start_weight_average(self, steps: int, resume: bool) -> None:
        if not self.options.ema_epochs:
            return
        self.ema = WeightAverage(self.net, self.options.ema_epochs * steps)
        if resume and "ema_state" in self._resume_state:
            self.ema.model.load_state_dict(self._resume_state["ema_state"])
            self.ema.updates = int(self._resume_state.get("ema_updates", 0))

    def run_epoch(self, epoch: int, steps: int, stale: int) -> int:
        """Train and validate one epoch, keep it if it is the model (``--select``); returns the epochs without val gain."""
        epoch_start = time.perf_counter()
        phase = self.phase(epoch)
        if phase != self.optimizer_phase:
            self.make_optimizer(phase, steps)
        self.progress.epoch_started(epoch, self.options.epochs, phase)
        stats = self.train_epoch(epoch)
        val_auroc, val_loss = self.validate()
        by_val = val_auroc is not None and self.options.select == "best-val"
        if by_val:
            improved = val_auroc > self.best["auroc"] or (val_auroc == self.best["auroc"] and val_loss < self.best["loss"])
        else:  # fixed schedule, or no validation: the latest epoch is the model (saved, so a stop keeps it)
            improved = True
        if improved:
            self.best = {"epoch": epoch, "auroc": val_auroc, "loss": val_loss}
            save_checkpoint(self.run / BEST, self.model, self.card)
        record = {"epoch": epoch, "phase": phase, "val_auroc": val_auroc, "val_loss": val_loss,
                  "seconds": time.perf_counter() - epoch_start, **stats}
        self.history.append(record)
        self.progress.epoch_finished(record, improved and by_val, self.best["auroc"])
        return 0 if improved or phase == "probe" else stale + 1

    def _should_stop(self, epoch: int, stale: int, elapsed: float) -> bool:
        if stale >= self.options.patience:
            self.progress.message(f"early stop: no val AUROC gain for {stale} epochs")
            self.stopped_by = f"early stop after epoch {epoch + 1} (patience {self.options.patience})"
            return True
        if self._out_of_time(elapsed, epoch):
            self.progress.warning(
                f"time limit of {self.options.time_limit_min} min reached after epoch {epoch + 1} of "
                f"{self.options.epochs}: this run is shorter than asked, and run.json says so"
            )
            self.stopped_by = f"time limit after epoch {epoch + 1} of {self.options.epochs}"
            return True
        return False

    def _out_of_time(self, elapsed: float, epoch: int) -> bool:
        """Stop before the next epoch would pass the limit; with action 'fail', raise once it is passed."""
        limit = self.options.time_limit_min
        if limit is None or not self.history or epoch + 1 >= (self.options.stop_after or self.options.epochs):
            return False
        if self.options.time_limit_action == "fail":
            if elapsed > limit * 60:
                raise EdgeSealantError(
                    f"training passed its safety time limit of {limit:g} min after epoch {epoch + 1} of {self.options.epochs} "
                    f"(is the machine busy?); a shortened run's figures would not be comparable, so it stops here"
                )
            return False
        return elapsed + self.history[-1]["seconds"] > limit * 60

    def choose_operating_point(self) -> dict[str, Any]:
        """Threshold on val (the selection split), val metrics with intervals and leak check."""
        from edge_sealant.evaluate import leak_free_metrics, part_groups

        val_scores = sigmoid(predict_logits(self.model, self.val_set.images, self.device))
        choice = threshold_choice(self.val_set.labels, val_scores, self.options.threshold_policy).to_dict()
        groups = part_groups(self.val_set.samples, self.options.group_by or (self.dataset.split_settings or {}).get("group_by"))
        labels = self.val_set.labels
        val = with_intervals(binary_metrics(labels, val_scores, choice["threshold"]), labels, val_scores, groups=groups)
        val["role"] = "selection"
        if self.data is None:  # the dataset's own val split: it may share parts with train
            val["leak_free"] = leak_free_metrics(self.dataset, "val", self.val_set, val_scores, choice["threshold"], groups)
        self.card.metrics = {"val": val, "operating_point": {**choice, "chosen_on": "val"}}
        return choice

    def finish(self, seconds: float) -> TrainResult:
        """Reload the selected epoch, choose the threshold (on val, or given), write run.json and curves."""
        from edge_sealant.plots import training_curves

        best_state = read_checkpoint(self.run / BEST)
        self.model.load_state_dict(best_state["state_dict"])
        if self.fixed_choice is not None:
            choice = self.fixed_choice
        elif self.val_set is not None:
            choice = self.choose_operating_point()
        else:
            raise EdgeSealantError("a run without validation needs a threshold chosen elsewhere (out-of-fold scores)")
        self.card.threshold = choice["threshold"]
        self.card.threshold_policy = choice["policy"]
        self.card.train = {
            "options": jsonable(dataclasses.asdict(self.options)),
            "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "threads": torch.get_num_threads(),
            "best_epoch": self.best["epoch"],
            "epochs_run": len(self.history),
            "stopped_by": self.stopped_by,
            "selection_splits": ["val"] if self.val_set is not None else [],
            "train_seconds": round(seconds, 1),
            "history": self.history,
            "defect_scale": self.defect_scale.to_dict() if self.defect_scale is not None else None,
            "skipped_images": self.train_set.skipped + (self.val_set.skipped if self.val_set is not None else []),
            **self.extra_train_info,
        }
        save_checkpoint(self.run / BEST, self.model, self.card)
        self.card.save(self.run)
        training_curves(self.history, self.run / "training_curves.png")
        result = TrainResult(run=self.run, card=self.card, best_epoch=self.best["epoch"], seconds=seconds)
        self.progress.finished(result)
        return result

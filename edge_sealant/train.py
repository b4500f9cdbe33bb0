"""Training: linear probe, then full fine-tune, early stop on validation AUROC.

Built for two places: a 2-core CPU (images decoded once into memory, no worker processes)
and a Colab GPU (AMP, channels_last, loader workers). Checkpoints are written atomically
every epoch so ``--resume`` continues a Colab session that dropped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from rich.console import Console
from torch import nn

from edge_sealant.card import ModelCard
from edge_sealant.checkpoint import BEST, LAST, read_checkpoint, save_checkpoint
from edge_sealant.errors import EdgeSealantError
from edge_sealant.imageset import LoadedImages, load_images
from edge_sealant.metrics import DEFAULT_POLICY, binary_metrics, choose_threshold, parse_policy

BALANCE_MODES = ("none", "undersample", "oversample", "weighted-loss", "weighted-sampler")


@dataclass
class TrainOptions:
    """Every knob of ``edge-sealant train``; ``--config run.yaml`` takes the same keys."""

    data: str
    out: str
    model: str = "efficientnet_lite0"
    imgsz: Optional[tuple[int, int]] = None  # (H, W); None = the model's default size
    resize_mode: str = "stretch"
    epochs: int = 15
    probe_epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pretrained: str = "imagenet"
    balance: str = "weighted-sampler"
    augment: bool = True
    patience: int = 5
    threshold_policy: str = DEFAULT_POLICY
    normal_classes: Optional[list[str]] = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"  # CUDA only: auto (bf16 where supported, else fp16), bf16, fp16, off
    workers: int = 0
    time_limit_min: Optional[float] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise EdgeSealantError(f"--amp {self.amp!r} is not one of auto, bf16, fp16, off")
        if self.balance not in BALANCE_MODES:
            raise EdgeSealantError(f"--balance {self.balance!r} is not one of {', '.join(BALANCE_MODES)}")
        if self.epochs < 1 or self.probe_epochs < 0 or self.batch_size < 1:
            raise EdgeSealantError("--epochs and --batch-size must be >= 1, --probe-epochs >= 0")
        if self.imgsz is not None:
            self.imgsz = (int(self.imgsz[0]), int(self.imgsz[1]))
        parse_policy(self.threshold_policy)  # fail before hours of training, not after

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        clean = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = sorted(set(clean) - known)
        if unknown:
            raise EdgeSealantError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**clean)


@dataclass
class TrainResult:
    run: Path
    card: ModelCard
    best_epoch: int
    seconds: float


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config whose keys are the long option names (``imgsz: 512x192`` works)."""
    import yaml

    from edge_sealant.card import parse_size

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise EdgeSealantError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise EdgeSealantError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise EdgeSealantError(f"{path}: config must be a mapping of option names to values")
    if isinstance(values.get("imgsz"), (str, int)):
        values["imgsz"] = parse_size(str(values["imgsz"]))
    if isinstance(values.get("normal_classes"), str):
        values["normal_classes"] = [v.strip() for v in values["normal_classes"].split(",") if v.strip()]
    return values


# ------------------------------------------------------------------------------- helpers
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeSealantError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise EdgeSealantError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:0, auto)") from None


def library_versions() -> dict[str, str]:
    import torchvision

    from edge_sealant import __version__

    return {
        "edge_sealant": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def augmentation() -> Any:
    """Inspection-safe augmentation: geometry and photometry a line camera really varies in."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomApply([v2.RandomAffine(degrees=3, translate=(0.03, 0.03), scale=(0.95, 1.05))], p=0.5),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.2),
        ]
    )


class ArrayDataset(torch.utils.data.Dataset):
    """Preloaded uint8 images -> (uint8 C x H x W tensor, float label)."""

    def __init__(self, loaded: LoadedImages, transform: Any = None):
        self.images = loaded.images
        self.labels = loaded.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.tensor(float(self.labels[index]))


def epoch_indices(labels: np.ndarray, balance: str, rng: np.random.Generator) -> np.ndarray:
    """The sample order of one epoch, re-balanced as asked (the loss weighting is separate)."""
    positive, negative = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    minority, majority = sorted((positive, negative), key=len)
    if balance == "undersample" and len(minority):
        chosen = np.concatenate([minority, rng.choice(majority, len(minority), replace=False)])
    elif balance == "oversample" and len(minority):
        extra = rng.choice(minority, len(majority) - len(minority), replace=True)
        chosen = np.concatenate([majority, minority, extra])
    elif balance == "weighted-sampler" and len(minority):
        weights = np.where(labels == 1, 1.0 / len(positive), 1.0 / len(negative))
        chosen = rng.choice(len(labels), len(labels), replace=True, p=weights / weights.sum())
    else:
        chosen = np.arange(len(labels))
    return rng.permutation(chosen)


def freeze_body(net: nn.Module, head: list[nn.Parameter], frozen: bool) -> None:
    """Linear probe: only the head learns, and frozen BatchNorm keeps its ImageNet statistics."""
    head_ids = {id(p) for p in head}
    for param in net.parameters():
        param.requires_grad = (not frozen) or id(param) in head_ids
    if frozen:
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in module.parameters()):
                module.eval()


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.inference_mode()
def predict_logits(net: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 64) -> np.ndarray:
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device).permute(0, 3, 1, 2).float()
        batch = batch.contiguous(memory_format=torch.channels_last)
        out.append(net(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def bce(labels: np.ndarray, logits: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    return float(np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))))


# ---------------------------------------------------------------------------------- loop
class Trainer:
    """One training run; state lives here so the epoch loop stays readable."""

    def __init__(self, options: TrainOptions, console: Console | None = None):
        from edge_sealant.data.loading import load_dataset
        from edge_sealant.models.registry import build_inspection_net, get_spec, split_parameters

        self.options = options
        self.console = console or Console(stderr=True)
        self.run = Path(options.out)
        self.device = pick_device(options.device)
        torch.manual_seed(options.seed)
        spec = get_spec(options.model)
        self.dataset = load_dataset(options.data, normal_classes=options.normal_classes, seed=options.seed)
        normal = set(self.dataset.normal_classes)
        self.card = ModelCard(
            model=options.model,
            input_size=options.imgsz or spec.default_size,
            resize_mode=options.resize_mode,
            mean=spec.mean,
            std=spec.std,
            defect_classes=[c for c in self.dataset.class_names if c not in normal],
            threshold=0.5,
            threshold_policy="untuned",
            data_summary=self.dataset.summary(),
            library_versions=library_versions(),
        )
        self.net = build_inspection_net(options.model, pretrained=options.pretrained).to(self.device)
        # channels_last: faster convolutions with cuDNN and with oneDNN on CPU (measured ~20% here).
        self.net = self.net.to(memory_format=torch.channels_last)
        self.head, _ = split_parameters(self.net)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.history: list[dict[str, Any]] = []
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
        self.train_set = load_images(self.dataset.split("train"), self.card)
        self.val_set = load_images(self.dataset.split("val"), self.card)
        for loaded in (self.train_set, self.val_set):
            for problem in loaded.skipped:
                self.console.print(f"[yellow]skipped[/] {problem}")
        labels = self.train_set.labels
        self.console.print(
            f"data: train {len(labels)} ({int(labels.sum())} defect), val {len(self.val_set.labels)} "
            f"({int(self.val_set.labels.sum())} defect), input {self.card.height}x{self.card.width} "
            f"{self.card.resize_mode}; decoded in {time.perf_counter() - started:.1f} s"
        )
        if labels.min() == labels.max() or self.val_set.labels.min() == self.val_set.labels.max():
            raise EdgeSealantError("train and val splits both need normal and defect images")
        self.transform = augmentation() if self.options.augment else None
        positives = max(1, int(labels.sum()))
        pos_weight = (len(labels) - positives) / positives if self.options.balance == "weighted-loss" else 1.0
        self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=self.device))

    def loader(self, epoch: int) -> tuple[torch.utils.data.DataLoader, np.ndarray]:
        rng = np.random.default_rng([self.options.seed, epoch])
        indices = epoch_indices(self.train_set.labels, self.options.balance, rng)
        torch.manual_seed(self.options.seed * 100_003 + epoch)  # augmentation draws, resumable
        dataset = ArrayDataset(self.train_set, self.transform)
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
        params = [p for p in self.net.parameters() if p.requires_grad]
        lr = options.lr * 3 if phase == "probe" else options.lr
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=options.weight_decay)
        self.optimizer_phase = phase
        epochs = options.probe_epochs if phase == "probe" else options.epochs - options.probe_epochs
        total = max(1, epochs * steps_per_epoch)
        self.scheduler = cosine_with_warmup(self.optimizer, total, warmup_steps=max(1, steps_per_epoch // 2))

    def train_epoch(self, epoch: int, progress: Any, task: Any) -> dict[str, Any]:
        loader, indices = self.loader(epoch)
        self.net.train()
        if self.phase(epoch) == "probe":
            freeze_body(self.net, self.head, frozen=True)
        total, count = 0.0, 0
        progress.reset(task, total=len(loader))
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True).float()
            labels = labels.to(self.device, non_blocking=True)
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None):
                loss = self.loss_fn(self.net(images).float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total += loss.item() * len(labels)
            count += len(labels)
            progress.update(task, advance=1, loss=total / count)
        defect = int(self.train_set.labels[indices].sum())
        return {"train_loss": total / max(1, count), "mix": {"normal": len(indices) - defect, "defect": defect}}

    def validate(self) -> tuple[float, float]:
        logits = predict_logits(self.net, self.val_set.images, self.device)
        metrics = binary_metrics(self.val_set.labels, sigmoid(logits), 0.5)
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
            options=_jsonable(dataclasses.asdict(self.options)),
        )

    def restore(self, steps_per_epoch: int) -> None:
        state = read_checkpoint(self.run / LAST)
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
        self.console.print(f"resuming {self.run} after epoch {self.start_epoch} (best val AUROC {self.best['auroc']:.4f})")

    # -- main
    def fit(self, resume: bool = False) -> TrainResult:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.run.mkdir(parents=True, exist_ok=True)
        self.load_data()
        steps = len(self.loader(0)[0])
        if resume:
            self.restore(steps)
        self.console.print(f"training {self.options.model} on {self.device} ({self.options.balance}), run folder {self.run}")
        started = time.perf_counter()
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  best val AUROC {task.fields[best]:.4f}"),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("epoch", total=steps, loss=0.0, best=max(0.0, self.best["auroc"]))
            stale = sum(1 for h in self.history if h["phase"] == "finetune" and h["epoch"] > self.best["epoch"])
            for epoch in range(self.start_epoch, self.options.epochs):
                epoch_start = time.perf_counter()
                phase = self.phase(epoch)
                if phase != self.optimizer_phase:
                    self.make_optimizer(phase, steps)
                progress.update(task, description=f"epoch {epoch + 1}/{self.options.epochs} {phase}")
                stats = self.train_epoch(epoch, progress, task)
                val_auroc, val_loss = self.validate()
                improved = val_auroc > self.best["auroc"] or (val_auroc == self.best["auroc"] and val_loss < self.best["loss"])
                if improved:
                    self.best = {"epoch": epoch, "auroc": val_auroc, "loss": val_loss}
                    save_checkpoint(self.run / BEST, self.net, self.card)
                stale = 0 if improved or phase == "probe" else stale + 1
                self.history.append(
                    {"epoch": epoch, "phase": phase, "val_auroc": val_auroc, "val_loss": val_loss, "seconds": time.perf_counter() - epoch_start, **stats}
                )
                progress.update(task, best=self.best["auroc"])
                progress.console.print(
                    f"epoch {epoch + 1}: train loss {stats['train_loss']:.4f}, val loss {val_loss:.4f}, "
                    f"val AUROC {val_auroc:.4f}{' *' if improved else ''}  mix {stats['mix']}"
                )
                elapsed = self.seconds_before + time.perf_counter() - started
                self.save_last(epoch, elapsed)
                if stale >= self.options.patience:
                    progress.console.print(f"early stop: no val AUROC gain for {stale} epochs")
                    break
                if self._out_of_time(elapsed):
                    progress.console.print(f"time limit of {self.options.time_limit_min} min reached")
                    break
        seconds = self.seconds_before + time.perf_counter() - started
        return self.finish(seconds)

    def _out_of_time(self, elapsed: float) -> bool:
        if self.options.time_limit_min is None or not self.history:
            return False
        next_epoch = self.history[-1]["seconds"]
        return elapsed + next_epoch > self.options.time_limit_min * 60

    def finish(self, seconds: float) -> TrainResult:
        """Reload the best epoch, choose the threshold on val, write run.json and curves."""
        from edge_sealant.plots import training_curves

        best_state = read_checkpoint(self.run / BEST)
        self.net.load_state_dict(best_state["state_dict"])
        val_scores = sigmoid(predict_logits(self.net, self.val_set.images, self.device))
        policy = parse_policy(self.options.threshold_policy)
        threshold = choose_threshold(self.val_set.labels, val_scores, policy)
        self.card.threshold = threshold
        self.card.threshold_policy = str(policy)
        self.card.metrics = {"val": binary_metrics(self.val_set.labels, val_scores, threshold)}
        self.card.train = {
            "options": _jsonable(dataclasses.asdict(self.options)),
            "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "threads": torch.get_num_threads(),
            "best_epoch": self.best["epoch"],
            "epochs_run": len(self.history),
            "train_seconds": round(seconds, 1),
            "history": self.history,
            "skipped_images": self.train_set.skipped + self.val_set.skipped,
        }
        save_checkpoint(self.run / BEST, self.net, self.card)
        self.card.save(self.run)
        training_curves(self.history, self.run / "training_curves.png")
        val = self.card.metrics["val"]
        self.console.print(
            f"best epoch {self.best['epoch'] + 1}: val AUROC {val['auroc']:.4f}; threshold {threshold:.4g} ({policy}) "
            f"gives val recall {val['recall']:.3f}, false-alarm rate {val['fpr']:.3f}; {seconds / 60:.1f} min"
        )
        return TrainResult(run=self.run, card=self.card, best_epoch=self.best["epoch"], seconds=seconds)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def train(options: TrainOptions, console: Console | None = None) -> TrainResult:
    """Train a classifier into ``options.out`` (see :class:`TrainOptions`)."""
    out = Path(options.out)
    if (out / "run.json").exists():
        raise EdgeSealantError(f"{out} already holds a finished run; choose another --out")
    if (out / LAST).exists():
        raise EdgeSealantError(f"{out} holds an interrupted run; continue it with --resume {out}")
    threads = int(os.environ.get("EDGE_SEALANT_THREADS", "0"))
    if threads:
        torch.set_num_threads(threads)
    return Trainer(options, console).fit(resume=False)


def resume(run: str | Path, console: Console | None = None, data: str | None = None, epochs: int | None = None) -> TrainResult:
    """Continue an interrupted run from its last completed epoch.

    Options come from the run; ``data`` (the dataset moved, e.g. a new Colab mount) and
    ``epochs`` (train longer) may be overridden.
    """
    if (Path(run) / "run.json").exists():
        raise EdgeSealantError(f"{run} is finished already (run.json exists); nothing to resume")
    state = read_checkpoint(Path(run) / LAST)
    values = dict(state["options"])
    if epochs is not None:
        values["epochs"] = epochs
    if data is not None:
        values["data"] = str(data)
    if values.get("imgsz"):
        values["imgsz"] = tuple(values["imgsz"])
    options = TrainOptions.from_mapping(values)
    options.out = str(run)
    return Trainer(options, console).fit(resume=True)

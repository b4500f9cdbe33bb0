"""Training: linear probe, then full fine-tune, early stop on validation AUROC.

Built for two places: a 2-core CPU (images decoded once into memory, no worker processes)
and a Colab GPU (AMP, channels_last, loader workers). Checkpoints are written atomically
every epoch so ``--resume`` continues a Colab session that dropped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from rich.console import Console
from torch import nn

from edge_sealant.card import ModelCard, removed_on_failure
from edge_sealant.checkpoint import BEST, LAST, read_checkpoint, save_checkpoint
from edge_sealant.errors import EdgeSealantError
from edge_sealant.imageset import LoadedImages, load_images
from edge_sealant.versions import TRAINING, library_versions
from edge_sealant.metrics import (
    DEFAULT_POLICY,
    POLICY_HELP,
    binary_metrics,
    format_with_ci,
    operating_point_warnings,
    parse_policy,
    threshold_choice,
    with_intervals,
)

OPTION_NAMES = {"time_limit_min": "time-limit", "max_group_size": "max-group"}  # field -> CLI option, for messages
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
    ema_epochs: float = 0.0  # half-life, in epochs, of an average of the weights used for validation and export; 0: off
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
    time_limit_action: str = "stop"  # stop: keep the best epoch so far (said loudly); fail: raise
    folds: Optional[int] = None  # K: grouped K-fold on train+val, then one model on all of it
    group_by: Optional[str] = None  # regex on file names: images sharing its first group stay together
    max_group_size: Optional[int] = None  # bound on near-duplicate chains (default 2% of images, >= 16)
    stop_after: Optional[int] = None  # train on the schedule of `epochs` but stop after this many
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._coerce_numbers()
        if not isinstance(self.data, (str, Path)) or not str(self.data):
            raise EdgeSealantError(f"DATA must be a path, got {self.data!r}")
        if not isinstance(self.out, (str, Path)) or not str(self.out):
            raise EdgeSealantError(f"--out must be a path, got {self.out!r}")
        if not (math.isfinite(self.lr) and 0.0 < self.lr <= 1.0):
            raise EdgeSealantError(f"--lr {self.lr} must be a number in (0, 1]")
        if not (math.isfinite(self.weight_decay) and 0.0 <= self.weight_decay < 1.0):
            raise EdgeSealantError(f"weight_decay {self.weight_decay} must be in [0, 1)")
        if self.patience < 1 or self.workers < 0:
            raise EdgeSealantError("--patience must be >= 1 and --workers >= 0")
        if self.time_limit_min is not None and not (math.isfinite(self.time_limit_min) and self.time_limit_min > 0):
            raise EdgeSealantError(f"--time-limit {self.time_limit_min} must be a positive number of minutes")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise EdgeSealantError(f"--amp {self.amp!r} is not one of auto, bf16, fp16, off")
        if self.balance not in BALANCE_MODES:
            raise EdgeSealantError(f"--balance {self.balance!r} is not one of {', '.join(BALANCE_MODES)}")
        if self.epochs < 1 or self.probe_epochs < 0 or self.batch_size < 1:
            raise EdgeSealantError("--epochs and --batch-size must be >= 1, --probe-epochs >= 0")
        if not (isinstance(self.ema_epochs, (int, float)) and 0.0 <= self.ema_epochs <= 100.0):
            raise EdgeSealantError(f"--ema-epochs {self.ema_epochs} must be in [0, 100]")
        if self.time_limit_action not in ("stop", "fail"):
            raise EdgeSealantError(f"time limit action {self.time_limit_action!r} is not stop or fail")
        if self.folds is not None:
            if self.folds < 2:
                raise EdgeSealantError(f"--folds {self.folds} must be >= 2")
            if self.time_limit_min is not None:
                raise EdgeSealantError("--time-limit cannot be combined with --folds: every fold must train the same epochs")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.epochs:
            raise EdgeSealantError(f"stop_after {self.stop_after} must be in [1, epochs]")
        if self.imgsz is not None:
            from edge_sealant.card import parse_size

            if not (isinstance(self.imgsz, (list, tuple)) and len(self.imgsz) == 2):
                raise EdgeSealantError(f"--imgsz {self.imgsz!r} is not HxW (e.g. 512x192)")
            self.imgsz = parse_size("x".join(str(v) for v in self.imgsz))
        if not isinstance(self.threshold_policy, str):
            raise EdgeSealantError(f"--threshold-policy {self.threshold_policy!r} is not a policy ({POLICY_HELP})")
        parse_policy(self.threshold_policy)  # fail before hours of training, not after

    def _coerce_numbers(self) -> None:
        """Numbers from a YAML config may arrive as text (``lr: 1e-3`` is a string in YAML 1.1)."""
        for spec in dataclasses.fields(self):
            kind = str(spec.type)
            if ("int" not in kind and "float" not in kind) or any(t in kind for t in ("str", "tuple", "list", "dict")):
                continue
            value = getattr(self, spec.name)
            if value is None and "Optional" in kind:
                continue
            number = _number(value, integer="int" in kind and "float" not in kind)
            if number is None:
                want = "a whole number" if "int" in kind and "float" not in kind else "a number"
                raise EdgeSealantError(f"--{OPTION_NAMES.get(spec.name, spec.name.replace('_', '-'))} {value!r} is not {want}")
            setattr(self, spec.name, number)

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


def _number(value: Any, integer: bool) -> int | float | None:
    """``value`` as an int/float (numeric text accepted), or None when it is not one.

    NaN and infinities pass as floats: the option's own range check names them.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if integer:
        return int(value) if math.isfinite(value) and float(value).is_integer() else None
    return float(value)


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


class WeightAverage:
    """Exponential moving average of the weights (BatchNorm statistics copied).

    Small inspection sets make SGD iterates noisy from epoch to epoch (val AUROC jumping by a
    few points); the average of the last epoch or so is a steadier, usually better model. The
    decay ramps up from zero, so the fresh head is not averaged with its random start.
    """

    def __init__(self, net: nn.Module, half_life_steps: float):
        import copy

        self.model = copy.deepcopy(net).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.decay = 0.5 ** (1.0 / max(1.0, half_life_steps))
        self.updates = 0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.model.parameters(), net.parameters()):
            average.lerp_(current.detach(), 1.0 - decay)
        for average, current in zip(self.model.buffers(), net.buffers()):
            average.copy_(current)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def bce(labels: np.ndarray, logits: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    return float(np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))))


def load_training_dataset(options: TrainOptions) -> Any:
    """The dataset as ``options`` ask for it (normal classes, split seed, grouping)."""
    from edge_sealant.data.loading import load_dataset

    return load_dataset(
        options.data, normal_classes=options.normal_classes, seed=options.seed,
        group_by=options.group_by, max_group_size=options.max_group_size,
    )


def new_card(options: TrainOptions, dataset: Any) -> ModelCard:
    """The card of a run before training: preprocessing, labels and the data it saw."""
    from edge_sealant.models.registry import get_spec

    spec = get_spec(options.model)
    normal = set(dataset.normal_classes)
    return ModelCard(
        model=options.model,
        input_size=options.imgsz or spec.default_size,
        resize_mode=options.resize_mode,
        mean=spec.mean,
        std=spec.std,
        defect_classes=[c for c in dataset.class_names if c not in normal],
        threshold=0.5,
        threshold_policy="untuned",
        data_summary=dataset.summary(),
        library_versions=library_versions(TRAINING),
    )


@dataclass
class TrainData:
    """Decoded images a :class:`Trainer` learns from; ``val`` None means no validation."""

    train: LoadedImages
    val: Optional[LoadedImages]


# ---------------------------------------------------------------------------------- loop
class Trainer:
    """One training run; state lives here so the epoch loop stays readable.

    By default it loads ``options.data`` and validates on its val split. The K-fold driver
    passes ``dataset`` and decoded ``data`` instead (a fold's images, or all of train+val
    without validation for the final model) and sets ``fixed_choice`` (the threshold chosen
    on out-of-fold scores).
    """

    def __init__(self, options: TrainOptions, console: Console | None = None, dataset: Any = None, data: TrainData | None = None):
        from edge_sealant.models.registry import build_inspection_net, split_parameters

        self.options = options
        self.console = console or Console(stderr=True)
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
        self.net = build_inspection_net(options.model, pretrained=options.pretrained).to(self.device)
        # channels_last: faster convolutions with cuDNN and with oneDNN on CPU (measured ~20% here).
        self.net = self.net.to(memory_format=torch.channels_last)
        self.head, _ = split_parameters(self.net)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema: Optional[WeightAverage] = None  # made once the steps per epoch are known
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
        if self.data is None:
            self.train_set = load_images(self.dataset.split("train"), self.card)
            self.val_set: Optional[LoadedImages] = load_images(self.dataset.split("val"), self.card)
            for loaded in (self.train_set, self.val_set):
                for problem in loaded.skipped:
                    self.console.print(f"[yellow]skipped[/] {problem}")
        else:
            self.train_set, self.val_set = self.data.train, self.data.val
        labels = self.train_set.labels
        val = "no validation" if self.val_set is None else f"val {len(self.val_set.labels)} ({int(self.val_set.labels.sum())} defect)"
        self.console.print(
            f"data: train {len(labels)} ({int(labels.sum())} defect), {val}, input {self.card.height}x{self.card.width} "
            f"{self.card.resize_mode}; decoded in {time.perf_counter() - started:.1f} s"
        )
        if labels.min() == labels.max() or (self.val_set is not None and self.val_set.labels.min() == self.val_set.labels.max()):
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
            if self.ema is not None:
                self.ema.update(self.net)
            total += loss.item() * len(labels)
            count += len(labels)
            progress.update(task, advance=1, loss=total / count)
        defect = int(self.train_set.labels[indices].sum())
        return {"train_loss": total / max(1, count), "mix": {"normal": len(indices) - defect, "defect": defect}}

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
            options=_jsonable(dataclasses.asdict(self.options)),
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
        self.console.print(f"resuming {self.run} after epoch {self.start_epoch} (best val AUROC {_auroc_text(self.best['auroc'])})")

    # -- main
    def fit(self, resume: bool = False) -> TrainResult:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.run.mkdir(parents=True, exist_ok=True)
        self.load_data()
        steps = len(self.loader(0)[0])
        if resume:
            self.restore(steps)
        if self.options.ema_epochs:
            self.ema = WeightAverage(self.net, self.options.ema_epochs * steps)
            if resume and "ema_state" in self._resume_state:
                self.ema.model.load_state_dict(self._resume_state["ema_state"])
                self.ema.updates = int(self._resume_state.get("ema_updates", 0))
        self.console.print(f"training {self.options.model} on {self.device} ({self.options.balance}), run folder {self.run}")
        started = time.perf_counter()
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  best val AUROC {task.fields[best]}"),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("epoch", total=steps, loss=0.0, best=_auroc_text(self.best["auroc"]))
            stale = sum(1 for h in self.history if h["phase"] == "finetune" and h["epoch"] > self.best["epoch"])
            for epoch in range(self.start_epoch, self.options.stop_after or self.options.epochs):
                epoch_start = time.perf_counter()
                phase = self.phase(epoch)
                if phase != self.optimizer_phase:
                    self.make_optimizer(phase, steps)
                progress.update(task, description=f"epoch {epoch + 1}/{self.options.epochs} {phase}")
                stats = self.train_epoch(epoch, progress, task)
                val_auroc, val_loss = self.validate()
                if val_auroc is None:  # no validation: the latest epoch is the model
                    improved = True
                else:
                    improved = val_auroc > self.best["auroc"] or (val_auroc == self.best["auroc"] and val_loss < self.best["loss"])
                if improved:
                    self.best = {"epoch": epoch, "auroc": val_auroc, "loss": val_loss}
                    save_checkpoint(self.run / BEST, self.model, self.card)
                stale = 0 if improved or phase == "probe" else stale + 1
                self.history.append(
                    {"epoch": epoch, "phase": phase, "val_auroc": val_auroc, "val_loss": val_loss, "seconds": time.perf_counter() - epoch_start, **stats}
                )
                progress.update(task, best=_auroc_text(self.best["auroc"]))
                validation = "" if val_auroc is None else f", val loss {val_loss:.4f}, val AUROC {val_auroc:.4f}{' *' if improved else ''}"
                progress.console.print(f"epoch {epoch + 1}: train loss {stats['train_loss']:.4f}{validation}  mix {stats['mix']}")
                elapsed = self.seconds_before + time.perf_counter() - started
                self.save_last(epoch, elapsed)
                if stale >= self.options.patience:
                    progress.console.print(f"early stop: no val AUROC gain for {stale} epochs")
                    self.stopped_by = f"early stop after epoch {epoch + 1} (patience {self.options.patience})"
                    break
                if self._out_of_time(elapsed, epoch):
                    progress.console.print(
                        f"[bold yellow]warning:[/] time limit of {self.options.time_limit_min} min reached after epoch "
                        f"{epoch + 1} of {self.options.epochs}: this run is shorter than asked, and run.json says so"
                    )
                    self.stopped_by = f"time limit after epoch {epoch + 1} of {self.options.epochs}"
                    break
        seconds = self.seconds_before + time.perf_counter() - started
        return self.finish(seconds)

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
        from edge_sealant.evaluate import leak_free_metrics

        val_scores = sigmoid(predict_logits(self.model, self.val_set.images, self.device))
        choice = threshold_choice(self.val_set.labels, val_scores, self.options.threshold_policy).to_dict()
        val = with_intervals(binary_metrics(self.val_set.labels, val_scores, choice["threshold"]), self.val_set.labels, val_scores)
        val["role"] = "selection"
        if self.data is None:  # the dataset's own val split: it may share parts with train
            val["leak_free"] = leak_free_metrics(self.dataset, "val", self.val_set, val_scores, choice["threshold"])
        self.card.metrics = {"val": val, "operating_point": {**choice, "chosen_on": "val"}}
        return choice

    def finish(self, seconds: float) -> TrainResult:
        """Reload the best epoch, choose the threshold (on val, or given), write run.json and curves."""
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
            "options": _jsonable(dataclasses.asdict(self.options)),
            "device": str(self.device),
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "threads": torch.get_num_threads(),
            "best_epoch": self.best["epoch"],
            "epochs_run": len(self.history),
            "stopped_by": self.stopped_by,
            "selection_splits": ["val"] if self.val_set is not None else [],
            "train_seconds": round(seconds, 1),
            "history": self.history,
            "skipped_images": self.train_set.skipped + (self.val_set.skipped if self.val_set is not None else []),
            **self.extra_train_info,
        }
        save_checkpoint(self.run / BEST, self.model, self.card)
        self.card.save(self.run)
        training_curves(self.history, self.run / "training_curves.png")
        if self.val_set is not None:
            val = self.card.metrics["val"]
            self.console.print(
                f"best epoch {self.best['epoch'] + 1}: val AUROC {format_with_ci(val['auroc'], val['auroc_ci'])} (val is the "
                f"selection split); threshold {choice['threshold']:.4g} ({choice['policy']}) gives val recall {val['recall']:.3f}, "
                f"false-alarm rate {format_with_ci(val['fpr'], val['fpr_ci'], 3)}; {seconds / 60:.1f} min"
            )
        leak = self.card.metrics.get("val", {}).get("leak_free") or {}
        if leak.get("excluded"):
            self.console.print(
                f"[yellow]{leak['excluded']} val images have an exact or near duplicate in train or test;[/] on the "
                f"{leak['kept']} others: AUROC {format_with_ci(leak.get('auroc'), leak.get('auroc_ci'))}"
            )
        for warning in operating_point_warnings(choice, choice.get("chosen_on", "val")) + self.card.metrics.get("val", {}).get("warnings", []):
            self.console.print(f"[bold yellow]warning:[/] {warning}")
        return TrainResult(run=self.run, card=self.card, best_epoch=self.best["epoch"], seconds=seconds)


def _auroc_text(value: float) -> str:
    return "-" if value is None or value < 0 else f"{value:.4f}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def train(options: TrainOptions, console: Console | None = None) -> TrainResult:
    """Train a classifier into ``options.out`` (see :class:`TrainOptions`).

    With ``options.folds`` = K: grouped K-fold cross-validation on train+val first, then one
    model on all of it (see :mod:`edge_sealant.crossval`).
    """
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
            from edge_sealant.crossval import train_folds

            return train_folds(options, console)
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

"""The pieces of a training loop: device, augmentation, sampling, probe/fine-tune, averaging.

Each is small and testable alone; :class:`edge_sealant.train.trainer.Trainer` puts them together.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from edge_sealant.errors import EdgeSealantError
from edge_sealant.imageset import LoadedImages


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeSealantError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise EdgeSealantError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:0, auto)") from None


def augmentation(quarter_turns: bool = False) -> Any:
    """Inspection-safe augmentation: geometry and photometry a line camera really varies in.

    ``quarter_turns`` (square inputs) adds a random transpose: with the two flips, all eight
    quarter turns and mirrors, for defects that have no direction of their own on the part.
    """
    return v2.Compose(
        [
            *([RandomTranspose()] if quarter_turns else []),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomApply([v2.RandomAffine(degrees=3, translate=(0.03, 0.03), scale=(0.95, 1.05))], p=0.5),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.2),
        ]
    )


class RandomTranspose(v2.Transform):
    """Swap rows and columns of the image and its mask together, with probability ``p``
    (square inputs only: the shape must not change)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"apply": bool(torch.rand(()) < self.p)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        from torchvision import tv_tensors

        if not params["apply"] or not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        if inpt.shape[-1] != inpt.shape[-2]:
            raise EdgeSealantError(f"quarter turns need a square input, got {inpt.shape[-2]}x{inpt.shape[-1]}")
        return tv_tensors.wrap(inpt.transpose(-1, -2).contiguous(), like=inpt)


class ArrayDataset(torch.utils.data.Dataset):
    """Preloaded uint8 images -> (uint8 C x H x W tensor, float label); with defect masks,
    also (H x W uint8 mask, whether the mask is known), moved by the same flips and affine,
    and, with a ``paster`` (:class:`edge_sealant.train.paste.DefectPaster`), its ``share``
    of the normal images turned into defect images before the augmentation."""

    def __init__(self, loaded: LoadedImages, transform: Any = None, paster: Any = None):
        self.images = loaded.images
        self.labels = loaded.labels
        self.masks = loaded.masks
        self.known = loaded.has_geometry if loaded.masks is not None else None
        self.transform = transform
        self.paster = paster  # defect copy-paste (train.paste), or None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        from torchvision import tv_tensors

        image = tv_tensors.Image(torch.from_numpy(self.images[index]).permute(2, 0, 1))
        label = torch.tensor(float(self.labels[index]))
        if self.masks is None:
            if self.transform is not None:
                image = self.transform(image)
            return image.as_subclass(torch.Tensor), label
        pixels, mask_array = self.images[index], self.masks[index]
        if self.paster is not None and self.labels[index] == 0 and self.known[index] and float(torch.rand(())) < self.paster.share:
            # torch's generator, so the draws follow the epoch's seed like the other augmentations
            rng = np.random.default_rng(int(torch.randint(2**31, ())))
            pixels, mask_array = self.paster.paste(pixels, rng, mask_array)
            label = torch.tensor(1.0)
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(mask_array))
        if self.transform is not None:
            image, mask = self.transform(image, mask)  # geometry moves both; colour only the image
        return image.as_subclass(torch.Tensor), label, mask.as_subclass(torch.Tensor), torch.tensor(bool(self.known[index]))


def heatmap_loss(
    heatmap_logits: torch.Tensor, masks: torch.Tensor, known: torch.Tensor, max_pos_weight: float = 20.0, target: str = "any"
) -> torch.Tensor:
    """Per-cell BCE of the heatmap against the defect masks, on images whose mask is known.

    ``target`` says what a cell should read (:func:`cell_targets`). Defect cells are few
    (about 1-3% of a defect image, none on a normal one), so they are weighted by the batch's
    clear/defect cell ratio, capped at ``max_pos_weight``: without it the head learns "clear
    everywhere" and its peak stops ranking images.
    """
    if not bool(known.any()):
        return heatmap_logits.sum() * 0.0  # keeps the graph (and DDP/AMP) happy
    logits = heatmap_logits[known].float()
    marked = (masks[known] > 0).float().unsqueeze(1)
    targets = cell_targets(marked, logits.shape[-2:], target)
    positives = targets.sum()
    weight = ((targets.numel() - positives) / positives.clamp(min=1.0)).clamp(1.0, max_pos_weight)
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)


def cell_targets(marked: torch.Tensor, size: tuple[int, int] | torch.Size, target: str = "any") -> torch.Tensor:
    """What each heatmap cell should read, from N x 1 x H x W pixel masks (1 = defect).

    ``any``: 1 when any pixel of the cell is marked. A defect a cell across then marks every
    cell it grazes (up to 2 x 2 of them) as much as the one it fills, so nothing tells the
    head which of them holds the defect, and its peak often sits on a grazed neighbour, a
    cell centre outside the box. ``coverage``: the share of the cell marked, divided by the
    largest share among its 3 x 3 neighbours: 1 on the cells that hold most of a defect
    (every cell along a thin crack, the inside of a large region), the grazed neighbours
    proportionally less.
    """
    if target == "any":
        return F.adaptive_max_pool2d(marked, size)
    coverage = F.adaptive_avg_pool2d(marked, size)
    local_peak = F.max_pool2d(coverage, kernel_size=3, stride=1, padding=1)
    return torch.where(coverage > 0, coverage / local_peak.clamp(min=1e-6), torch.zeros_like(coverage))


def training_transform(options: Any) -> Any:
    """The run's augmentation (``options``: a :class:`~edge_sealant.train.options.TrainOptions`), or None with ``--no-augment``."""
    return augmentation(options.quarter_turns) if options.augment else None


def image_loss_fn(options: Any, labels: np.ndarray, device: torch.device | str = "cpu") -> nn.BCEWithLogitsLoss:
    """The image BCE; ``--balance weighted-loss`` weights defects by the normal/defect ratio of ``labels``."""
    positives = max(1, int(np.asarray(labels).sum()))
    pos_weight = (len(labels) - positives) / positives if options.balance == "weighted-loss" else 1.0
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))


def inspection_loss(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, geometry: list[torch.Tensor], loss_fn: nn.Module, seg_weight: float,
    heatmap_target: str = "any",
) -> torch.Tensor:
    """The training loss of one batch (training and quantization-aware fine-tuning alike).

    Image BCE; with a heatmap, the fused score's BCE + the classifier's own BCE +
    ``seg_weight`` x the per-cell loss on images whose masks are known. The classifier's own
    term keeps it a standalone detector (without it the heatmap carries the fused score and the
    classifier decays: measured val AUROC 0.70 alone), so the fusion combines two real opinions.
    ``geometry``: ``[masks, known]`` from :class:`ArrayDataset`, or empty for image labels only;
    ``heatmap_target``: what a cell should read (:func:`cell_targets`).
    """
    if not geometry:
        return loss_fn(net(images).float(), labels)
    logits, heatmap, classifier_logit = net.forward_parts(images)
    masks, known = geometry
    image_loss = loss_fn(logits.float(), labels) + loss_fn(classifier_logit.float(), labels)
    return image_loss + seg_weight * heatmap_loss(heatmap, masks, known, target=heatmap_target)


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


def predict_logits(net: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Image logits of a training ``InspectionNet`` (eval mode) for uint8 NHWC ``images``."""
    from edge_sealant.torch_backend import predict_in_batches

    net.eval()
    return predict_in_batches(net, images, batch_size, device, to_input=training_input)


def training_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 -> what ``InspectionNet`` takes (float N x 3 x H x W in [0, 255])."""
    # NCHW float in [0, 255], channels_last as in training (faster convolutions, same numbers)
    return batch.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)


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

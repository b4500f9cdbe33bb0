"""The network as trained and as deployed.

``InspectionNet`` = mean/std normalisation + backbone -> one defect logit. Training feeds it
float NCHW in [0, 255]. With a :class:`HeatmapHead` it also predicts a defect logit per
cell of a stride-16 (or stride-8) grid, learnt from the customer's boxes/polygons, and the image logit
fuses the classifier with the heatmap's peak (three learnt scalars).

``DeployNet`` wraps it for export: uint8 NHWC in, defect probability out (plus the heatmap
in [0, 1] for heatmap models), so the factory PC hands over resized frames and never
re-implements normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from edge_sealant.card import HEATMAP_STRIDES as CARD_STRIDES

HEATMAP_STRIDE = 16  # the default cell: 16 input pixels
HEATMAP_STRIDES = tuple(s for s in CARD_STRIDES if s)  # 8: four times the cells, for defects a few input pixels across
HEATMAP_WIDTH = 64  # channels of the dense head: ~0.1 M parameters, ~2% of Lite0's compute
HEATMAP_PRIOR = 0.01  # initial cell probability: the head starts by saying "clear" everywhere


@dataclass(frozen=True)
class Taps:
    """Where the heatmap reads the backbone: the last stage at stride 16 (index into the
    backbone's block sequence) and the channels there and at the final stride-32 features;
    for a stride-8 heatmap also the last stage at stride 8 (``index8`` -1: not used)."""

    index: int
    channels16: int
    channels32: int
    index8: int = -1
    channels8: int = 0

    @property
    def stride(self) -> int:
        return 8 if self.index8 >= 0 else 16


class HeatmapHead(nn.Module):
    """Stride-16 features plus upsampled stride-32 features -> one defect logit per cell.

    The stride-32 features carry what the classifier knows (what a defect looks like), the
    stride-16 ones where it is; a 1x1 lateral each (FPN-style), a depthwise 3x3 to look at
    neighbours, a 1x1 to one logit. Light enough to cost a few percent of the backbone.
    With stride-8 taps the merged stride-16 map is upsampled once more onto a stride-8
    lateral (the FPN top-down path one level further), so a defect a few input pixels
    across gets a cell of its own instead of a sixteenth of one.
    """

    def __init__(self, taps: Taps, width: int = HEATMAP_WIDTH):
        super().__init__()
        self.lateral16 = nn.Sequential(nn.Conv2d(taps.channels16, width, 1, bias=False), nn.BatchNorm2d(width))
        self.lateral32 = nn.Sequential(nn.Conv2d(taps.channels32, width, 1, bias=False), nn.BatchNorm2d(width))
        self.lateral8 = (
            nn.Sequential(nn.Conv2d(taps.channels8, width, 1, bias=False), nn.BatchNorm2d(width)) if taps.stride == 8 else None
        )
        self.mix = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.constant_(self.out.bias, float(torch.logit(torch.tensor(HEATMAP_PRIOR))))

    def forward(self, f16: torch.Tensor, f32: torch.Tensor, f8: Optional[torch.Tensor] = None) -> torch.Tensor:
        merged = F.relu(self.lateral16(f16) + _upsampled_like(self.lateral32(f32), f16))
        if self.lateral8 is not None:
            merged = F.relu(self.lateral8(f8) + _upsampled_like(merged, f8))
        return self.out(self.mix(merged))


def _upsampled_like(top: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
    top = F.interpolate(top, scale_factor=2.0, mode="nearest")
    if top.shape[-2:] != below.shape[-2:]:  # odd sides only (input not a multiple of the coarser stride):
        # rounded up there. Guarded so that the usual sizes export without the
        # shape-reading ops a slice would add (measured +11% latency in OpenVINO f32).
        top = top[:, :, : below.shape[2], : below.shape[3]]
    return top


class ScoreFusion(nn.Module):
    """Image logit = a * classifier logit + b * max heatmap logit + c (a, b, c learnt).

    The peak cell is the evidence an operator can see; the classifier keeps what a cell
    cannot (a missing bead, a global smear). Starting at a = b = 1/2, c = 0 lets both speak.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.tensor([0.5, 0.5]))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, classifier_logit: torch.Tensor, heatmap_logits: torch.Tensor) -> torch.Tensor:
        peak = heatmap_logits.flatten(1).amax(dim=1)
        return self.weights[0] * classifier_logit + self.weights[1] * peak + self.bias


class InspectionNet(nn.Module):
    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], family: str = "",
                 taps: Optional[Taps] = None):
        super().__init__()
        self.backbone = backbone
        self.family = family
        self.taps = taps
        # Buffers (not constants) so they move with .to(device) and are saved in checkpoints.
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)
        self.heatmap_head = HeatmapHead(taps) if taps is not None else None
        self.fusion = ScoreFusion() if taps is not None else None

    @property
    def has_heatmap(self) -> bool:
        return self.heatmap_head is not None

    def forward(self, pixels: torch.Tensor, parts: bool = False) -> Any:
        """``pixels``: float N x 3 x H x W in [0, 255]. Returns N defect logits; with ``parts``,
        the tuple of :meth:`forward_parts`.

        Every entry point goes through ``forward`` (``self(...)``): wrappers that replace it,
        such as NNCF's quantizer hooks, then see every call.
        """
        result = self._compute_parts(pixels)
        return result if parts else result[0]

    def forward_with_heatmap(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(N image logits, N x 1 x H/s x W/s heatmap logits (s: 16 or 8) or None for image-only nets)."""
        logits, heatmap, _ = self(pixels, parts=True)
        return logits, heatmap

    def forward_parts(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """(fused image logits, heatmap logits or None, the classifier's own logits)."""
        return self(pixels, parts=True)

    def _compute_parts(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        x = (pixels - self.pixel_mean) / self.pixel_std
        if self.heatmap_head is None:
            logits = self.backbone(x).reshape(-1)
            return logits, None, logits
        f8, f16, f32, classifier_logit = split_forward(self.backbone, self.family, self.taps, x)
        heatmap = self.heatmap_head(f16, f32, f8)
        return self.fusion(classifier_logit, heatmap), heatmap, classifier_logit


def split_forward(
    backbone: nn.Module, family: str, taps: Taps, x: torch.Tensor
) -> tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backbone's own forward, cut open: (stride-8 features or None, stride-16 features,
    stride-32 features, logit).

    Written per family, mirroring each model's ``forward`` exactly (no hooks: they would not
    survive ``deepcopy`` for the weight average, and tracing for export stays plain).
    """
    lite = family == "efficientnet_lite"
    if lite:
        x = backbone.act(backbone.bn_stem(backbone.conv_stem(x)))
    blocks = backbone.blocks if lite else backbone.features
    f8 = None
    if taps.index8 >= 0:
        f8 = blocks[: taps.index8 + 1](x)
        f16 = blocks[taps.index8 + 1 : taps.index + 1](f8)
    else:
        f16 = blocks[: taps.index + 1](x)
    rest = blocks[taps.index + 1 :](f16)
    if lite:
        f32 = backbone.act(backbone.bn_head(backbone.conv_head(rest)))
        logit = backbone.classifier(backbone.dropout(backbone.flatten(backbone.pool(f32))))
    else:  # torchvision EfficientNet / MobileNetV3: features -> avgpool -> flatten -> classifier
        f32 = rest
        logit = backbone.classifier(torch.flatten(backbone.avgpool(f32), 1))
    return f8, f16, f32, logit.reshape(-1)


def find_taps(backbone: nn.Module, family: str, stride: int = HEATMAP_STRIDE) -> Taps:
    """Locate the last stride-16 (and, for ``stride`` 8, stride-8) block with a dummy forward
    (64x64: stride 16 is 4x4, stride 8 is 8x8)."""
    if stride not in HEATMAP_STRIDES:
        raise ValueError(f"heatmap stride {stride} is not one of {HEATMAP_STRIDES}")
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 64)
        if family == "efficientnet_lite":
            x = backbone.act(backbone.bn_stem(backbone.conv_stem(x)))
            blocks = backbone.blocks
        else:
            blocks = backbone.features
        was_training = backbone.training
        backbone.eval()
        index, channels16, index8, channels8 = -1, 0, -1, 0
        for k, block in enumerate(blocks):
            x = block(x)
            if x.shape[-1] == 64 // 16:
                index, channels16 = k, x.shape[1]
            if x.shape[-1] == 64 // 8:
                index8, channels8 = k, x.shape[1]
        backbone.train(was_training)
        if family == "efficientnet_lite":
            channels32 = backbone.conv_head.out_channels
        else:
            channels32 = x.shape[1]
    if index < 0 or (stride == 8 and index8 < 0):
        raise ValueError(f"no stride-{stride} stage found in the {family} backbone")
    if stride == 16:
        index8, channels8 = -1, 0  # found, but not used
    return Taps(index, int(channels16), int(channels32), index8, int(channels8))


class DeployNet(nn.Module):
    """uint8 N x H x W x 3 -> N x 1 defect probability (what ONNX / OpenVINO files contain);
    heatmap nets add N x 1 x H/s x W/s cell probabilities (s: the heatmap stride) as a second output."""

    def __init__(self, net: InspectionNet):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pixels = images.permute(0, 3, 1, 2).float()
        logits, heatmap = self.net.forward_with_heatmap(pixels)
        probability = torch.sigmoid(logits).unsqueeze(1)
        if heatmap is None:
            return probability
        return probability, torch.sigmoid(heatmap)

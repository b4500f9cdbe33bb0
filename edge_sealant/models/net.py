"""The network as trained and as deployed.

``InspectionNet`` = mean/std normalisation + backbone -> one defect logit. Training feeds it
float NCHW in [0, 255]. With a :class:`HeatmapHead` it also predicts a defect logit per
cell of a stride-16 grid, learnt from the customer's boxes/polygons, and the image logit
fuses the classifier with the heatmap's peak (three learnt scalars).

``DeployNet`` wraps it for export: uint8 NHWC in, defect probability out (plus the heatmap
in [0, 1] for heatmap models), so the factory PC hands over resized frames and never
re-implements normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

HEATMAP_STRIDE = 16
HEATMAP_WIDTH = 64  # channels of the dense head: ~0.1 M parameters, ~2% of Lite0's compute
HEATMAP_PRIOR = 0.01  # initial cell probability: the head starts by saying "clear" everywhere


@dataclass(frozen=True)
class Taps:
    """Where the heatmap reads the backbone: the last stage at stride 16 (index into the
    backbone's block sequence) and the channels there and at the final stride-32 features."""

    index: int
    channels16: int
    channels32: int


class HeatmapHead(nn.Module):
    """Stride-16 features plus upsampled stride-32 features -> one defect logit per cell.

    The stride-32 features carry what the classifier knows (what a defect looks like), the
    stride-16 ones where it is; a 1x1 lateral each (FPN-style), a depthwise 3x3 to look at
    neighbours, a 1x1 to one logit. Light enough to cost a few percent of the backbone.
    """

    def __init__(self, taps: Taps, width: int = HEATMAP_WIDTH):
        super().__init__()
        self.lateral16 = nn.Sequential(nn.Conv2d(taps.channels16, width, 1, bias=False), nn.BatchNorm2d(width))
        self.lateral32 = nn.Sequential(nn.Conv2d(taps.channels32, width, 1, bias=False), nn.BatchNorm2d(width))
        self.mix = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.constant_(self.out.bias, float(torch.logit(torch.tensor(HEATMAP_PRIOR))))

    def forward(self, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        top = F.interpolate(self.lateral32(f32), scale_factor=2.0, mode="nearest")
        if top.shape[-2:] != f16.shape[-2:]:  # odd stride-16 sides only (input not a multiple of 32):
            # stride 32 rounded up. Guarded so that the usual sizes export without the
            # shape-reading ops a slice would add (measured +11% latency in OpenVINO f32).
            top = top[:, :, : f16.shape[2], : f16.shape[3]]
        return self.out(self.mix(F.relu(self.lateral16(f16) + top)))


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

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels``: float N x 3 x H x W in [0, 255]. Returns N defect logits."""
        return self.forward_with_heatmap(pixels)[0]

    def forward_with_heatmap(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(N image logits, N x 1 x H/16 x W/16 heatmap logits or None for image-only nets)."""
        logits, heatmap, _ = self.forward_parts(pixels)
        return logits, heatmap

    def forward_parts(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """(fused image logits, heatmap logits or None, the classifier's own logits)."""
        x = (pixels - self.pixel_mean) / self.pixel_std
        if self.heatmap_head is None:
            logits = self.backbone(x).reshape(-1)
            return logits, None, logits
        f16, f32, classifier_logit = split_forward(self.backbone, self.family, self.taps.index, x)
        heatmap = self.heatmap_head(f16, f32)
        return self.fusion(classifier_logit, heatmap), heatmap, classifier_logit


def split_forward(backbone: nn.Module, family: str, index: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backbone's own forward, cut open: (stride-16 features, stride-32 features, logit).

    Written per family, mirroring each model's ``forward`` exactly (no hooks: they would not
    survive ``deepcopy`` for the weight average, and tracing for export stays plain).
    """
    if family == "efficientnet_lite":
        x = backbone.act(backbone.bn_stem(backbone.conv_stem(x)))
        f16 = backbone.blocks[: index + 1](x)
        rest = backbone.blocks[index + 1 :](f16)
        f32 = backbone.act(backbone.bn_head(backbone.conv_head(rest)))
        logit = backbone.classifier(backbone.dropout(backbone.flatten(backbone.pool(f32))))
    else:  # torchvision EfficientNet / MobileNetV3: features -> avgpool -> flatten -> classifier
        f16 = backbone.features[: index + 1](x)
        f32 = backbone.features[index + 1 :](f16)
        logit = backbone.classifier(torch.flatten(backbone.avgpool(f32), 1))
    return f16, f32, logit.reshape(-1)


def find_taps(backbone: nn.Module, family: str) -> Taps:
    """Locate the last stride-16 block with a dummy forward (64x64: stride 16 is 4x4)."""
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 64)
        if family == "efficientnet_lite":
            x = backbone.act(backbone.bn_stem(backbone.conv_stem(x)))
            blocks = backbone.blocks
        else:
            blocks = backbone.features
        was_training = backbone.training
        backbone.eval()
        index, channels16 = -1, 0
        for k, block in enumerate(blocks):
            x = block(x)
            if x.shape[-1] == 64 // HEATMAP_STRIDE:
                index, channels16 = k, x.shape[1]
        backbone.train(was_training)
        if family == "efficientnet_lite":
            channels32 = backbone.conv_head.out_channels
        else:
            channels32 = x.shape[1]
    if index < 0:
        raise ValueError(f"no stride-{HEATMAP_STRIDE} stage found in the {family} backbone")
    return Taps(index, int(channels16), int(channels32))


class DeployNet(nn.Module):
    """uint8 N x H x W x 3 -> N x 1 defect probability (what ONNX / OpenVINO files contain);
    heatmap nets add N x 1 x H/16 x W/16 cell probabilities as a second output."""

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

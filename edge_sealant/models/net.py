"""The network as trained and as deployed.

``InspectionNet`` = mean/std normalisation + backbone -> one defect logit. Training feeds it
float NCHW in [0, 255]. ``DeployNet`` wraps it for export: uint8 NHWC in, defect probability
out, so the factory PC hands over resized frames and never re-implements normalisation.
"""

from __future__ import annotations

import torch
from torch import nn


class InspectionNet(nn.Module):
    def __init__(self, backbone: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.backbone = backbone
        # Buffers (not constants) so they move with .to(device) and are saved in checkpoints.
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels``: float N x 3 x H x W in [0, 255]. Returns N defect logits."""
        return self.backbone((pixels - self.pixel_mean) / self.pixel_std).reshape(-1)


class DeployNet(nn.Module):
    """uint8 N x H x W x 3 -> N x 1 defect probability (what ONNX / OpenVINO files contain)."""

    def __init__(self, net: InspectionNet):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.permute(0, 3, 1, 2).float()
        return torch.sigmoid(self.net(pixels)).unsqueeze(1)

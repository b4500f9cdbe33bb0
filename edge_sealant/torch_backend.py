"""PyTorch eager inference behind the :class:`~edge_sealant.runtime.backend.Backend` interface.

Runs ``DeployNet`` (the very module that gets exported), so the torch row of an evaluation or
benchmark sees the same uint8 input and in-graph normalisation as ONNX and OpenVINO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_sealant.card import ModelCard
from edge_sealant.models.net import DeployNet, InspectionNet


class TorchBackend:
    name = "torch"
    precision = "fp32"

    def __init__(self, net: InspectionNet, card: ModelCard, device: str = "cpu", batch_size: int = 32):
        self.card = card
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = DeployNet(net).to(self.device).eval()

    @classmethod
    def from_run(cls, run: str | Path, device: str = "cpu") -> TorchBackend:
        from edge_sealant.checkpoint import load_trained

        net, card = load_trained(run)
        return cls(net, card, device=device)

    @torch.inference_mode()
    def predict(self, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size])).to(self.device)
            out.append(self.model(batch).float().cpu().numpy().reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

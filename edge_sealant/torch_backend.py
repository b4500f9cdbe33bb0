"""PyTorch eager inference behind the :class:`~edge_sealant.runtime.protocol.Backend` interface.

Runs ``DeployNet`` (the very module that gets exported), so the torch row of an evaluation or
benchmark sees the same uint8 input and in-graph normalisation as ONNX and OpenVINO.
:func:`predict_in_batches` is the one batched torch inference loop (the backend and export's
parity reference use it).
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edge_sealant.card import ModelCard
from edge_sealant.models.net import DeployNet, InspectionNet
from edge_sealant.runtime.model_file import model_size_mb
from edge_sealant.runtime.protocol import Outputs, split_outputs


def predict_in_batches(
    module: torch.nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device | str = "cpu",
    to_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Outputs of ``module`` for uint8 N x H x W x 3 ``images``, ``batch_size`` at a time.

    Each batch goes to ``device`` as a uint8 NHWC tensor, through ``to_input`` when given
    (e.g. NCHW float for a bare ``InspectionNet``), and comes back as float32, one value per
    image (of a heatmap net's two outputs, the first). No gradients; ``module`` is used in
    whatever mode it is in.
    """
    return infer_in_batches(module, images, batch_size, device, to_input).probability


def infer_in_batches(
    module: torch.nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device | str = "cpu",
    to_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Outputs:
    """:func:`predict_in_batches` keeping a heatmap net's second output (N x rows x columns)."""
    values, heatmaps = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            if to_input is not None:
                batch = to_input(batch)
            output = module(batch)
            if isinstance(output, tuple):  # a heatmap net: (probability, heatmap)
                output, heatmap = output
                heatmaps.append(heatmap.float().cpu().numpy())
            values.append(output.float().cpu().numpy().reshape(-1))
    if not values:
        return Outputs(np.zeros(0, dtype=np.float32))
    return split_outputs([np.concatenate(values)] + ([np.concatenate(heatmaps)] if heatmaps else []))


class TorchBackend:
    """``DeployNet(net)`` in eager torch. ``batch_size`` (images per forward pass) is torch-only."""

    name = "torch"
    precision = "fp32"
    inference_precision = "f32"
    # predict runs on the caller's thread; torch parallelises inside each batch.
    optimal_requests = 1

    def __init__(
        self,
        net: InspectionNet,
        card: ModelCard,
        device: str = "cpu",
        batch_size: int = 32,
        path: str | Path | None = None,
    ):
        self.card = card
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model = DeployNet(net).to(self.device).eval()
        self.path = Path(path) if path is not None else None
        self.size_mb = self._size_mb()

    @classmethod
    def from_run(cls, run: str | Path, device: str = "cpu") -> TorchBackend:
        """The trained ``best.pt`` of a run folder (or a checkpoint file) with its card."""
        from edge_sealant.checkpoint import BEST, load_trained

        net, card = load_trained(run)
        checkpoint = Path(run) / BEST if Path(run).is_dir() else Path(run)
        return cls(net, card, device=device, path=checkpoint)

    def _size_mb(self) -> float:
        if self.path is not None and self.path.is_file():
            return model_size_mb(self.path)
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors) / 1e6

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 -> float32 N probabilities, ``batch_size`` images per pass."""
        return self.infer(images).probability

    def infer(self, images: np.ndarray) -> Outputs:
        """Probabilities and, for a heatmap net, heatmaps."""
        return infer_in_batches(self.model, images, self.batch_size, self.device)

    def submit(self, images: np.ndarray) -> Future:
        """:meth:`infer`, run now; returns its completed future (no asynchronous path)."""
        future: Future = Future()
        try:
            future.set_result(self.infer(images))
        except Exception as exc:  # delivered through the future, like the runtime backends
            future.set_exception(exc)
        return future

    def wait_all(self) -> None:
        """Nothing in flight: :meth:`submit` completes before it returns."""

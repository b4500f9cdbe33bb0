"""The one interface every inference engine implements (torch, ONNX Runtime, OpenVINO).

Evaluation, benchmarking and the runtime are written once against it. A backend takes what
the exported graphs take, uint8 N x H x W x 3 images already resized by
``edge_sealant.preprocess`` and returns one defect probability per image.

The implementations are :class:`~edge_sealant.runtime.backends.OpenVINOBackend`,
:class:`~edge_sealant.runtime.backends.OnnxRuntimeBackend` (torch-free) and
:class:`~edge_sealant.torch_backend.TorchBackend`. Every member below is required; members
that only one engine has stay outside the protocol and only engine-aware code uses them:
``OpenVINOBackend.compiled`` (the ``ov.CompiledModel``, for ``bench``'s own
``AsyncInferQueue``) and ``TorchBackend.batch_size`` (images per forward pass). The thread
count is a constructor argument of each backend, not a member.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from edge_sealant.card import ModelCard


@dataclass
class Outputs:
    """What one inference returns: a probability per image and, for heatmap models, the
    defect heatmaps (N x rows x columns cell probabilities, see ``ModelCard.heatmap_size``)."""

    probability: np.ndarray
    heatmap: Optional[np.ndarray] = None


def split_outputs(outputs: Sequence[Any]) -> Outputs:
    """An engine's output list (probability first, heatmap second when present) as Outputs."""
    probability = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
    heatmap = None
    if len(outputs) > 1:
        heatmap = np.asarray(outputs[1], dtype=np.float32)
        heatmap = heatmap.reshape(heatmap.shape[0], heatmap.shape[-2], heatmap.shape[-1])
    return Outputs(probability, heatmap)


@runtime_checkable
class Backend(Protocol):
    """A loaded model that turns preprocessed images into defect probabilities."""

    name: str
    """Engine: ``"torch"``, ``"onnxruntime"`` or ``"openvino"``."""

    precision: str
    """Precision of the artifact: ``"fp32"``, ``"fp16"`` or ``"int8"`` (from the card)."""

    card: ModelCard
    """How to feed the model (input size, resize mode, channel order) and its threshold."""

    path: Path | None
    """The model file (torch: the checkpoint); None for a model built in memory."""

    inference_precision: str
    """What the engine really computes in: ``"f32"``, ``"bf16"``, ``"f16"`` (OpenVINO: read
    back from the compiled model), ``"int8"`` for an ONNX Runtime INT8 model, ``"f32"`` for torch."""

    size_mb: float
    """Size of the model in MB: on disk with all its files (torch: the weights in memory
    when there is no checkpoint file)."""

    optimal_requests: int
    """How many :meth:`submit` calls the engine can run at once (1 unless OpenVINO says more);
    ``Inspector.stream`` keeps that many in flight."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 -> float32 N defect probabilities (blocking)."""
        ...

    def infer(self, images: np.ndarray) -> Outputs:
        """Like :meth:`predict`, with the heatmaps of a heatmap model (blocking)."""
        ...

    def submit(self, images: np.ndarray) -> Future:
        """Start :meth:`infer` of ``images`` and return at once (or when every request is
        busy); the future holds its :class:`Outputs`. Backends without an asynchronous path
        return an already completed future."""
        ...

    def wait_all(self) -> None:
        """Block until every submitted request has finished."""
        ...

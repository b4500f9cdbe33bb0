"""The one interface every inference engine implements (torch, ONNX Runtime, OpenVINO).

Evaluation, benchmarking and the runtime are written once against it. A backend takes what
the exported graphs take, uint8 N x H x W x 3 images already resized by
``edge_sealant.preprocess`` and returns one defect probability per image.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edge_sealant.card import ModelCard


@runtime_checkable
class Backend(Protocol):
    name: str  # "torch", "onnxruntime" or "openvino"
    precision: str  # "fp32", "fp16", "bf16" or "int8"
    card: ModelCard

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 -> float32 N defect probabilities."""
        ...

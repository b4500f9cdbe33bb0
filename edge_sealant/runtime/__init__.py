"""Torch-free inference for the factory PC: numpy, OpenCV and OpenVINO or ONNX Runtime only.

>>> from edge_sealant.runtime import Inspector
>>> inspector = Inspector.load("model.xml")  # or .onnx; preprocessing comes from the file
>>> inspector.inspect("frame.jpg").is_defect
"""

from edge_sealant.runtime.backend import Backend
from edge_sealant.runtime.backends import (
    OnnxRuntimeBackend,
    OpenVINOBackend,
    open_backend,
    read_card,
    resolve_threshold,
    sidecar_path,
)
from edge_sealant.runtime.inspector import InspectionResult, Inspector

__all__ = [
    "Backend",
    "InspectionResult",
    "Inspector",
    "OnnxRuntimeBackend",
    "OpenVINOBackend",
    "open_backend",
    "read_card",
    "resolve_threshold",
    "sidecar_path",
]

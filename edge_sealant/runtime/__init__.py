"""Torch-free inference for the factory PC: numpy, OpenCV and OpenVINO or ONNX Runtime only.

>>> from edge_sealant.runtime import Inspector
>>> inspector = Inspector.load("model.xml")  # or .onnx; preprocessing comes from the file
>>> inspector.inspect("frame.jpg").is_defect

Modules: ``protocol`` (the :class:`Backend` interface), ``backends`` (OpenVINO and ONNX
Runtime), ``model_file`` (card metadata, threshold sidecar, files and sizes of a model),
``inspector`` (:class:`Inspector`).
"""

from edge_sealant.runtime.backends import OnnxRuntimeBackend, OpenVINOBackend, open_backend
from edge_sealant.runtime.inspector import InspectionResult, Inspector
from edge_sealant.runtime.model_file import read_card, resolve_threshold, sidecar_path
from edge_sealant.runtime.protocol import Backend

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

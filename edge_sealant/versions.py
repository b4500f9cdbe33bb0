"""Versions of the libraries behind a figure, read from package metadata (torch-free).

Run cards, quantization manifests and benchmark headers all record them; one function keeps
the three records comparable and imports nothing heavy to do it.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Iterable

TRAINING = ("torch", "torchvision", "numpy")
QUANTIZATION = ("nncf", "openvino", "onnx", "onnxruntime", "numpy")
BENCHMARK = ("torch", "torchvision", "onnxruntime", "openvino", "nncf", "numpy", "opencv-python-headless", "opencv-python")


def library_versions(packages: Iterable[str]) -> dict[str, str]:
    """``{"edge_sealant": ..., "python": ..., package: version}`` for the installed ``packages``."""
    from edge_sealant import __version__

    versions = {"edge_sealant": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # optional engines may be absent
            continue
    return versions

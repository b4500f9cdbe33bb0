"""Where each artifact of a run lives (torch-free; the layout is documented in the README).

::

    RUN/
      run.json                     model card + training record
      best.pt, last.pt             checkpoints (weights_only-safe)
      training_curves.png
      eval/<split>/                evaluate: metrics.json + PNGs
      folds/oof.csv                --folds: every train+val image's out-of-fold probability
      onnx/fp32/model.onnx         + run.json (card with backend/precision)
      onnx/int8/model.onnx
      openvino/fp32/model.xml|bin  FP32 weights (saved with compress_to_fp16=False)
      openvino/fp16/model.xml|bin
      openvino/int8/model.xml|bin  + calibration.json (which images the INT8 model saw)
      bench/                       bench results
"""

from __future__ import annotations

from pathlib import Path

BACKEND_SUFFIX = {"onnxruntime": ".onnx", "openvino": ".xml"}
BACKEND_FOLDER = {"onnxruntime": "onnx", "openvino": "openvino"}
PRECISIONS = ("fp32", "fp16", "int8")
OOF_SCORES = Path("folds") / "oof.csv"  # relative to the run folder


def artifact_path(run: str | Path, backend: str, precision: str) -> Path:
    """``RUN/onnx/int8/model.onnx``, ``RUN/openvino/fp32/model.xml`` ..."""
    return Path(run) / BACKEND_FOLDER[backend] / precision / f"model{BACKEND_SUFFIX[backend]}"


def existing_artifacts(run: str | Path) -> dict[tuple[str, str], Path]:
    """Every exported or quantized model of a run, keyed by (backend, precision)."""
    found = {}
    for backend in BACKEND_FOLDER:
        for precision in PRECISIONS:
            path = artifact_path(run, backend, precision)
            if path.is_file():
                found[(backend, precision)] = path
    return found

"""OpenVINO and ONNX Runtime behind :class:`~edge_sealant.runtime.protocol.Backend` (torch-free).

Opening a backend reads the model card embedded in the file (see
:mod:`edge_sealant.runtime.model_file`), so a model file alone says how to feed it.
``openvino`` and ``onnxruntime`` are imported when a backend is opened: a factory PC needs
only one of them.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge_sealant.card import ModelCard
from edge_sealant.errors import EdgeSealantError
from edge_sealant.runtime.cpu import read_cpuinfo, saturation_warning
from edge_sealant.runtime.protocol import Outputs, split_outputs
from edge_sealant.runtime.model_file import (
    check_model_path,
    first_error_line,
    import_engine,
    model_size_mb,
    read_onnx_card,
    read_openvino_card,
)

# User-facing names -> OpenVINO element type names for INFERENCE_PRECISION_HINT.
_OV_PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
_OV_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


# ------------------------------------------------------------------------------ OpenVINO
class OpenVINOBackend:
    """OpenVINO Runtime on one device.

    ``precision`` None means f32 for every model (FP32, FP16 and INT8 IRs alike: the ops INT8
    leaves in float then stay f32; some CPUs would otherwise pick bf16). Pass ``"bf16"`` or
    ``"f16"`` to allow lower-precision float execution; ``inference_precision`` holds what the
    plugin actually chose, read back from the compiled model. ``compiled`` (the
    ``ov.CompiledModel``) is OpenVINO-only, outside the :class:`Backend` protocol.
    """

    name = "openvino"

    def __init__(
        self,
        path: str | Path,
        card: ModelCard | None = None,
        device: str = "CPU",
        hint: str = "LATENCY",
        precision: str | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ):
        ov = import_engine("openvino")
        self.path = check_model_path(path)
        hint = str(hint).upper()
        if hint not in _OV_HINTS:
            raise EdgeSealantError(f"performance hint {hint!r} is not one of {', '.join(_OV_HINTS)}")
        want = _OV_PRECISIONS.get(str(precision or "f32").lower())
        if want is None:
            raise EdgeSealantError(f"inference precision {precision!r} is not one of f32, bf16, f16")
        self.core = ov.Core()
        try:
            model = self.core.read_model(str(self.path))
        except RuntimeError as exc:
            raise EdgeSealantError(f"{self.path}: cannot read OpenVINO IR ({first_error_line(exc)})") from None
        self.card = card or read_openvino_card(model, str(self.path))
        self.precision = self.card.precision
        self.device = device
        self._warn_if_int8_may_saturate()
        self.hint = hint
        self.model_input = model.inputs[0]
        config = _compile_config(device, hint, want, threads, cache_dir)
        try:
            self.compiled = self.core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise EdgeSealantError(f"{self.path}: cannot compile for {device} ({first_error_line(exc)})") from None
        self.inference_precision = self._compiled_precision(default=want)
        self.optimal_requests = self._compiled_requests()
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()
        self._queue = None
        self.size_mb = model_size_mb(self.path)

    def _warn_if_int8_may_saturate(self) -> None:
        """A RuntimeWarning when full-range INT8 weights meet a CPU without VNNI (see runtime.cpu)."""
        if self.precision != "int8" or "CPU" not in str(self.device).upper():
            return
        overflow_fix = ((self.card.metrics or {}).get("quantization") or {}).get("overflow_fix")
        message = saturation_warning(overflow_fix, read_cpuinfo()[1])
        if message:
            warnings.warn(f"{self.path}: {message}", RuntimeWarning, stacklevel=3)

    def _compiled_precision(self, default: str) -> str:
        """The float precision the plugin chose (devices without the property: what we asked)."""
        try:
            return self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except (RuntimeError, AttributeError):
            return default

    def _compiled_requests(self) -> int:
        try:
            return max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except RuntimeError:
            return 1

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 -> float32 N probabilities (one infer request, serialised)."""
        return self.infer(images).probability

    def infer(self, images: np.ndarray) -> Outputs:
        """Probabilities and, for a heatmap model, heatmaps (one infer request, serialised)."""
        images = _check_batch(images, self.card)
        if len(images) == 0:
            return _no_outputs(self.card)
        with self._lock:
            result = self._request.infer({0: images})
            return split_outputs([np.array(result[k]) for k in range(len(self.compiled.outputs))])

    def submit(self, images: np.ndarray) -> Future:
        """Asynchronous :meth:`infer`: a future completed by an ``AsyncInferQueue`` callback."""
        ov = import_engine("openvino")
        images = _check_batch(images, self.card)
        if self._queue is None:
            self._queue = ov.AsyncInferQueue(self.compiled, max(2, self.optimal_requests))
            self._queue.set_callback(_complete_future)
        future: Future = Future()
        future.set_running_or_notify_cancel()
        self._queue.start_async({0: images}, future)  # blocks while every request is busy
        return future

    def wait_all(self) -> None:
        """Block until every :meth:`submit` has finished."""
        if self._queue is not None:
            self._queue.wait_all()


def _compile_config(device: str, hint: str, precision: str, threads: int | None, cache_dir: str | Path | None) -> dict[str, Any]:
    """The ``compile_model`` properties for our options."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    if device.upper().startswith(("CPU", "GPU")):  # other devices reject the property
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(cache_dir)
    return config


def _complete_future(request: Any, future: Future) -> None:
    try:
        count = len(request.model_outputs)
        future.set_result(split_outputs([np.array(request.get_output_tensor(k).data) for k in range(count)]))
    except Exception as exc:  # never let an exception die inside the OpenVINO thread
        future.set_exception(exc)


# --------------------------------------------------------------------------- ONNX Runtime
class OnnxRuntimeBackend:
    """ONNX Runtime, CPU execution provider, all graph optimisations."""

    name = "onnxruntime"
    # One session run at a time: intra-op threads already use the cores.
    optimal_requests = 1

    def __init__(self, path: str | Path, card: ModelCard | None = None, threads: int | None = None):
        ort = import_engine("onnxruntime")
        self.path = check_model_path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EdgeSealantError(f"{self.path}: cannot load ONNX model ({first_error_line(exc)})") from None
        self.card = card or read_onnx_card(self.session, str(self.path))
        self.precision = self.card.precision
        self.inference_precision = "f32" if self.precision != "int8" else "int8"
        self.input_name = self.session.get_inputs()[0].name
        self.size_mb = model_size_mb(self.path)
        self._pool: ThreadPoolExecutor | None = None

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x 3 -> float32 N probabilities."""
        return self.infer(images).probability

    def infer(self, images: np.ndarray) -> Outputs:
        """Probabilities and, for a heatmap model, heatmaps."""
        images = _check_batch(images, self.card)
        if len(images) == 0:
            return _no_outputs(self.card)
        return split_outputs(self.session.run(None, {self.input_name: images}))

    def submit(self, images: np.ndarray) -> Future:
        """:meth:`infer` in one worker thread: overlaps inference with the caller's decoding."""
        # session.run releases the GIL, so the worker really runs alongside the decoders.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ort")
        return self._pool.submit(self.infer, images)

    def wait_all(self) -> None:
        """Nothing to wait for: each future of :meth:`submit` completes on its own."""


def _no_outputs(card: ModelCard) -> Outputs:
    """The outputs of an empty batch, shaped like a real one."""
    heatmap = np.zeros((0, *card.heatmap_size), dtype=np.float32) if card.has_heatmap else None
    return Outputs(np.zeros(0, dtype=np.float32), heatmap)


def _check_batch(images: np.ndarray, card: ModelCard) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (card.height, card.width, 3):
        raise EdgeSealantError(
            f"model input must be uint8 N x {card.height} x {card.width} x 3, got {images.dtype} {images.shape}"
        )
    return np.ascontiguousarray(images)


# -------------------------------------------------------------------------------- factory
def open_backend(
    path: str | Path,
    device: str = "CPU",
    hint: str = "LATENCY",
    precision: str | None = None,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> OpenVINOBackend | OnnxRuntimeBackend:
    """Open ``.xml`` with OpenVINO, ``.onnx`` with ONNX Runtime (CPU)."""
    path = check_model_path(path)
    if path.suffix.lower() == ".onnx":
        if device.upper() != "CPU":
            raise EdgeSealantError(f"{path}: ONNX models run on CPU only here; convert to OpenVINO for {device}")
        if precision is not None and str(precision).lower() not in ("f32", "fp32"):
            raise EdgeSealantError(f"{path}: inference precision {precision!r} needs an OpenVINO model (.xml)")
        return OnnxRuntimeBackend(path, threads=threads)
    return OpenVINOBackend(path, device=device, hint=hint, precision=precision, cache_dir=cache_dir, threads=threads)

"""OpenVINO and ONNX Runtime behind :class:`~edge_sealant.runtime.backend.Backend` (torch-free).

Both read the model card embedded in the file (ONNX ``metadata_props``, OpenVINO ``rt_info``
under ``edge_sealant/<key>``), so a model file alone says how to feed it. ``openvino`` and
``onnxruntime`` are imported when a backend is opened: a factory PC needs only one of them.

Threshold precedence (see :func:`resolve_threshold`): an explicit override, else the sidecar
``model.threshold.json`` next to the model, else the value embedded at export.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge_sealant.card import METADATA_KEY, ModelCard, check_threshold
from edge_sealant.errors import EdgeSealantError

RT_INFO_ROOT = "edge_sealant"
SIDECAR_SUFFIX = ".threshold.json"
MODEL_SUFFIXES = (".xml", ".onnx")
# User-facing names -> OpenVINO element type names for INFERENCE_PRECISION_HINT.
_OV_PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
_OV_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


# ------------------------------------------------------------------------ metadata helpers
def rt_info_key(metadata_key: str) -> list[str]:
    """``"edge_sealant.card"`` -> ``["edge_sealant", "card"]`` (the rt_info path)."""
    prefix = RT_INFO_ROOT + "."
    short = metadata_key[len(prefix) :] if metadata_key.startswith(prefix) else metadata_key
    return [RT_INFO_ROOT, short]


def sidecar_path(model_path: str | Path) -> Path:
    """``.../model.xml`` -> ``.../model.threshold.json`` (wins over the embedded threshold)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + SIDECAR_SUFFIX)


def read_sidecar(model_path: str | Path) -> float | None:
    """The threshold of the sidecar file, or None when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        value = data["threshold"] if isinstance(data, dict) else data
    except (OSError, ValueError, KeyError) as exc:
        raise EdgeSealantError(f"{path}: not a threshold sidecar ({type(exc).__name__}: {exc}); expected {{\"threshold\": 0.5}}") from None
    try:
        return check_threshold(value)
    except EdgeSealantError as exc:
        raise EdgeSealantError(f"{path}: {exc}") from None


def resolve_threshold(model_path: str | Path, card: ModelCard, override: float | None = None) -> tuple[float, str]:
    """(threshold, source) with source ``override``, ``sidecar`` or ``embedded``."""
    if override is not None:
        try:
            return check_threshold(override), "override"
        except EdgeSealantError as exc:
            raise EdgeSealantError(f"{model_path}: {exc}") from None
    sidecar = read_sidecar(model_path)
    if sidecar is not None:
        return sidecar, "sidecar"
    return check_threshold(card.threshold), "embedded"


def model_files(path: str | Path) -> list[Path]:
    """The files a model consists of: ``.xml`` + ``.bin``, or the ``.onnx`` and its external data."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return [path, path.with_suffix(".bin")]
    if path.suffix.lower() == ".onnx" and path.parent.is_dir():
        return [path, *path.parent.glob(path.name + ".data"), *path.parent.glob("*.onnx_data")]
    return [path]


def model_size_mb(path: str | Path) -> float:
    """Size on disk of a model, all its files counted (the figure in bench tables and reports)."""
    return sum(p.stat().st_size for p in model_files(path) if p.is_file()) / 1e6


def check_model_path(path: str | Path) -> Path:
    """Raise a one-line error for a missing file, an unknown type or a missing/short ``.bin``."""
    path = Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise EdgeSealantError(f"{path}: unknown model file type {path.suffix or '(none)'!r}; expected .xml (OpenVINO IR) or .onnx")
    if not path.is_file():
        raise EdgeSealantError(f"{path}: model file not found")
    if path.suffix.lower() == ".xml":
        bin_path = path.with_suffix(".bin")
        if not bin_path.is_file():
            raise EdgeSealantError(f"{path}: weights file {bin_path.name} is missing (an IR is an .xml + .bin pair)")
        need = _ir_weights_end(path)
        have = bin_path.stat().st_size
        if need > have:
            raise EdgeSealantError(f"{bin_path}: truncated ({have} bytes, the .xml needs {need}); copy the model again")
    return path


def _ir_weights_end(xml_path: Path) -> int:
    """Largest ``offset + size`` of the constants in an IR: what the ``.bin`` must hold."""
    end = 0
    for match in re.finditer(rb'offset="(\d+)"\s+size="(\d+)"', xml_path.read_bytes()):
        end = max(end, int(match.group(1)) + int(match.group(2)))
    return end


def _require(module: str) -> Any:
    """Import an inference engine, or say in one line how to install it."""
    try:
        return __import__(module)
    except ImportError:
        package = {"openvino": "openvino", "onnxruntime": "onnxruntime"}[module]
        raise EdgeSealantError(f"{module} is not installed (pip install {package})") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # OpenVINO messages start with "Exception from src/...:" lines; the cause is further down.
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[0]


# ------------------------------------------------------------------------------ OpenVINO
def read_openvino_card(model: Any, source: str) -> ModelCard:
    """The card embedded in an ``ov.Model``'s ``rt_info``."""
    path = rt_info_key(METADATA_KEY)
    if not model.has_rt_info(path):
        return ModelCard.from_metadata({}, source=source)  # raises the standard message
    value = model.get_rt_info(path)
    text = value.astype(str) if hasattr(value, "astype") else str(value)
    return ModelCard.from_metadata({METADATA_KEY: text}, source=source)


def set_openvino_metadata(model: Any, card: ModelCard) -> None:
    """Embed ``card.to_metadata()`` in ``model``'s ``rt_info`` (``edge_sealant/<key>``)."""
    for key, value in card.to_metadata().items():
        model.set_rt_info(str(value), rt_info_key(key))


class OpenVINOBackend:
    """OpenVINO Runtime on one device.

    ``precision`` None means f32 for every model (FP32, FP16 and INT8 IRs alike: the ops INT8
    leaves in float then stay f32; some CPUs would otherwise pick bf16). Pass ``"bf16"`` or
    ``"f16"`` to allow lower-precision float execution; ``inference_precision`` holds what the
    plugin actually chose, read back from the compiled model.
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
        ov = _require("openvino")
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
            raise EdgeSealantError(f"{self.path}: cannot read OpenVINO IR ({_first_line(exc)})") from None
        self.card = card or read_openvino_card(model, str(self.path))
        self.precision = self.card.precision
        self.device = device
        self.hint = hint
        self.model_input = model.inputs[0]
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if device.upper().startswith(("CPU", "GPU")):
            config["INFERENCE_PRECISION_HINT"] = want
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        try:
            self.compiled = self.core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise EdgeSealantError(f"{self.path}: cannot compile for {device} ({_first_line(exc)})") from None
        try:
            self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except (RuntimeError, AttributeError):  # devices without the property
            self.inference_precision = want
        try:
            self.optimal_requests = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except RuntimeError:
            self.optimal_requests = 1
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()
        self._queue = None
        self.size_mb = model_size_mb(self.path)

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = _check_batch(images, self.card)
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            result = self._request.infer({0: images})
            return np.array(result[0], dtype=np.float32).reshape(-1)

    # async path for Inspector.stream: futures completed by AsyncInferQueue callbacks
    def submit(self, images: np.ndarray) -> Future:
        ov = _require("openvino")
        images = _check_batch(images, self.card)
        if self._queue is None:
            self._queue = ov.AsyncInferQueue(self.compiled, max(2, self.optimal_requests))
            self._queue.set_callback(_complete_future)
        future: Future = Future()
        future.set_running_or_notify_cancel()
        self._queue.start_async({0: images}, future)  # blocks while every request is busy
        return future

    def wait_all(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()


def _complete_future(request: Any, future: Future) -> None:
    try:
        future.set_result(np.array(request.get_output_tensor(0).data, dtype=np.float32).reshape(-1))
    except Exception as exc:  # never let an exception die inside the OpenVINO thread
        future.set_exception(exc)


# --------------------------------------------------------------------------- ONNX Runtime
class OnnxRuntimeBackend:
    """ONNX Runtime, CPU execution provider, all graph optimisations."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, card: ModelCard | None = None, threads: int | None = None):
        ort = _require("onnxruntime")
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
            raise EdgeSealantError(f"{self.path}: cannot load ONNX model ({_first_line(exc)})") from None
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.card = card or ModelCard.from_metadata(metadata, source=str(self.path))
        self.precision = self.card.precision
        self.inference_precision = "f32" if self.precision != "int8" else "int8"
        self.input_name = self.session.get_inputs()[0].name
        self.size_mb = model_size_mb(self.path)
        self._pool: ThreadPoolExecutor | None = None

    def predict(self, images: np.ndarray) -> np.ndarray:
        images = _check_batch(images, self.card)
        if len(images) == 0:
            return np.zeros(0, dtype=np.float32)
        (out,) = self.session.run(None, {self.input_name: images})
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def submit(self, images: np.ndarray) -> Future:
        # session.run releases the GIL: one worker overlaps inference with decoding.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ort")
        return self._pool.submit(self.predict, images)

    def wait_all(self) -> None:
        pass


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
def read_card(path: str | Path) -> ModelCard:
    """The card embedded in a model file, without compiling it."""
    path = check_model_path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxRuntimeBackend(path).card
    ov = _require("openvino")
    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as exc:
        raise EdgeSealantError(f"{path}: cannot read OpenVINO IR ({_first_line(exc)})") from None
    return read_openvino_card(model, str(path))


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

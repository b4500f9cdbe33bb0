"""The quantization engines: NNCF (OpenVINO, optionally with accuracy control) and ONNX Runtime.

Every heavy library (nncf, openvino, onnx, onnxruntime, sklearn) is imported inside the
function that needs it, so importing this module is cheap.

Why ONNX models go through ONNX Runtime's ``quantize_static`` and not NNCF's ONNX backend:
NNCF's QDQ graph is laid out for OpenVINO (quantizers on op inputs only), ONNX Runtime cannot
fuse it into integer kernels and ran it 2.9x slower than the FP32 model on the target CPU,
while the ``quantize_static`` model runs QLinearConv kernels (``calibration/README.md``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edge_sealant.errors import EdgeSealantError
from edge_sealant.quantize.graph import float_weighted_ops, onnx_input_name

# NNCF accuracy-control log lines worth keeping in the manifest.
_ACCURACY_LOG = re.compile(r"drop|revert|metric|Algorithm completed|could not", re.I)


# ------------------------------------------------------------------------------ NNCF calls
def nncf_arguments(recipe: dict[str, Any], subset_size: int, ignored: list[str]) -> dict[str, Any]:
    """Keyword arguments of ``nncf.quantize`` for ``recipe``; ``"advanced"`` holds the advanced parameters."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    arguments: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(recipe["preset"]),
        "target_device": nncf.TargetDevice[str(recipe["target_device"]).upper()],
        # PITFALL: subset_size above the number of calibration images makes NNCF use fewer
        # images than asked without saying so; pass the real count.
        "subset_size": int(subset_size),
        "fast_bias_correction": bool(recipe["fast_bias_correction"]),
        "model_type": nncf.ModelType(recipe["model_type"]) if recipe.get("model_type") else None,
        "ignored_scope": nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
    }
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix(recipe["overflow_fix"]))
    return arguments | {"advanced": advanced}


def _feed(model: Any) -> Callable[[np.ndarray], Any]:
    """transform_fn body: one uint8 image -> what NNCF infers the model with (batch of 1).

    OpenVINO takes the array; NNCF's ONNX engine wants ``{input name: array}``.
    """
    if hasattr(model, "graph"):  # onnx.ModelProto
        name = onnx_input_name(model)
        return lambda image: {name: image[None]}
    return lambda image: image[None]


def calibration_dataset(images: np.ndarray, model: Any) -> Any:
    """``nncf.Dataset`` of the calibration images, fed the way ``model`` (ov.Model or ONNX) takes them."""
    import nncf

    # Items are single images; labels never reach NNCF.
    return nncf.Dataset(list(images), _feed(model))


@contextlib.contextmanager
def capture_nncf_log() -> Iterator[list[str]]:
    """Collect the messages NNCF logs (INFO and up) while the block runs."""
    from nncf.common.logging import nncf_logger

    messages: list[str] = []

    class _Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collector(level=logging.INFO)
    nncf_logger.addHandler(handler)
    try:
        yield messages
    finally:
        nncf_logger.removeHandler(handler)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what NNCF / ONNX Runtime print (progress bars, INFO lines) to stderr.

    For ``--json``, whose stdout must hold the JSON alone. NNCF's log handler keeps the
    ``sys.stdout`` of import time, so its stream is swapped too.
    """
    import sys

    handlers = []
    try:
        from nncf.common.logging import nncf_logger

        handlers = [h for h in nncf_logger.handlers if isinstance(h, logging.StreamHandler) and h.stream is sys.stdout]
    except Exception:  # nncf missing: nothing to swap
        pass
    previous = [(handler, handler.setStream(sys.stderr)) for handler in handlers]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in previous:
            handler.setStream(stream)


def parse_reverted(messages: Sequence[str]) -> list[str]:
    """Operation names NNCF's accuracy control reverted to float, from its log.

    The final summary ("N out of M were reverted back to the floating-point precision:")
    lists them all, one tab-indented name per line; when it is missing (an interrupted run,
    another NNCF version), the per-step messages ("Reverted N operations to the
    floating-point precision:") are merged.
    """

    def names(message: str) -> list[str]:
        return [line.strip() for line in message.splitlines()[1:] if line.strip()]

    final = [m for m in messages if "reverted back to the floating-point precision" in m]
    if final:
        return names(final[-1])
    merged: list[str] = []
    for message in messages:
        if re.match(r"\s*Reverted \d+ operations? to the floating-point precision", message):
            merged.extend(name for name in names(message) if name not in merged)
    return merged


def quantize_openvino_model(model: Any, images: np.ndarray, recipe: dict[str, Any], ignored: list[str]) -> Any:
    """``nncf.quantize`` of ``model`` on ``images`` with ``recipe``; ops named in ``ignored`` stay float.

    ``model`` is an ``ov.Model``; an ``onnx.ModelProto`` works too (NNCF's ONNX backend, which
    ``calibration/compare.py`` measures).
    """
    import nncf

    args = nncf_arguments(recipe, len(images), ignored)
    advanced = args.pop("advanced")
    return nncf.quantize(model, calibration_dataset(images, model), advanced_parameters=advanced, **args)


# ----------------------------------------------------------------------- accuracy control
def auroc_validation_fn(backend: str) -> Callable[[Any, Any], float]:
    """``validation_fn(model, items) -> val AUROC`` for ``nncf.quantize_with_accuracy_control``.

    ``model`` is what NNCF hands over: an ``ov.CompiledModel`` (OpenVINO, compiled with f32
    inference precision by NNCF) or an ``onnx.ModelProto`` (ONNX; run here with ONNX Runtime).
    Items are ``(image, label)``. With one class only it raises: NNCF probes the function on a
    single item to learn whether it returns per-item metrics, and a per-image AUROC does not
    exist, so NNCF then ranks layers by how far their outputs move instead.
    """
    from sklearn.metrics import roc_auc_score

    def validate(model: Any, items: Any) -> float:
        images, labels = [], []
        for image, label in items:
            images.append(image)
            labels.append(int(label))
        if len(set(labels)) < 2:
            raise ValueError("AUROC needs both normal and defect images")
        predict = _ov_predictor(model) if backend == "openvino" else _onnx_predictor(model)
        scores = np.concatenate([predict(image[None]) for image in images])
        return float(roc_auc_score(labels, scores))

    return validate


def _ov_predictor(compiled: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda batch: np.asarray(compiled(batch)[0], dtype=np.float64).reshape(-1)


def _onnx_predictor(proto: Any) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: np.asarray(session.run(None, {name: batch})[0], dtype=np.float64).reshape(-1)


def quantize_with_accuracy_control(
    model: Any,
    images: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    recipe: dict[str, Any],
    ignored: list[str],
    max_drop: float,
    backend: str,
    scratch: Path,
) -> tuple[Any, dict[str, Any]]:
    """``nncf.quantize_with_accuracy_control`` with val AUROC, absolute drop.

    Returns the model and a record: the NNCF log lines about reverted operations and, for
    OpenVINO, the weighted ops that are float in the result but INT8 after plain quantization
    (compared on the intermediate model NNCF saves).
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if len(set(int(v) for v in val_labels)) < 2:
        raise EdgeSealantError("--max-drop needs both normal and defect images in the val split (AUROC)")
    args = nncf_arguments(recipe, len(images), ignored)
    advanced = args.pop("advanced")
    feed = _feed(model)
    validation = nncf.Dataset(list(zip(val_images, val_labels)), lambda item: feed(item[0]))  # labels stay out of the model
    restorer = AdvancedAccuracyRestorerParameters(
        intermediate_model_dir=str(scratch),
        ranking_subset_size=min(len(val_images), int(args["subset_size"])),
    )
    with capture_nncf_log() as messages:
        result = nncf.quantize_with_accuracy_control(
            model,
            calibration_dataset(images, model),
            validation,
            auroc_validation_fn(backend),
            max_drop=float(max_drop),
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=advanced,
            advanced_accuracy_restorer_parameters=restorer,
            **args,
        )
    return result, _accuracy_control_record(result, messages, max_drop, backend, scratch)


def _accuracy_control_record(result: Any, messages: list[str], max_drop: float, backend: str, scratch: Path) -> dict[str, Any]:
    """What accuracy control did, for the manifest: reverted ops, the log, the ops kept in float."""
    record: dict[str, Any] = {
        "metric": "val AUROC",
        "max_drop": float(max_drop),
        "drop_type": "absolute",
        "reverted_operations": parse_reverted(messages),
        "log": [m for m in messages if _ACCURACY_LOG.search(m)],
    }
    intermediate = scratch / "intermediate_model.xml"
    if backend == "openvino" and intermediate.is_file():
        import openvino as ov

        # The intermediate model is the plain-quantized one: what is float now but not there
        # is what accuracy control restored.
        plain = set(float_weighted_ops(ov.Core().read_model(str(intermediate))))
        record["kept_in_float"] = sorted(set(float_weighted_ops(result)) - plain)
    else:
        record["kept_in_float"] = sorted(record["reverted_operations"])
    return record


# ------------------------------------------------------------------------- ONNX Runtime
def quantize_onnx_model(source: Path, images: np.ndarray, recipe: dict[str, Any], ignored: list[str], scratch: Path) -> Any:
    """ONNX Runtime static quantization: QDQ, per-channel s8 weights, u8 activations.

    Why not NNCF's ONNX backend: NNCF places quantizers OpenVINO-style, on op inputs only, so
    ONNX Runtime's QDQ fusion never sees DequantizeLinear -> Conv -> QuantizeLinear; it runs
    float convolutions between extra Q/DQ ops, measured 2.9x slower than the FP32 model
    (calibration/README.md). ``quantize_static`` quantizes conv outputs too, and ORT turns
    them into QLinearConv integer kernels. u8 activations + s8 weights (U8S8) is ORT's fast
    format on x86; S8S8 is not.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    method = _ort_calibration_method(recipe["onnx_calibrate_method"])
    proto = onnx.load(str(source))
    prepared = _ort_pre_process(source, scratch / "prepared.onnx")
    out = scratch / "quantized.onnx"
    quantize_static(
        str(prepared),
        str(out),
        _ort_calibration_reader(images, onnx_input_name(proto)),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=bool(recipe["onnx_reduce_range"]),
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(ignored),
        calibrate_method=method,
    )
    return onnx.load(str(out))


def _ort_calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    # PITFALL: Percentile/Entropy calibration keep every activation of every calibration
    # image in memory (19.6 GB and an OOM kill for Lite0 at 224x224 x 300 images); MinMax
    # keeps running extremes only.
    methods = {"minmax": CalibrationMethod.MinMax}
    if name not in methods:
        raise EdgeSealantError(f"ONNX calibration method {name!r} is not supported (minmax)")
    return methods[name]


def _ort_pre_process(source: Path, prepared: Path) -> Path:
    """Shape inference + BatchNorm/constant folding, as ORT's quantization guide asks."""
    from onnxruntime.quantization import quant_pre_process

    # Symbolic shape inference is skipped (the graph has static shapes but a dynamic batch).
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation: quantize the export as it is
        shutil.copy2(source, prepared)
    return prepared


def _ort_calibration_reader(images: np.ndarray, input_name: str) -> Any:
    """ORT ``CalibrationDataReader`` over ``images``, one image (batch of 1) per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._items, None)
            return None if image is None else {input_name: image[None]}

    return Reader()


# ------------------------------------------------------------------------------ dispatch
def quantize_model(
    model: Any,
    source: Path,
    images: np.ndarray,
    recipe: dict[str, Any],
    ignored: list[str],
    backend: str,
    scratch: Path,
    accuracy_control: tuple[float, Any] | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """Quantize with the engine for ``backend``: (INT8 model, accuracy-control record or None).

    ``accuracy_control``: ``(max_drop, val)`` with ``val`` a :class:`~edge_sealant.imageset.LoadedImages`
    switches the OpenVINO route to ``nncf.quantize_with_accuracy_control``.
    """
    if accuracy_control is not None:
        max_drop, val = accuracy_control
        return quantize_with_accuracy_control(
            model, images, val.images, val.labels, recipe, ignored, float(max_drop), backend, scratch
        )
    if backend == "openvino":
        return quantize_openvino_model(model, images, recipe, ignored), None
    return quantize_onnx_model(source, images, recipe, ignored, scratch), None

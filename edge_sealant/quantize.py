"""Post-training INT8 quantization of an exported run, with a record of what it saw.

``quantize_run(RUN, DATA)`` takes ``RUN/openvino/fp32/model.xml`` (or, with
``backend="onnx"``, ``RUN/onnx/fp32/model.onnx``; exported first when missing), calibrates it
on images drawn stratified by label from one split of DATA with the exact evaluation
preprocessing (:func:`edge_sealant.imageset.load_images`), and writes::

    RUN/openvino/int8/model.xml|bin     INT8 IR (card embedded: precision int8, backend openvino)
    RUN/openvino/int8/run.json          the same card; metrics = INT8 val/test + FP32-vs-INT8
    RUN/openvino/int8/calibration.json  manifest: files + sha1, counts per label, settings, versions
    RUN/openvino/int8/quantize_report.json   FP32 vs INT8 AUROC / accuracy on val and test

(``RUN/onnx/int8/...`` likewise). Every folder is staged and swapped in by renames
(:func:`edge_sealant.export.save_openvino_ir`), so a crash never leaves half a model.

Engines: OpenVINO models go through ``nncf.quantize`` (or ``nncf.quantize_with_accuracy_control``
with ``max_drop``). ONNX models go through ONNX Runtime's ``quantize_static`` (QDQ,
per-channel s8 weights, u8 activations), not NNCF's ONNX backend: NNCF's QDQ graph is laid
out for OpenVINO (quantizers on op inputs only), ONNX Runtime cannot fuse it into integer
kernels and ran it 2.9x slower than the FP32 model on the target CPU, while the
``quantize_static`` model runs QLinearConv kernels. NNCF's ONNX model was more accurate
(bias correction), which is why the OpenVINO route is the recommended INT8 deployment;
measurements in ``calibration/README.md`` (``calibration/compare.py`` reproduces them).

Settings come from the recipe of the model's family (``RECIPES``; documented, with the reason
for every value, in ``calibration/recipes.yaml``; a test keeps the two equal).

Known pitfalls, each handled where it bites (search for "PITFALL"):

* calibrating with training augmentation: ranges then cover pixels the deployed model never
  sees; we use ``load_images`` (decode + resize as in evaluation, nothing random);
* ``subset_size`` larger than the calibration set: NNCF would silently use fewer images than
  the manifest claims; we pass the real count;
* the CPU plugin's bf16 default on AMX/AVX512-bf16 CPUs: an FP32 model evaluated without
  ``INFERENCE_PRECISION_HINT=f32`` is really a bf16 model, and the "FP32 vs INT8" drop is then
  wrong; every evaluation here runs f32 (``open_backend`` default);
* quantizing an already quantized model (FakeQuantize / QuantizeLinear present): refused;
* the 1-output head before the sigmoid: kept in float when the recipe says so (it costs one
  dot product of 1280 values and removes the last rounding before the decision threshold);
* calibrating on the test split: allowed but warned, test is for reporting.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edge_sealant.artifacts import artifact_path
from edge_sealant.card import ModelCard
from edge_sealant.data.types import DEFECT, NORMAL, Sample
from edge_sealant.errors import EdgeSealantError
from edge_sealant.versions import QUANTIZATION, library_versions

BACKENDS = {"openvino": "openvino", "ov": "openvino", "onnx": "onnxruntime", "onnxruntime": "onnxruntime"}
MIN_CALIBRATION_IMAGES = 300  # NNCF's default subset; fewer gives noisier activation ranges
MANIFEST = "calibration.json"
REPORT = "quantize_report.json"
MANIFEST_FORMAT = "edge-sealant calibration manifest v1"
REPORT_SPLITS = ("val", "test")
# Ops whose inputs NNCF quantizes in a CNN; a model that already has these is quantized.
OV_QUANTIZED_OPS = frozenset({"FakeQuantize", "FakeConvert"})
ONNX_QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "ConvInteger",
        "MatMulInteger",
        "QLinearAdd",
        "QLinearMul",
        "QLinearGlobalAveragePool",
        "QLinearSigmoid",
    }
)
_LOW_BIT_TYPES = frozenset({"i8", "u8", "i4", "u4", "nf4", "f8e4m3", "f8e5m2"})
_WEIGHTED_OV_OPS = frozenset({"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData"})
_WEIGHT_PATH_OPS = frozenset({"Convert", "Multiply", "Subtract", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "FakeQuantize"})

# --------------------------------------------------------------------------------- recipes
# Mirror of calibration/recipes.yaml (which carries the reasons and the measurements); a
# test asserts they are equal. Keys: preset (performance = symmetric weights and
# activations, the fast CPU kernels), model_type (None for CNNs; "transformer" only for
# attention nets), fast_bias_correction (False = full BiasCorrection: half the remaining
# AUROC drop on Lite0, ~4x the time; pinned for MobileNetV3, which is known to lose much
# with the fast one), float_head (keep the 1-output classifier in float),
# target_device, overflow_fix ("enable": half-range weights in every conv/matmul, because
# AVX2/AVX-512 CPUs without VNNI saturate u8*s8 sums; NNCF's default fixes the first layer
# only, which lost 0.08 AUROC on such a CPU), onnx_* (the ONNX Runtime route).
DEFAULT_RECIPE: dict[str, Any] = {
    "preset": "performance",
    "model_type": None,
    "fast_bias_correction": False,
    "float_head": True,
    "target_device": "CPU",
    "overflow_fix": "enable",
    "onnx_calibrate_method": "minmax",
    "onnx_reduce_range": False,
}
RECIPES: dict[str, dict[str, Any]] = {
    "efficientnet_lite": {},
    "efficientnet": {},
    "mobilenet_v3": {"fast_bias_correction": False},
}


def model_family(model: str) -> str:
    """Registry family of ``model`` (``mobilenet_v3_large`` -> ``mobilenet_v3``)."""
    try:
        from edge_sealant.models.registry import get_spec

        return get_spec(model).family
    except EdgeSealantError:
        raise
    except Exception:  # registry unavailable (torch-free install): name prefix
        for family in sorted(RECIPES, key=len, reverse=True):
            if model.startswith(family):
                return family
        return model


def recipe_for(model: str) -> dict[str, Any]:
    """The calibration settings of ``model``'s family (defaults for unknown families)."""
    family = model_family(model)
    recipe = dict(DEFAULT_RECIPE)
    recipe.update(RECIPES.get(family, {}))
    recipe["family"] = family
    return recipe


def load_recipe_file(path: str | Path) -> dict[str, Any]:
    """Parse ``calibration/recipes.yaml`` into ``{"default": {...}, "families": {name: {...}}}``.

    ``reason``/``measured`` fields are documentation and are dropped here.
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text())

    def settings(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (entry or {}).items() if k not in ("reason", "measured", "notes")}

    return {
        "default": settings(data.get("default", {})),
        "families": {name: settings(entry) for name, entry in (data.get("families") or {}).items()},
    }


# ------------------------------------------------------------------------ calibration set
def stratified_sample(samples: Sequence[Sample], count: int, seed: int = 0) -> list[Sample]:
    """``count`` samples drawn without replacement, label proportions kept (largest remainder).

    Every label present keeps at least one image when ``count`` allows, so a rare defect
    class still shapes the activation ranges. The order is the dataset's order (stable
    manifests); the same seed gives the same selection.
    """
    samples = list(samples)
    count = min(int(count), len(samples))
    if count <= 0:
        return []
    if count == len(samples):
        return samples
    by_label: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        by_label.setdefault(int(sample.label), []).append(index)
    labels = sorted(by_label)
    exact = {label: count * len(by_label[label]) / len(samples) for label in labels}
    quota = {label: int(exact[label]) for label in labels}
    if count >= len(labels):
        for label in labels:
            quota[label] = max(quota[label], 1)
    order = sorted(labels, key=lambda label: (exact[label] - int(exact[label])), reverse=True)
    while sum(quota.values()) < count:
        for label in order:
            if sum(quota.values()) < count and quota[label] < len(by_label[label]):
                quota[label] += 1
    while sum(quota.values()) > count:  # the at-least-one rule overshot
        largest = max(labels, key=lambda label: quota[label])
        quota[largest] -= 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in labels:
        pool = np.array(by_label[label])
        chosen.extend(int(i) for i in rng.choice(pool, size=quota[label], replace=False))
    return [samples[i] for i in sorted(chosen)]


def sha1_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def label_counts(labels: Sequence[int]) -> dict[str, int]:
    labels = np.asarray(labels, dtype=np.int64)
    return {"normal": int(np.sum(labels == NORMAL)), "defect": int(np.sum(labels == DEFECT))}


@dataclass
class CalibrationSet:
    """The preprocessed calibration images and where each came from."""

    images: np.ndarray  # N x H x W x 3 uint8, exactly what the deployed model is fed
    samples: list[Sample]
    skipped: list[str]
    split: str
    requested: int
    available: dict[str, int]
    seed: int

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)


def build_calibration_set(samples: Sequence[Sample], card: ModelCard, count: int, split: str, seed: int = 0) -> CalibrationSet:
    """Draw ``count`` images stratified by label and preprocess them as evaluation does."""
    from edge_sealant.imageset import load_images

    # PITFALL: calibrate with the evaluation preprocessing, never the training transforms
    # (random crops/flips/colour jitter): activation ranges must match deployed inputs.
    chosen = stratified_sample(samples, count, seed)
    loaded = load_images(chosen, card)
    return CalibrationSet(
        images=loaded.images,
        samples=list(loaded.samples),
        skipped=list(loaded.skipped),
        split=split,
        requested=int(count),
        available=label_counts([s.label for s in samples]),
        seed=seed,
    )


def _display_path(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def build_manifest(
    calibration: CalibrationSet,
    card: ModelCard,
    settings: dict[str, Any],
    source_model: Path,
    data_root: Path | None,
    backend: str,
    accuracy_control: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The calibration record stored next to the INT8 model (JSON-able)."""
    images = [
        {
            "path": _display_path(s.path, data_root),
            "sha1": sha1_file(s.path),
            "label": int(s.label),
            "defect_classes": list(s.defect_classes),
        }
        for s in calibration.samples
    ]
    return {
        "format": MANIFEST_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": card.model,
        "backend": backend,
        "source_model": {"path": str(source_model), "sha1": sha1_file(source_model)},
        "data": {"root": str(data_root) if data_root else None, "split": calibration.split},
        "selection": {
            "method": "stratified by label (proportional, largest remainder, >= 1 per label), without replacement",
            "seed": calibration.seed,
            "requested": calibration.requested,
            "available": calibration.available,
        },
        "preprocessing": {
            "function": "edge_sealant.imageset.load_images (evaluation preprocessing, no augmentation)",
            "input_size": list(card.input_size),
            "resize_mode": card.resize_mode,
            "channel_order": card.channel_order,
        },
        "counts": {"total": len(images), **label_counts(calibration.labels)},
        "skipped": list(calibration.skipped),
        "settings": settings,
        "accuracy_control": accuracy_control,
        "versions": library_versions(QUANTIZATION),
        "images": images,
    }


# -------------------------------------------------------------------- quantized-model checks
def openvino_quantized_ops(model: Any) -> list[str]:
    """Names of ops that show ``model`` (an ``ov.Model``) is already quantized / compressed."""
    found = []
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind in OV_QUANTIZED_OPS:
            found.append(f"{kind} {op.get_friendly_name()}")
        elif kind == "Constant" and op.get_output_element_type(0).get_type_name() in _LOW_BIT_TYPES:
            found.append(f"{op.get_output_element_type(0).get_type_name()} constant {op.get_friendly_name()}")
    return found


def onnx_quantized_ops(proto: Any) -> list[str]:
    """Names of QuantizeLinear/QLinear*/...Integer nodes in an ``onnx.ModelProto``."""
    return [f"{n.op_type} {n.name}" for n in proto.graph.node if n.op_type in ONNX_QUANTIZED_OPS]


def check_not_quantized(found: list[str], path: Path) -> None:
    if found:
        raise EdgeSealantError(
            f"{path}: already quantized ({len(found)} quantization nodes, e.g. {found[0]}); "
            "quantize the FP32 model (re-export with 'edge-sealant export')"
        )


def float_weighted_ops(model: Any) -> list[str]:
    """Convolution/MatMul ops of an ``ov.Model`` whose weights are not quantized.

    The weights input is traced back through Convert/Multiply/Subtract/Reshape...: an i8/u8
    constant or a FakeQuantize on the way means INT8 weights. Ops fed by two activations
    (no constant on the weights input) are not listed.
    """
    out = []
    for op in model.get_ops():
        if op.get_type_name() not in _WEIGHTED_OV_OPS or op.get_input_size() < 2:
            continue
        quantized, constant, seen = False, False, set()
        stack = [op.input_value(1).get_node()]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            kind = node.get_type_name()
            if kind == "FakeQuantize":
                quantized = True
                break
            if kind == "Constant":
                constant = True
                if node.get_output_element_type(0).get_type_name() in _LOW_BIT_TYPES:
                    quantized = True
                    break
                continue
            if kind in _WEIGHT_PATH_OPS:
                stack.extend(node.input_value(i).get_node() for i in range(node.get_input_size()))
        if constant and not quantized:
            out.append(op.get_friendly_name())
    return sorted(out)


def head_op_names(model: Any) -> list[str]:
    """Friendly name(s) of the last Convolution/MatMul before each Sigmoid of an ``ov.Model``."""
    names = []
    for op in model.get_ops():
        if op.get_type_name() != "Sigmoid":
            continue
        stack, seen = [op.input_value(0).get_node()], set()
        while stack:
            node = stack.pop()
            if id(node) in seen or node.get_type_name() in ("Parameter", "Constant"):
                continue
            seen.add(id(node))
            if node.get_type_name() in _WEIGHTED_OV_OPS:
                names.append(node.get_friendly_name())
                continue
            # Walk back through the bias Add / reshapes only (the first input is the data).
            stack.append(node.input_value(0).get_node())
    return sorted(set(names))


def onnx_head_node_names(proto: Any) -> list[str]:
    """Name(s) of the last Gemm/MatMul/Conv before each Sigmoid of an ONNX graph."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    names = []
    for node in proto.graph.node:
        if node.op_type != "Sigmoid":
            continue
        current = producers.get(node.input[0])
        while current is not None:
            if current.op_type in ("Gemm", "MatMul", "Conv"):
                names.append(current.name)
                break
            current = producers.get(current.input[0]) if current.input else None
    return sorted(set(names))


# ------------------------------------------------------------------------------ NNCF calls
def _nncf_arguments(recipe: dict[str, Any], subset_size: int, ignored: list[str]) -> dict[str, Any]:
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
        initializers = {t.name for t in model.graph.initializer}
        name = next(i.name for i in model.graph.input if i.name not in initializers)
        return lambda image: {name: image[None]}
    return lambda image: image[None]


def _calibration_dataset(images: np.ndarray, model: Any) -> Any:
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
    import nncf

    args = _nncf_arguments(recipe, len(images), ignored)
    advanced = args.pop("advanced")
    return nncf.quantize(model, _calibration_dataset(images, model), advanced_parameters=advanced, **args)


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
    args = _nncf_arguments(recipe, len(images), ignored)
    advanced = args.pop("advanced")
    feed = _feed(model)
    validation = nncf.Dataset(list(zip(val_images, val_labels)), lambda item: feed(item[0]))
    restorer = AdvancedAccuracyRestorerParameters(
        intermediate_model_dir=str(scratch),
        ranking_subset_size=min(len(val_images), int(args["subset_size"])),
    )
    with capture_nncf_log() as messages:
        result = nncf.quantize_with_accuracy_control(
            model,
            _calibration_dataset(images, model),
            validation,
            auroc_validation_fn(backend),
            max_drop=float(max_drop),
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=advanced,
            advanced_accuracy_restorer_parameters=restorer,
            **args,
        )
    record: dict[str, Any] = {
        "metric": "val AUROC",
        "max_drop": float(max_drop),
        "drop_type": "absolute",
        "reverted_operations": parse_reverted(messages),
        "log": [m for m in messages if re.search(r"drop|revert|metric|Algorithm completed|could not", m, re.I)],
    }
    intermediate = scratch / "intermediate_model.xml"
    if backend == "openvino" and intermediate.is_file():
        import openvino as ov

        plain = set(float_weighted_ops(ov.Core().read_model(str(intermediate))))
        record["kept_in_float"] = sorted(set(float_weighted_ops(result)) - plain)
    else:
        record["kept_in_float"] = sorted(record["reverted_operations"])
    return result, record


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
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    proto = onnx.load(str(source))
    initializers = {t.name for t in proto.graph.initializer}
    name = next(i.name for i in proto.graph.input if i.name not in initializers)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._items, None)
            return None if image is None else {name: image[None]}

    prepared = scratch / "prepared.onnx"
    # Shape inference + BatchNorm/constant folding first, as ORT's quantization guide asks;
    # symbolic shape inference is skipped (the graph has static shapes but a dynamic batch).
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation: quantize the export as it is
        shutil.copy2(source, prepared)
    out = scratch / "quantized.onnx"
    # PITFALL: Percentile/Entropy calibration keep every activation of every calibration
    # image in memory (19.6 GB and an OOM kill for Lite0 at 224x224 x 300 images); MinMax
    # keeps running extremes only.
    methods = {"minmax": CalibrationMethod.MinMax}
    if recipe["onnx_calibrate_method"] not in methods:
        raise EdgeSealantError(f"ONNX calibration method {recipe['onnx_calibrate_method']!r} is not supported (minmax)")
    method = methods[recipe["onnx_calibrate_method"]]
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=bool(recipe["onnx_reduce_range"]),
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(ignored),
        calibrate_method=method,
    )
    return onnx.load(str(out))


# ----------------------------------------------------------------------------- evaluation
def _scores(backend: Any, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    out = [backend.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def _compare(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    def drop(key: str) -> float | None:
        if fp32.get(key) is None or int8.get(key) is None:
            return None
        return float(fp32[key]) - float(int8[key])

    keys = ("auroc", "auroc_ci", "accuracy", "balanced_accuracy", "recall", "recall_ci", "fpr", "fpr_ci")
    return {
        "fp32": {k: fp32.get(k) for k in keys},
        "int8": {k: int8.get(k) for k in keys},
        "auroc_drop": drop("auroc"),
        "accuracy_drop": drop("accuracy"),
        "n": int8.get("n"),
        "n_defect": int8.get("n_defect"),
    }


# ------------------------------------------------------------------------------ the run
def _normalise_backend(backend: str) -> str:
    key = str(backend).strip().lower()
    if key not in BACKENDS:
        raise EdgeSealantError(f"unknown backend {backend!r}; choose openvino or onnx")
    return BACKENDS[key]


def _ensure_fp32(run: Path, backend: str, log: Callable[[str], None]) -> Path:
    path = artifact_path(run, backend, "fp32")
    if path.is_file():
        return path
    if not (run / "best.pt").is_file():
        raise EdgeSealantError(f"{path}: not found, and {run} has no best.pt to export it from")
    from edge_sealant.export import export_run

    log(f"{path} is missing: exporting it first")
    export_run(run, formats=["openvino" if backend == "openvino" else "onnx"], precisions=["fp32"], log=log)
    if not path.is_file():
        raise EdgeSealantError(f"{path}: export did not produce it")
    return path


def _warn(console: Any, message: str) -> None:
    if console is not None:
        console.print(f"[yellow]warning:[/] {message}", highlight=False)


def quantize_run(
    run: str | Path,
    data: str | Path,
    backend: str = "openvino",
    subset_size: int = MIN_CALIBRATION_IMAGES,
    split: str = "train",
    max_drop: float | None = None,
    console: Any = None,
    seed: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Quantize ``RUN``'s FP32 model to INT8, evaluate FP32 vs INT8, write model + records.

    An existing INT8 model of the same backend is replaced only with ``force``.

    ``data``: the dataset (YOLO yaml/folder, ImageFolder), loaded with the run's normal classes
    and split seed. ``subset_size``: calibration images (stratified by label from ``split``).
    ``max_drop``: switch to accuracy-controlled quantization with val AUROC as the metric
    (absolute drop); layers NNCF must keep in float are listed in the manifest. Returns the
    report (also saved as ``quantize_report.json``).
    """
    from edge_sealant.data.loading import load_dataset_like
    from edge_sealant.evaluate import split_role
    from edge_sealant.imageset import load_images
    from edge_sealant.runtime.backends import open_backend

    started = time.perf_counter()
    log = (lambda message: console.print(message, highlight=False)) if console is not None else (lambda message: None)
    run = Path(run)
    backend = _normalise_backend(backend)
    if not run.is_dir():
        raise EdgeSealantError(f"{run}: run folder not found")
    if int(subset_size) < 1:
        raise EdgeSealantError(f"--subset-size must be at least 1, got {subset_size}")
    if max_drop is not None and not 0.0 <= float(max_drop) <= 1.0:
        raise EdgeSealantError(f"--max-drop {max_drop} is outside [0, 1] (an absolute AUROC drop, e.g. 0.005)")
    if max_drop is not None and backend != "openvino":
        raise EdgeSealantError(
            "--max-drop (NNCF accuracy control) works with --backend openvino only; the ONNX route uses "
            "ONNX Runtime's quantize_static, whose models ONNX Runtime runs as integer kernels"
        )
    existing = artifact_path(run, backend, "int8")
    if existing.exists() and not force:
        raise EdgeSealantError(f"{existing} exists (made {time.ctime(existing.stat().st_mtime)}); pass --force to replace it")
    card = ModelCard.load(run)
    train_options = (card.train or {}).get("options", {}) if isinstance(card.train, dict) else {}
    seed = int(train_options.get("seed", 0) if seed is None else seed)

    # The input model: refuse anything already quantized before spending time on data.
    source = _ensure_fp32(run, backend, log)
    if backend == "openvino":
        import openvino as ov

        model = ov.Core().read_model(str(source))
        check_not_quantized(openvino_quantized_ops(model), source)
        if any(op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() == "f16" for op in model.get_ops()):
            # PITFALL: an IR saved with the default compress_to_fp16=True is an FP16 model;
            # the "FP32" column of the report would then describe FP16 weights.
            _warn(console, f"{source} holds FP16 weights (saved with compress_to_fp16=True): the FP32 baseline is really FP16")
    else:
        import onnx

        model = onnx.load(str(source))
        check_not_quantized(onnx_quantized_ops(model), source)

    dataset = load_dataset_like(data, card.data_summary or {})
    if split == "test":
        _warn(console, "calibrating on the test split: its figures below are then no longer independent")
    calibration = build_calibration_set(dataset.split(split), card, subset_size, split, seed)
    if len(calibration) == 0:
        raise EdgeSealantError(f"{dataset.root}: no readable image in the '{split}' split to calibrate with")
    for problem in calibration.skipped:
        _warn(console, f"skipped {problem}")
    if len(calibration) < MIN_CALIBRATION_IMAGES:
        _warn(
            console,
            f"only {len(calibration)} calibration images (< {MIN_CALIBRATION_IMAGES}): activation ranges may be "
            "noisy; use a larger split or --subset-size",
        )
    counts = label_counts(calibration.labels)
    log(f"calibrating on {len(calibration)} {split} images ({counts['normal']} normal, {counts['defect']} defect)")

    recipe = recipe_for(card.model)
    if backend == "openvino":
        ignored = head_op_names(model) if recipe["float_head"] else []
        settings = {k: recipe[k] for k in ("family", "preset", "model_type", "fast_bias_correction", "float_head", "target_device", "overflow_fix")}
        settings["engine"] = "nncf.quantize_with_accuracy_control" if max_drop is not None else "nncf.quantize"
    else:
        ignored = onnx_head_node_names(model) if recipe["float_head"] else []
        settings = {k: recipe[k] for k in ("family", "float_head", "onnx_calibrate_method", "onnx_reduce_range")}
        settings.update(engine="onnxruntime.quantization.quantize_static", quant_format="QDQ", per_channel=True,
                        activation_type="uint8", weight_type="int8")
    settings = {
        **settings,
        "subset_size": len(calibration),
        "requested_subset_size": int(subset_size),
        "ignored_scope": ignored,
        "max_drop": None if max_drop is None else float(max_drop),
        "inference_precision_hint": "f32",
    }

    eval_sets = {}
    for name in REPORT_SPLITS:
        samples = dataset.splits.get(name) or []
        if samples:
            loaded = load_images(samples, card)
            if len(loaded.images):
                eval_sets[name] = loaded
    if max_drop is not None and "val" not in eval_sets:
        raise EdgeSealantError(f"{dataset.root}: --max-drop needs a val split")

    target = artifact_path(run, backend, "int8")
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=".quantize-") as scratch_name:
        scratch = Path(scratch_name)
        if backend == "openvino":
            detail = (f"NNCF, preset {recipe['preset']}, {'fast' if recipe['fast_bias_correction'] else 'full'} bias correction, "
                      f"overflow fix {recipe['overflow_fix']}")
        else:
            detail = f"ONNX Runtime quantize_static, QDQ U8S8 per-channel, {recipe['onnx_calibrate_method']} calibration"
        log(f"quantizing {source} ({recipe['family']}: {detail}{', head kept in float' if ignored else ''}"
            f"{f', max AUROC drop {max_drop}' if max_drop is not None else ''})")
        accuracy_control = None
        if max_drop is None:
            if backend == "openvino":
                quantized = quantize_openvino_model(model, calibration.images, recipe, ignored)
            else:
                quantized = quantize_onnx_model(source, calibration.images, recipe, ignored, scratch)
        else:
            val = eval_sets["val"]
            quantized, accuracy_control = quantize_with_accuracy_control(
                model, calibration.images, val.images, val.labels, recipe, ignored, float(max_drop), backend, scratch
            )
            log(f"kept in float by accuracy control: {', '.join(accuracy_control['kept_in_float']) or 'nothing'}")

        int8_card = card.replace(precision="int8", backend=backend, metrics={})
        draft = _save(quantized, scratch / "draft" / target.name, int8_card, backend)
        found = (openvino_quantized_ops(quantized) if backend == "openvino" else onnx_quantized_ops(quantized))
        if not found:
            raise EdgeSealantError(f"{source}: NNCF inserted no quantization nodes; the model was not quantized")

        # Evaluate FP32 and INT8 the same way: f32 float execution, the card's threshold.
        fp32_backend, int8_backend = open_backend(source), open_backend(draft)
        settings["inference_precision_hint"] = getattr(fp32_backend, "inference_precision", "f32")
        metrics: dict[str, Any] = {}
        int8_full: dict[str, Any] = {}
        draft_scores = {}
        from edge_sealant.metrics import binary_metrics, with_intervals

        for name, loaded in eval_sets.items():
            fp32_scores = _scores(fp32_backend, loaded.images)
            int8_scores = _scores(int8_backend, loaded.images)
            draft_scores[name] = (loaded.images[:8], int8_scores[:8])
            fp32_m = with_intervals(binary_metrics(loaded.labels, fp32_scores, card.threshold), loaded.labels, fp32_scores)
            int8_m = with_intervals(binary_metrics(loaded.labels, int8_scores, card.threshold), loaded.labels, int8_scores)
            metrics[name] = _compare(fp32_m, int8_m)
            int8_full[name] = int8_m
        del fp32_backend, int8_backend

        sizes = {"fp32_bytes": _weights_bytes(source), "int8_bytes": _weights_bytes(draft)}
        sizes["ratio"] = sizes["int8_bytes"] / sizes["fp32_bytes"] if sizes["fp32_bytes"] else None
        report = {
            "run": str(run),
            "model": card.model,
            "backend": backend,
            "fp32_model": str(source),
            "int8_model": str(target),
            "threshold": card.threshold,
            "calibration": {"split": split, "images": len(calibration), **counts},
            "settings": settings,
            "metrics": metrics,
            "weights": sizes,
            "accuracy_control": accuracy_control,
            "missing_splits": [s for s in REPORT_SPLITS if s not in eval_sets],
            "split_roles": {name: split_role(card, name) for name in metrics},
            "versions": library_versions(QUANTIZATION),
            "seconds": None,
        }
        manifest = build_manifest(
            calibration, card, settings, source, getattr(dataset, "root", None), backend, accuracy_control
        )
        int8_card.metrics = {**int8_full, "quantization": {"fp32_vs_int8": metrics, "weights_ratio": sizes["ratio"]}}
        report["seconds"] = round(time.perf_counter() - started, 1)
        extra = {
            MANIFEST: json.dumps(manifest, indent=2) + "\n",
            REPORT: json.dumps(report, indent=2) + "\n",
        }

        def verify(staged: Path) -> None:
            check = open_backend(staged)
            for images, expected in draft_scores.values():
                got = check.predict(images).astype(np.float64)
                if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
                    raise EdgeSealantError(f"{staged}: saved INT8 model does not reproduce its evaluation")

        _publish(quantized, target, int8_card, backend, extra, verify)
    render_report(report, console)
    return report


def _weights_bytes(path: Path) -> int:
    path = Path(path)
    return (path.with_suffix(".bin") if path.suffix == ".xml" else path).stat().st_size


def _save(model: Any, path: Path, card: ModelCard, backend: str) -> Path:
    """Plain save (with metadata) for evaluation before publishing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if backend == "openvino":
        import openvino as ov

        from edge_sealant.runtime.model_file import set_openvino_metadata

        set_openvino_metadata(model, card)
        ov.save_model(model, str(path), compress_to_fp16=False)
    else:
        from edge_sealant.runtime.model_file import set_onnx_metadata

        set_onnx_metadata(model, card)
        path.write_bytes(model.SerializeToString())
    return path


def _publish(model: Any, target: Path, card: ModelCard, backend: str, extra: dict[str, str], verify: Callable) -> None:
    from edge_sealant.export import save_onnx_model, save_openvino_ir

    if backend == "openvino":
        # FP32 float parts (compress_to_fp16=False): layers kept in float stay exact.
        save_openvino_ir(model, target, card, "int8", extra_files=extra, verify=verify)
    else:
        save_onnx_model(model, target, card, "int8", extra_files=extra, verify=verify)


def render_report(report: dict[str, Any], console: Any) -> None:
    if console is None:
        return
    from rich.table import Table

    from edge_sealant.metrics import format_with_ci

    table = Table(title=f"{report['model']} {report['backend']}: FP32 vs INT8 (threshold {report['threshold']:.4g})")
    for column in ("split", "n", "AUROC fp32", "AUROC int8", "drop", "acc fp32", "acc int8"):
        table.add_column(column, justify="right" if column != "split" else "left")

    def fmt(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    roles = report.get("split_roles", {})
    for split, row in report["metrics"].items():
        table.add_row(
            f"{split} ({roles[split]})" if split in roles else split,
            str(row["n"]),
            format_with_ci(row["fp32"]["auroc"], row["fp32"].get("auroc_ci")),
            format_with_ci(row["int8"]["auroc"], row["int8"].get("auroc_ci")),
            fmt(row["auroc_drop"]),
            fmt(row["fp32"]["accuracy"]),
            fmt(row["int8"]["accuracy"]),
        )
    console.print(table)
    weights = report["weights"]
    if weights.get("ratio") is not None:
        console.print(
            f"weights {weights['int8_bytes'] / 1e6:.2f} MB (INT8) vs {weights['fp32_bytes'] / 1e6:.2f} MB (FP32): "
            f"{weights['ratio']:.2f}x; wrote {report['int8_model']}",
            highlight=False,
        )

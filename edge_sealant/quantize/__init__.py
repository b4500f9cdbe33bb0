"""INT8 quantization of an exported run (post-training, or quantization-aware with ``qat_epochs``), with a record of what it saw.

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

Modules: ``recipes`` (settings per family, backend names), ``calibration`` (the stratified
calibration set and its manifest), ``graph`` (quantized? float weights? head op?),
``engines`` (NNCF and ONNX Runtime calls), ``qat`` (``--qat-epochs``: quantization-aware
fine-tuning of the torch net, converted to OpenVINO), ``scoring`` (FP32 vs INT8 on val/test), ``run``
(``quantize_run``, step by step). Nothing here prints or imports rich: ``quantize_run``
reports progress through ``log`` / ``warn`` callbacks and returns the report;
``edge_sealant.cli.quantize`` renders it. Heavy libraries (openvino, nncf, onnx,
onnxruntime, torch) are imported inside functions only.

Known pitfalls, each handled where it bites (search for "PITFALL"):

* calibrating with training augmentation: ranges then cover pixels the deployed model never
  sees; we use ``load_images`` (decode + resize as in evaluation, nothing random);
* ``subset_size`` larger than the calibration set: NNCF would silently use fewer images than
  the manifest claims; we pass the real count;
* the CPU plugin's bf16 default on AMX/AVX512-bf16 CPUs: an FP32 model evaluated without
  ``INFERENCE_PRECISION_HINT=f32`` is really a bf16 model, and the "FP32 vs INT8" drop is then
  wrong; every evaluation here runs f32 (``open_backend`` default);
* quantizing an already quantized model (FakeQuantize / QuantizeLinear present): refused;
* an IR saved with FP16 weights as the "FP32" model: warned;
* the 1-output head before the sigmoid: kept in float when the recipe says so (it costs one
  dot product of 1280 values and removes the last rounding before the decision threshold);
* ONNX Runtime's Percentile/Entropy calibration holding every activation in memory: MinMax only;
* calibrating on the test split: allowed but warned, test is for reporting.
"""

from __future__ import annotations

from edge_sealant.quantize.calibration import (
    MANIFEST_FORMAT,
    MIN_CALIBRATION_IMAGES,
    CalibrationSet,
    build_calibration_set,
    build_manifest,
    label_counts,
    sha1_file,
    stratified_sample,
)
from edge_sealant.quantize.engines import (
    auroc_validation_fn,
    calibration_dataset,
    capture_nncf_log,
    nncf_arguments,
    parse_reverted,
    quantize_model,
    quantize_onnx_model,
    quantize_openvino_model,
    quantize_with_accuracy_control,
    stdout_to_stderr,
)
from edge_sealant.quantize.graph import (
    ONNX_QUANTIZED_OPS,
    OV_QUANTIZED_OPS,
    check_not_quantized,
    float_weighted_ops,
    head_op_names,
    kept_in_float,
    onnx_head_node_names,
    onnx_quantized_ops,
    openvino_quantized_ops,
)
from edge_sealant.quantize.recipes import (
    DEFAULT_RECIPE,
    RECIPES,
    load_recipe_file,
    model_family,
    normalise_backend,
    recipe_for,
)
from edge_sealant.quantize.run import MANIFEST, REPORT, REPORT_SPLITS, quantize_run

__all__ = [
    "DEFAULT_RECIPE",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "MIN_CALIBRATION_IMAGES",
    "ONNX_QUANTIZED_OPS",
    "OV_QUANTIZED_OPS",
    "RECIPES",
    "REPORT",
    "REPORT_SPLITS",
    "CalibrationSet",
    "auroc_validation_fn",
    "build_calibration_set",
    "build_manifest",
    "calibration_dataset",
    "capture_nncf_log",
    "check_not_quantized",
    "float_weighted_ops",
    "head_op_names",
    "kept_in_float",
    "label_counts",
    "load_recipe_file",
    "model_family",
    "nncf_arguments",
    "normalise_backend",
    "onnx_head_node_names",
    "onnx_quantized_ops",
    "openvino_quantized_ops",
    "parse_reverted",
    "quantize_model",
    "quantize_onnx_model",
    "quantize_openvino_model",
    "quantize_run",
    "quantize_with_accuracy_control",
    "recipe_for",
    "sha1_file",
    "stdout_to_stderr",
    "stratified_sample",
]
